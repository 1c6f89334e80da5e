"""How well a toy recogniser tells test identities apart: verification against random impostors and
look-alikes, and the identity ambiguity of the LR contour (``identity_report``)."""

from __future__ import annotations

import torch
from torch import nn

from data.conditions import make_condition
from data.toyfaces.dataset import ToySizes, split_identities
from data.toyfaces.render import render_gaussian, with_look
from experiments.toy_pretraining.sizes import toy_world_sizes


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> (N, D) unit embeddings with ``net`` in eval mode."""
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    out = torch.cat([net(images[i : i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])
    net.train(was)
    return out


def lr_contour(images: torch.Tensor, lr_size: int | None = None) -> torch.Tensor:
    """The LR contour as the encoder receives it (``data.conditions``' lr: bicubic down to ``lr_size``, default
    the world's, and back up): (B, 3, S, S) in [-1, 1]."""
    return make_condition("lr", out_size=images.shape[-1], lr_size=lr_size or toy_world_sizes().lr_size)(images)


def verification_accuracy(same: torch.Tensor, diff: torch.Tensor, folds: int = 10) -> float:
    """LFW-style accuracy: threshold chosen on 9 folds, accuracy on the 10th, averaged."""
    scores = torch.cat([same, diff])
    truth = torch.cat([torch.ones_like(same, dtype=torch.bool), torch.zeros_like(diff, dtype=torch.bool)])
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(0))
    scores, truth = scores[perm], truth[perm]
    accs = []
    for k in range(folds):
        test = torch.zeros(len(scores), dtype=torch.bool)
        test[k::folds] = True
        ordered = scores[~test].unique()
        # thresholds between consecutive training scores, and below / above all of them
        cand = torch.cat([ordered[:1] - 1, (ordered[1:] + ordered[:-1]) / 2, ordered[-1:] + 1])
        train_acc = ((scores[~test][None] > cand[:, None]) == truth[~test][None]).float().mean(1)
        thr = cand[train_acc.argmax()]
        accs.append(((scores[test] > thr) == truth[test]).float().mean().item())
    return sum(accs) / folds


def report_photos(n_identities: int = 300, data_seed: int = 0, size: int | None = None) -> dict[str, torch.Tensor]:
    """Three photos per test identity i, (N, 3, S, S) in [-1, 1] each (S = ``size``, default the world's), row i =
    identity i:

    ``a``: a photo of i (the probe); ``b``: another photo of i (its own look and nuisance); ``alike``: a
    look-alike of ``b``, identity i+1 (cyclic) drawn in ``b``'s coarse look with fresh nuisance, so that
    ``b`` and ``alike`` differ in identity only.
    """
    test = split_identities("test", ToySizes(test_identities=n_identities, test_photos_per_identity=3), seed=data_seed)
    codes = test.codes.view(n_identities, 3, -1)
    alike = with_look(codes[:, 2].roll(-1, 0), codes[:, 1])
    images = render_gaussian(torch.cat([codes[:, 0], codes[:, 1], alike]), size or toy_world_sizes().image_size).image
    return dict(zip(("a", "b", "alike"), images.split(n_identities)))


def identity_report(net: nn.Module, n_identities: int = 300, data_seed: int = 0, lr_size: int | None = None) -> dict:
    """Verification of test identities by ``net`` (``report_photos`` at its ``input_size``), as a flat dict.

    Genuine pairs (a_i, b_i); look-alike impostors (a_i, alike_i), which share b_i's coarse look, so only
    the fine identity parts separate them; random impostors (a_i, b_{i+1}). ``verification_acc``
    (random) and ``verification_acc_lookalike`` are LFW-style accuracies, ``sim_*`` mean cosines. The
    ``lr_`` figures probe with the LR contour of a_i (``lr_contour``) instead: ``lr_verification_acc_lookalike``
    is the identity ambiguity, how well the contour alone tells the person from a look-alike (50% is chance).
    """
    photos = report_photos(n_identities, data_seed, net.input_size)
    eb, ealike = embed(net, photos["b"]), embed(net, photos["alike"])
    report: dict = {"identities": n_identities}
    for prefix, probe in (("", photos["a"]), ("lr_", lr_contour(photos["a"], lr_size))):
        ep = embed(net, probe)
        same, random_diff, alike = (ep * eb).sum(1), (ep * eb.roll(-1, 0)).sum(1), (ep * ealike).sum(1)
        report.update(
            {
                f"{prefix}verification_acc": verification_accuracy(same, random_diff),
                f"{prefix}verification_acc_lookalike": verification_accuracy(same, alike),
                f"{prefix}sim_same": same.mean().item(),
                f"{prefix}sim_lookalike": alike.mean().item(),
                f"{prefix}sim_random": random_diff.mean().item(),
            }
        )
    return report
