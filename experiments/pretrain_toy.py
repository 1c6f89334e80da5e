"""Train the toy world's networks from scratch and export them to ``models/pretrained/``.

    python experiments/pretrain_toy.py arcface          # toy ArcFace (ID loss, pretrained-ID init)
    python experiments/pretrain_toy.py eval-arcface     # second ArcFace for the metrics (IDSIM/LPIPS/FID)
    python experiments/pretrain_toy.py stylegan2        # toy StyleGAN2 (64x64, n_latent 10), by distillation
    python experiments/pretrain_toy.py all              # the three above, in order
    python experiments/pretrain_toy.py encoder [--run DIR]  # ship the toy IDE encoder (load_pipeline("toy"))
    python experiments/pretrain_toy.py check            # quality measurements of the shipped files, as JSON

Every training subcommand takes ``--steps``, ``--batch-size``, ``--seed``, ``--threads``,
``--device`` (``auto``: CUDA when available; the renderer runs on the device too, and the random codes
are drawn on the CPU, so a device changes the speed, not the data), ``--work-dir`` (checkpoints, sample
grids and the W&B run; training resumes from ``<work-dir>/<name>/ckpt.pt``, also on another device)
and ``--out-dir`` (the exported fp16 safetensors / ONNX files, default ``models/pretrained``). W&B runs
offline unless ``WANDB_MODE`` says otherwise. The sha256 of each exported file is printed for
``models/weights.py``. ``stylegan2`` also takes ``--part-weight`` (10 by default), ``--perceptual-weight``
and ``--adversarial-weight`` (both 0 by default; see GeneratorConfig), and ``--init FILE``: start from a
generator file, such as the shipped ``models/pretrained/toy_stylegan2.safetensors``, when the work dir
holds no checkpoint (a fresh clone or machine): its mapping fit continues for ``--mapping-steps``
(``0`` keeps it) and its synthesis for ``--steps``, each on a new cosine schedule, so pass a lower
``--lr`` to continue the synthesis rather than restart it.

ArcFaces: IR-SE backbones working on the 64x64 image itself (``Backbone(input_size=64)``), trained on
all 2,000 toy *train* identities (``data.toyfaces`` identity codes, world seed 0) under fresh per-photo
draws (coarse look and nuisance) each step, with an additive angular margin loss plus an auxiliary
regression of the identity code, and a curriculum that grows the per-photo draws from the mean look and
pose to the world's (``photo_curriculum``). ``identity_report`` verifies test identities against
look-alikes (another person in the same coarse look) and measures the identity ambiguity of the LR
contour.
Their ONNX exports take the ArcFace-standard (B, 3, 112, 112) input in [-1, 1] (what
``insightface.model_zoo.get_model`` recognises as ``ArcFaceONNX``) and resize it to 64 in the graph.

Encoder: the paper's full model on the toy world (``ablation=pretrained_id``, the Ours row; trained by
``experiments/run.py`` unless ``--run`` names a finished run), its ``final/`` exported in fp16 to
``<out-dir>/toy_ide/`` (``encoder.safetensors`` + ``config.yaml``); it needs the other three first.

StyleGAN2: distilled from the renderer rather than trained adversarially (a GAN needs far more
images than a CPU budget allows, and the renderer gives the exact target of every z). Fitting
G([z]) ~ render(z) end to end learns very slowly (the mapping network must discover the factors), so
the two halves are fitted apart through fixed target styles w*(z), a random embedding of the
factors the renderer reads: the mapping network regresses w*(z) (cheap, no rendering), and the
synthesis network learns render(z) from w*(z) (multi-scale L1 + image-gradient L1 + L1 on each
intermediate skip image).

The shipped files came from ``arcface``, ``eval-arcface``, ``stylegan2`` (1400 steps), then
``stylegan2 --steps 2400``, ``stylegan2 --steps 4000``, ``stylegan2 --steps 28000 --batch-size 4
--lr 3e-3``, ``stylegan2 --steps 52000 --batch-size 4 --lr 3e-3``, ``stylegan2 --steps 100000
--batch-size 4 --lr 3e-3`` stopped at 58,900, then ``--part-weight 10`` added: ``stylegan2 --steps
118000 --batch-size 4 --lr 3e-3 --part-weight 10`` stopped at 60,400 and ``stylegan2 --steps 80000
--batch-size 4 --lr 8e-3 --part-weight 10`` (each resumed from the previous checkpoint: the cosine
schedule is evaluated at the resumed step of the new length, so each run restarts it part-way; on a
CPU batches of 4 learn more per second than 16), with ``--threads 1`` or 2 on a 2-core CPU; then its
4,000-step mapping was fitted on for 40,000 steps (``stylegan2 --init <that file> --steps 0
--mapping-steps 40000``: held-out relative MSE 0.025 -> 0.014, bias-free sample FD 0.34 -> 0.15, the
synthesis unchanged), then ``encoder``; ``check`` measures them. Without the part weight, 58,900 steps
still drew no eyes, brows or mouth at all (the L1 median); with it they appear within 1,000 steps,
still blurred. The defaults are one run that reproduces such a generator from scratch: ``stylegan2
--threads 2`` (45,000 steps of batch 4 at lr 3e-3, part weight 10, 40,000 mapping steps; 63 minutes on a
2-core CPU) gave sample FD 2.35x real-real at n=1000 (shipped: 2.73x), bias-free FD 0.19 (shipped: 0.15)
and W+ inversions of 30.8 dB (shipped: 29.8) at identity 0.997 of real-real; it is not the shipped file,
which the shipped encoder and the recorded tables were trained and measured through.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from data.conditions import make_condition  # noqa: E402
from data.toyfaces import (  # noqa: E402
    FACTOR_DIMS,
    HAIR_COLOURS,
    HAIR_STYLES,
    L_BROW,
    L_EYE,
    L_LIP,
    MOUTH,
    N_IDENTITY,
    N_PHOTO,
    NOSE,
    R_BROW,
    R_EYE,
    SKIN_TONES,
    U_LIP,
    assemble,
    factors_from_gaussian,
    identity_codes,
    render_gaussian,
    split_identities,
    with_look,
)
from experiments.device import resolve_device  # noqa: E402
from models.irse import Backbone  # noqa: E402
from models.weights import PRETRAINED_DIR, load_torch_file, sha256_of  # noqa: E402

ONNX_INPUT = 112


@dataclass
class ArcFaceConfig:
    """One toy ArcFace: architecture, ArcFace head and optimisation."""

    name: str = "toy_arcface"
    seed: int = 1
    stage_channels: tuple[int, ...] = (32, 64, 96, 128)
    stage_units: tuple[int, ...] = (1, 2, 2, 1)
    embedding_dim: int = 128
    image_size: int = 64
    # Every train identity is a class; their photos' coarse looks are drawn per photo, so only the fine
    # identity parts separate the classes.
    n_identities: int = 2000
    data_seed: int = 0
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    margin: float = 0.5
    scale: float = 32.0
    margin_warmup: float = 0.2  # fraction of the steps over which the margin grows from 0
    # Auxiliary regression of the identity code (the world's ground truth) from the embedding: a dense
    # signal that makes the CPU budget enough; the margin loss alone needs many more samples.
    code_weight: float = 1.0
    # Fraction of the steps over which the per-photo codes (look and nuisance) grow from 0 to the world's
    # scale. The fine identity parts are a few pixels across and the per-photo look dominates every image:
    # from scratch at full scale the code regression stayed at R^2 0 for 700 steps, while with the look and
    # pose held fixed it learns within 50 (the curriculum finds the parts first, then learns invariance).
    photo_curriculum: float = 0.4
    ckpt_every: int = 100
    eval_every: int = 500
    eval_identities: int = 300


ARCFACES = {
    # the loss / pretrained-ID-init network: the identity encoder's stage layout (world/toy.yaml)
    "toy_arcface": ArcFaceConfig(steps=2000),
    # the metric network: another seed and a slimmer layout (the real metric model differs from the loss one)
    "toy_eval_arcface": ArcFaceConfig(name="toy_eval_arcface", seed=2, stage_channels=(16, 32, 64, 128),
                                      stage_units=(1, 1, 1, 1)),
}


def build_arcface(cfg: ArcFaceConfig) -> Backbone:
    """The IR-SE backbone: (B, 3, 64, 64) in [-1, 1] -> (B, embedding_dim) unit vectors."""
    return Backbone(cfg.image_size, mode="ir_se", drop_ratio=0.0, stage_channels=cfg.stage_channels,
                    stage_units=cfg.stage_units, embedding_dim=cfg.embedding_dim)


class ArcMarginHead(nn.Module):
    """Additive angular margin logits: s * cos(theta_y + m) for the true class, s * cos(theta_j) otherwise."""

    def __init__(self, embedding_dim: int, n_classes: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embedding_dim) * 0.01)
        self.scale = scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
        """emb (B, D) unit vectors, labels (B,) -> logits (B, n_classes)."""
        cos = emb @ F.normalize(self.weight, dim=1).t()
        cos_y = cos.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos_y)
        # Beyond theta + m > pi cos(theta + m) stops decreasing; use the usual linear extension there.
        target = torch.where(theta + margin < math.pi, torch.cos(theta + margin),
                             cos_y - margin * math.sin(margin))
        return self.scale * cos.scatter(1, labels[:, None], target)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one training step: a pure function of (seed, step), so resumed runs replay exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def arcface_batch(ident: torch.Tensor, batch_size: int, gen: torch.Generator, size: int,
                  device: str | torch.device = "cpu", photo_scale: float = 1.0):
    """Fresh photos of random train identities: ((B, 3, size, size) in [-1, 1], labels (B,)) on ``device``.

    ``photo_scale`` scales the per-photo codes (look and nuisance; 1 = the world's photos, 0 = every photo
    in the mean look and pose). The codes are drawn on the CPU (``gen``), so every device trains on the
    same photos; the renderer runs where the codes are."""
    labels = torch.randint(0, ident.shape[0], (batch_size,), generator=gen)
    photo = torch.randn(batch_size, N_PHOTO, generator=gen) * photo_scale
    codes = assemble(ident[labels], photo).to(device)
    return render_gaussian(codes, size).image, labels.to(device)


def cosine_lr(step: int, steps: int, base: float, warmup: int = 50) -> float:
    """Linear warm-up over min(warmup, steps // 10) steps, then cosine decay to 0 at ``steps``."""
    warmup = max(1, min(warmup, steps // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    return load_torch_file(path) if path.exists() else None


def start_wandb(name: str, config: dict, work_dir: Path):
    """An offline-by-default W&B run (``WANDB_MODE=disabled`` skips it)."""
    import wandb

    return wandb.init(project="ideface-toy-pretrain", name=name, config=config, dir=str(work_dir),
                      mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> (N, D) unit embeddings with ``net`` in eval mode."""
    was = net.training
    net.eval()
    device = next(net.parameters()).device
    out = torch.cat([net(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)])
    net.train(was)
    return out


def lr_contour(images: torch.Tensor, lr_size: int = 8) -> torch.Tensor:
    """The LR contour as the encoder receives it (``data.conditions``' lr: bicubic down to ``lr_size`` and
    back up): (B, 3, S, S) in [-1, 1]."""
    return make_condition("lr", out_size=images.shape[-1], lr_size=lr_size)(images)


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


def report_photos(n_identities: int = 300, data_seed: int = 0, size: int = 64) -> dict[str, torch.Tensor]:
    """Three photos per test identity i, (N, 3, S, S) in [-1, 1] each, row i = identity i:

    ``a``: a photo of i (the probe); ``b``: another photo of i (its own look and nuisance); ``alike``: a
    look-alike of ``b``, identity i+1 (cyclic) drawn in ``b``'s coarse look with fresh nuisance, so that
    ``b`` and ``alike`` differ in identity only.
    """
    test = split_identities("test", n_test_identities=n_identities, test_photos_per_identity=3, seed=data_seed)
    codes = test.codes.view(n_identities, 3, -1)
    alike = with_look(codes[:, 2].roll(-1, 0), codes[:, 1])
    images = render_gaussian(torch.cat([codes[:, 0], codes[:, 1], alike]), size).image
    return dict(zip(("a", "b", "alike"), images.split(n_identities)))


def identity_report(net: nn.Module, n_identities: int = 300, data_seed: int = 0, lr_size: int = 8) -> dict:
    """Verification of test identities by ``net`` (``report_photos``), as a flat dict.

    Genuine pairs (a_i, b_i); look-alike impostors (a_i, alike_i), which share b_i's coarse look, so only
    the fine identity parts separate them; random impostors (a_i, b_{i+1}). ``verification_acc``
    (random) and ``verification_acc_lookalike`` are LFW-style accuracies, ``sim_*`` mean cosines. The
    ``lr_`` figures probe with the LR contour of a_i (``lr_contour``) instead: ``lr_verification_acc_lookalike``
    is the identity ambiguity, how well the contour alone tells the person from a look-alike (50% is chance).
    """
    photos = report_photos(n_identities, data_seed)
    eb, ealike = embed(net, photos["b"]), embed(net, photos["alike"])
    report: dict = {"identities": n_identities}
    for prefix, probe in (("", photos["a"]), ("lr_", lr_contour(photos["a"], lr_size))):
        ep = embed(net, probe)
        same, random_diff, alike = (ep * eb).sum(1), (ep * eb.roll(-1, 0)).sum(1), (ep * ealike).sum(1)
        report.update({
            f"{prefix}verification_acc": verification_accuracy(same, random_diff),
            f"{prefix}verification_acc_lookalike": verification_accuracy(same, alike),
            f"{prefix}sim_same": same.mean().item(), f"{prefix}sim_lookalike": alike.mean().item(),
            f"{prefix}sim_random": random_diff.mean().item(),
        })
    return report


def train_arcface(cfg: ArcFaceConfig, work_dir: Path, progress: bool = True, stop_at: int | None = None,
                  device: str | torch.device = "cpu") -> tuple[Backbone, dict]:
    """Train (or resume) one toy ArcFace on ``device``; returns the network (eval mode, on the CPU) and
    {"report", "losses"}.

    ``stop_at``: leave after that step with a checkpoint (a budgeted session; resume later). The
    report (``identity_report``) is computed when training is complete, else it is empty.
    """
    run_dir = work_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net, head = build_arcface(cfg), ArcMarginHead(cfg.embedding_dim, cfg.n_identities, cfg.scale)
    code_head = nn.Linear(cfg.embedding_dim, N_IDENTITY)
    for module in (net, head, code_head):
        module.to(device)
    params = [*net.parameters(), *head.parameters(), *code_head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_path = run_dir / "ckpt.pt"
    start, losses = 0, []
    state = load_checkpoint(ckpt_path)
    if state is not None:
        net.load_state_dict(state["net"])
        head.load_state_dict(state["head"])
        code_head.load_state_dict(state["code_head"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
    ident = identity_codes(cfg.n_identities, cfg.data_seed, stream=0)
    ident_on_device = ident.to(device)
    run = start_wandb(cfg.name, asdict(cfg), run_dir)
    net.train()
    end = min(cfg.steps, stop_at or cfg.steps)
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc=cfg.name, disable=not progress)
    for step in bar:
        photo_scale = min(1.0, step / max(cfg.photo_curriculum * cfg.steps, 1))
        images, labels = arcface_batch(ident, cfg.batch_size, step_generator(cfg.seed, step), cfg.image_size,
                                       device, photo_scale)
        lr = cosine_lr(step, cfg.steps, cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        margin = cfg.margin * min(1.0, step / max(cfg.margin_warmup * cfg.steps, 1))
        emb = net(images)
        logits = head(emb, labels, margin)
        code_loss = F.mse_loss(code_head(emb), ident_on_device[labels])
        loss = F.cross_entropy(logits, labels) + cfg.code_weight * code_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        log = {"loss": loss.item(), "code_loss": code_loss.item(), "lr": lr, "margin": margin,
               "photo_scale": photo_scale,
               "train_acc": (logits.argmax(1) == labels).float().mean().item()}
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{log['train_acc']:.2f}")
        done = step + 1
        if done % cfg.eval_every == 0 and done < cfg.steps:
            interim = identity_report(net, cfg.eval_identities, cfg.data_seed)
            log.update({f"test/{k}": v for k, v in interim.items()})
            tqdm.write(f"[{cfg.name}] step {done}: {json.dumps(interim)}")
        if run is not None:
            run.log(log, step=done)
        if done % cfg.ckpt_every == 0 or done == end:
            heads = {"head": head.state_dict(), "code_head": code_head.state_dict()}
            save_atomic({"net": net.state_dict(), **heads, "opt": opt.state_dict(), "step": done}, ckpt_path)
    report = {}
    if end == cfg.steps:
        report = identity_report(net, cfg.eval_identities, cfg.data_seed)
        tqdm.write(f"[{cfg.name}] final: {json.dumps(report)}")
    if run is not None:
        run.summary.update({f"final/{k}": v for k, v in report.items()})
        run.finish()
    return net.cpu().eval(), {"report": report, "losses": losses}


def fp16_state(module_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict (of a module, or given) with floating tensors in fp16 (counters stay int64),
    contiguous for safetensors."""
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


class ArcFaceONNXInput(nn.Module):
    """(B, 3, 112, 112) in [-1, 1] (insightface's recognition input) -> net at its own side -> (B, D)."""

    def __init__(self, net: Backbone):
        super().__init__()
        self.net = net

    def forward(self, x):
        size = self.net.input_size
        return self.net(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))


def export_arcface(net: Backbone, name: str, out_dir: Path) -> dict[str, Path]:
    """Write ``<name>.safetensors`` (fp16 state dict) and ``<name>.onnx`` (fp32, 112 input)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    st = out_dir / f"{name}.safetensors"
    tmp = out_dir / f".{name}.safetensors.tmp"
    save_file(fp16_state(net), str(tmp), metadata={"format": "pt", "arch": "irse.Backbone"})
    os.replace(tmp, st)
    onnx_path = out_dir / f"{name}.onnx"
    # the fp16 round trip first, so the ONNX graph computes exactly what the shipped torch weights do
    net = build_like(net, st)
    wrapper = ArcFaceONNXInput(net).eval()
    dummy = torch.zeros(2, 3, ONNX_INPUT, ONNX_INPUT)
    tmp = out_dir / f".{name}.onnx.tmp"
    torch.onnx.export(wrapper, (dummy,), str(tmp), input_names=["input.1"], output_names=["embedding"],
                      dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=18,
                      dynamo=False)
    os.replace(tmp, onnx_path)
    return {"safetensors": st, "onnx": onnx_path}


def build_like(net: Backbone, path: Path) -> Backbone:
    """A fresh fp32 copy of ``net``'s architecture loaded strictly from a safetensors file, eval mode."""
    from safetensors.torch import load_file

    fresh = Backbone(net.input_size, mode="ir_se", drop_ratio=0.0, stage_channels=net.stage_channels,
                     stage_units=net.stage_units, embedding_dim=net.output_layer[3].out_features)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    fresh.load_state_dict(state, strict=True)
    return fresh.eval()


def print_hashes(paths: dict[str, Path]) -> dict[str, str]:
    """Print and return {file name: sha256} for the registry (models/weights.py)."""
    hashes = {}
    for p in paths.values():
        hashes[p.name] = sha256_of(p)
        print(f"sha256 {hashes[p.name]}  {p}  ({p.stat().st_size} bytes)")
    return hashes


def cli_overrides(args, config_cls) -> dict:
    """The fields of ``config_cls`` given on the command line (--steps, --batch-size, --lr, --seed,
    --adversarial-weight, --perceptual-weight, --part-weight, --mapping-steps). An option the network does
    not have is an error, except under ``all``."""
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
             "adversarial_weight": args.adversarial_weight, "perceptual_weight": args.perceptual_weight,
             "part_weight": args.part_weight, "mapping_steps": args.mapping_steps}
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(config_cls)})
    if unknown and args.command != "all":
        options = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise SystemExit(f"{options}: not an option of `pretrain_toy.py {args.command}`")
    return {k: v for k, v in given.items() if k not in unknown}


def cmd_arcface(args, name: str) -> dict:
    cfg = ArcFaceConfig(**{**asdict(ARCFACES[name]), **cli_overrides(args, ArcFaceConfig)})
    t0 = time.time()
    net, out = train_arcface(cfg, Path(args.work_dir), progress=not args.no_progress,
                             device=resolve_device(args.device))
    paths = export_arcface(net, cfg.name, Path(args.out_dir))
    result = {"name": cfg.name, "train_seconds": time.time() - t0, **out["report"],
              "sha256": print_hashes(paths)}
    print(json.dumps(result, indent=1))
    return result


@dataclass
class GeneratorConfig:
    """The toy StyleGAN2 (world/toy.yaml's generator section) and its two-part distillation schedule."""

    name: str = "toy_stylegan2"
    seed: int = 3
    size: int = 64
    style_dim: int = 128
    n_mlp: int = 4
    channels: tuple[tuple[int, int], ...] = ((4, 128), (8, 128), (16, 64), (32, 64), (64, 32))
    # One run from scratch within about an hour on a 2-core CPU (13 synthesis steps/s; 63 min with the
    # mapping fit) meets the quality bar: sample FD 2.35x real-real at n=1000, bias-free FD 0.19,
    # inversions 30.8 dB. Batches of 4 learn more per CPU second than 16 (same images: +0.15 dB in 20% less
    # time); on a GPU, larger batches and more steps are the way on.
    steps: int = 45_000  # synthesis steps
    batch_size: int = 4
    lr: float = 3e-3
    gradient_weight: float = 1.0
    embedding_scale: float = 2.0  # std-ish of the target styles w*(z)
    # The mapping is cheap to fit (no rendering) and its error dominated the shipped samples' Frechet
    # distance: refitting the 4,000-step mapping of the 80,000-step generator for 40,000 steps took its
    # held-out relative MSE 0.025 -> 0.014 (floor 0.012: PixelNorm drops |z|, which the renderer reads) and
    # the bias-free FD 0.34 -> 0.15, with the synthesis unchanged.
    mapping_steps: int = 40_000
    mapping_batch_size: int = 512
    mapping_lr: float = 15.0  # x the lr_mul 0.01 of the mapping layers (their stored weights are 100x)
    # Adversarial sharpening (0 = pure distillation): a regression on deterministic targets still settles
    # on blurred parts while it is underfit; a non-saturating GAN term (our Discriminator, lazy R1) on top
    # of the L1 anchor pushes eyes, brows and mouth to be drawn, as pix2pix's GAN + L1.
    adversarial_weight: float = 0.0
    # The LPIPS loss (losses.perceptual, unlearned, lpips code path) on the toy ID-loss ArcFace's stages
    # (0 = off): weights the parts that identity lives in.
    perceptual_weight: float = 0.0
    perceptual_net: str = "toy_arcface"  # a weights-registry name or a path (models.irse.load_arcface)
    # Extra weight of the fine parts' pixels (eyes, brows, nose, mouth; from the renderer's label map) in
    # the full-size distillation loss (0 = off). An underfit L1 regression draws the per-pixel median,
    # which is skin wherever a small part is not yet placed exactly: its samples then draw no eyes at
    # all. Weighting the parts (1 + part_weight) draws a part where its odds exceed 1 / (1 + part_weight).
    # The shipped generator had it for its last 21,000 steps only; the default from-scratch run has it from
    # the start (eyes and mouth faint at 8,000 steps, drawn, blurred, by 19,400).
    part_weight: float = 10.0
    d_lr: float = 2e-3
    r1_gamma: float = 0.1
    r1_every: int = 16
    ckpt_every: int = 100
    sample_every: int = 200


def build_generator(cfg: GeneratorConfig):
    from models.stylegan2 import Generator

    return Generator(cfg.size, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp, channels=dict(cfg.channels))


def factor_features(z: torch.Tensor) -> torch.Tensor:
    """What the renderer reads from z: (B, FACTOR_DIMS + palette sizes) = the factor codes mapped to
    [-1, 1] (normal CDF) and one-hot palette choices (skin tone, hair colour, hair style)."""
    f = factors_from_gaussian(z)
    uniform = torch.erf(z[:, :FACTOR_DIMS] / math.sqrt(2.0))
    palettes = [F.one_hot(f["skin_tone"], len(SKIN_TONES)), F.one_hot(f["hair_colour"], len(HAIR_COLOURS)),
                F.one_hot(f["hair_style"], len(HAIR_STYLES))]
    return torch.cat([uniform, *palettes], 1).float()


def target_styles(z: torch.Tensor, cfg: GeneratorConfig) -> torch.Tensor:
    """w*(z) (B, style_dim): a fixed random embedding of ``factor_features`` (seeded by cfg.seed).

    The synthesis network learns to draw from w*, the mapping network learns z -> w*; apart, each is
    a well-posed regression that a CPU budget can fit, while fitting G([z]) end to end is far slower.
    """
    feats = factor_features(z)
    proj = torch.randn(feats.shape[1], cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(z.device)
    pre = feats @ (proj * cfg.embedding_scale / math.sqrt(feats.shape[1]))
    # the mapping's last layer ends in a scaled leaky ReLU: give w* the same form so it can be matched
    return F.leaky_relu(pre, 0.2) * math.sqrt(2.0)


def build_discriminator(cfg: GeneratorConfig):
    """Our StyleGAN2 Discriminator with the generator's channel layout: (B, 3, size, size) -> (B, 1)."""
    from models.stylegan2 import Discriminator

    return Discriminator(cfg.size, channels=dict(cfg.channels))


def discriminator_step(d, d_opt, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float,
                       r1_interval: int) -> dict:
    """One non-saturating logistic D update on real / fake (B, 3, S, S) in [-1, 1]. With ``r1_interval``
    > 0 the lazy R1 penalty gamma / 2 * |dD(real)/dreal|^2, times the interval (StyleGAN2's lazy
    regularisation), is added. Returns the logs."""
    r1 = r1_interval > 0
    real = real.detach().requires_grad_(r1)
    real_logit, fake_logit = d(real), d(fake.detach())
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    log = {"d_loss": loss.item(), "d_real": real_logit.mean().item(), "d_fake": fake_logit.mean().item()}
    if r1:
        (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
        penalty = grad.pow(2).flatten(1).sum(1).mean()
        loss = loss + r1_gamma / 2 * penalty * r1_interval
        log["r1"] = penalty.item()
    d_opt.zero_grad(set_to_none=True)
    loss.backward()
    d_opt.step()
    return log


def skip_images(g, w: torch.Tensor) -> dict[int, torch.Tensor]:
    """The skip-branch RGB image at every resolution {4: (B, 3, 4, 4), ..., size: G's output}.

    The same computation as ``Generator.forward`` with one style w (B, style_dim) for all layers and the
    stored noise (rosinality's layer layout); the last entry equals G([w], input_is_latent=True,
    randomize_noise=False)[0].
    """
    latent = w[:, None].expand(-1, g.n_latent, -1)
    noise = [getattr(g.noises, f"noise_{i}") for i in range(g.num_layers)]
    out = g.conv1(g.input(latent), latent[:, 0], noise=noise[0])
    skip = g.to_rgb1(out, latent[:, 1])
    skips, i, res = {4: skip}, 1, 4
    for conv1, conv2, noise1, noise2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2],
                                                    g.to_rgbs):
        out = conv2(conv1(out, latent[:, i], noise=noise1), latent[:, i + 1], noise=noise2)
        skip = to_rgb(out, latent[:, i + 2], skip)
        res *= 2
        skips[res] = skip
        i += 2
    return skips


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of (B, C, H, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


FINE_PARTS = (L_EYE, R_EYE, L_BROW, R_BROW, NOSE, MOUTH, U_LIP, L_LIP)


def part_weights(labels: torch.Tensor, part_weight: float) -> torch.Tensor:
    """(B, 1, H, W) per-pixel loss weights from label maps (B, H, W): 1 + part_weight on FINE_PARTS, else 1."""
    fine = torch.isin(labels, torch.tensor(FINE_PARTS, device=labels.device))
    return (1.0 + part_weight * fine.float())[:, None]


def distillation_loss(fake: torch.Tensor, real: torch.Tensor, gradient_weight: float = 1.0,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-scale L1 (full, 1/2, 1/4) plus L1 between image gradients, which keeps part edges sharp.

    ``weight`` (B, 1, H, W) weighs each pixel's error (area-pooled with the images; a gradient takes the
    larger weight of its two pixels); None weighs all pixels 1.
    """
    loss = fake.new_zeros(())
    weight = torch.ones_like(fake[:, :1]) if weight is None else weight
    f, r, wt = fake, real, weight
    for _ in range(3):
        loss = loss + (wt * (f - r).abs()).mean()
        f, r, wt = F.avg_pool2d(f, 2), F.avg_pool2d(r, 2), F.avg_pool2d(wt, 2)
    pair_weights = (torch.maximum(weight[..., :, 1:], weight[..., :, :-1]),
                    torch.maximum(weight[..., 1:, :], weight[..., :-1, :]))
    for gf, gr, wt in zip(image_gradients(fake), image_gradients(real), pair_weights):
        loss = loss + gradient_weight * (wt * (gf - gr).abs()).mean()
    return loss


def synthesis_loss(skips: dict[int, torch.Tensor], real: torch.Tensor, gradient_weight: float = 1.0,
                   weight: torch.Tensor | None = None):
    """``distillation_loss`` (with ``weight``) at full size plus L1 of each intermediate skip image
    (8 .. size/2) to the area-downsampled target, which teaches the coarse layers directly."""
    size = real.shape[-1]
    loss = distillation_loss(skips[size], real, gradient_weight, weight)
    for res, img in skips.items():
        if 8 <= res < size:
            loss = loss + (img - F.adaptive_avg_pool2d(real, res)).abs().mean()
    return loss


def generator_batch(cfg: GeneratorConfig, gen: torch.Generator,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z (B, style_dim) standard normal, the renderer's image of z (B, 3, size, size) in [-1, 1], its
    label map (B, size, size) int64) on ``device`` (z drawn on the CPU, as in ``arcface_batch``)."""
    z = torch.randn(cfg.batch_size, cfg.style_dim, generator=gen).to(device)
    target = render_gaussian(z, cfg.size)
    return z, target.image, target.labels


def sample_grid(generator, z: torch.Tensor, path: Path, size: int) -> None:
    """Rows: renderer targets, G([z]) through the mapping network, for a fixed z."""
    import torchvision

    with torch.no_grad():
        fake, _ = generator([z], randomize_noise=False)
    grid = torch.cat([render_gaussian(z, size).image, fake.clamp(-1, 1)]).cpu()
    torchvision.utils.save_image((grid + 1) / 2, str(path), nrow=len(z))


def fit_mapping(g, cfg: GeneratorConfig, progress: bool = True) -> None:
    """Regress the mapping network onto w*(z) for ``mapping_steps`` (MSE, no rendering: cheap), from its
    current weights (fresh or a loaded generator's), with a cosine schedule from ``mapping_lr``."""
    opt = torch.optim.Adam(g.style.parameters(), lr=cfg.mapping_lr, betas=(0.9, 0.99))
    bar = tqdm(range(cfg.mapping_steps), desc=f"{cfg.name} mapping", disable=not progress)
    for step in bar:
        z = torch.randn(cfg.mapping_batch_size, cfg.style_dim, generator=step_generator(cfg.seed + 1, step))
        z = z.to(next(g.style.parameters()).device)
        target = target_styles(z, cfg)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.mapping_steps, cfg.mapping_lr)
        loss = F.mse_loss(g.style(z), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(rel_mse=f"{loss.item() / target.var().item():.4f}")


def heldout_codes(cfg: GeneratorConfig, n: int = 8192) -> torch.Tensor:
    """(n, style_dim) fixed standard-normal codes that ``fit_mapping`` never draws."""
    return torch.randn(n, cfg.style_dim, generator=step_generator(cfg.seed + 2, 0))


def mapping_rel_mse(g, cfg: GeneratorConfig) -> float:
    """Mean squared error of the mapping network against w*(z) over ``heldout_codes``, relative to the
    variance of w*."""
    z = heldout_codes(cfg).to(next(g.style.parameters()).device)
    target = target_styles(z, cfg)
    with torch.no_grad():
        return F.mse_loss(g.style(z), target).item() / target.var().item()


def mapping_rel_mse_floor(cfg: GeneratorConfig, draws: int = 64) -> float:
    """The part of ``mapping_rel_mse`` no mapping network can remove: its PixelNorm sees z / |z| only,
    while w* reads z itself, so the best prediction is the mean of w* over the unseen norm (a chi
    distribution, ``draws`` Monte-Carlo samples)."""
    z = heldout_codes(cfg)
    target = target_styles(z, cfg)
    direction = z / z.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    norms = torch.randn(draws, cfg.style_dim, generator=gen).norm(dim=1)
    best = torch.stack([target_styles(direction * r, cfg) for r in norms]).mean(0)
    return F.mse_loss(best, target).item() / target.var().item()


def load_init(g, path: str | Path, cfg: GeneratorConfig) -> None:
    """Copy a generator file of ``cfg``'s architecture (``export_generator`` / ``save_generator`` format, or
    a rosinality .pt) into ``g``, strictly; a missing, damaged or unsafe file or another architecture stops
    with one line naming the file."""
    from models.stylegan2 import load_generator

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--init {path}: no such file (a generator written by `pretrain_toy.py stylegan2`, "
                         "e.g. models/pretrained/toy_stylegan2.safetensors)")
    try:
        loaded, _ = load_generator(path, cfg.size, style_dim=cfg.style_dim, n_mlp=cfg.n_mlp,
                                   channels=dict(cfg.channels))
    except ValueError as err:  # unreadable or unsafe: models.weights names the file and the remedy
        raise SystemExit(f"--init {err}") from None
    except RuntimeError as err:  # load_state_dict: "Error(s) in loading state_dict ...:" then the details
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise SystemExit(f"--init {path}: not a generator of this configuration (size {cfg.size}, style_dim "
                         f"{cfg.style_dim}, n_mlp {cfg.n_mlp}, channels {dict(cfg.channels)}): "
                         f"{details[0] if details else err}") from None
    g.load_state_dict(loaded.state_dict())


def train_generator(cfg: GeneratorConfig, work_dir: Path, progress: bool = True, stop_at: int | None = None,
                    device: str | torch.device = "cpu", init: str | Path | None = None):
    """Distil the renderer into the toy StyleGAN2 so that G([z]) ~ render(factors_from_gaussian(z)).

    Two regressions through the fixed target styles w*(z) (``target_styles``): the mapping network onto
    w* (``fit_mapping``, first, cheap), and the synthesis network from w* to the rendered image
    (``synthesis_loss``, ``steps`` steps), on ``device``. Returns (generator in eval mode on the CPU,
    latent_avg (style_dim,), losses); ``stop_at`` as in train_arcface (counts synthesis steps).
    ``init``: a generator file to start from when ``work_dir`` holds no checkpoint: both halves continue
    from its weights (``mapping_steps`` 0 keeps its mapping as is); an existing checkpoint is resumed and
    ``init`` ignored.
    """
    run_dir = work_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    g = build_generator(cfg).to(device)
    synthesis = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    opt = torch.optim.Adam(synthesis, lr=cfg.lr, betas=(0.9, 0.99))
    d = build_discriminator(cfg).to(device) if cfg.adversarial_weight > 0 else None
    perceptual = None
    if cfg.perceptual_weight > 0:
        from losses.perceptual import PerceptualLoss

        perceptual = PerceptualLoss.from_backbone("irse", network=cfg.perceptual_net).to(device)
    d_opt = torch.optim.Adam(d.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99)) if d is not None else None
    ckpt_path = run_dir / "ckpt.pt"
    start, losses, mapping_error = 0, [], None
    state = load_checkpoint(ckpt_path)
    if state is not None:
        g.load_state_dict(state["g"])
        opt.load_state_dict(state["opt"])
        start, mapping_error = int(state["step"]), float(state["mapping_rel_mse"])
        # a distillation checkpoint continued with the adversarial term starts a fresh discriminator
        if d is not None and "d" in state:
            d.load_state_dict(state["d"])
            d_opt.load_state_dict(state["d_opt"])
        if init is not None:
            tqdm.write(f"[{cfg.name}] resuming {ckpt_path} at step {start}; --init {init} is not used")
    elif init is not None:
        load_init(g, init, cfg)
        tqdm.write(f"[{cfg.name}] started from {init}: mapping relative MSE {mapping_rel_mse(g, cfg):.4f}")
    run = start_wandb(cfg.name, asdict(cfg), run_dir)
    if mapping_error is None:  # a new run: fit the mapping first (continuing --init's)
        fit_mapping(g, cfg, progress)
        mapping_error = mapping_rel_mse(g, cfg)
        tqdm.write(f"[{cfg.name}] mapping fitted: held-out relative MSE {mapping_error:.4f}")
    if run is not None:
        run.summary["mapping_rel_mse"] = mapping_error
    fixed_z = torch.randn(8, cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    g.train()
    end = min(cfg.steps, stop_at or cfg.steps)
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc=cfg.name, disable=not progress)
    for step in bar:
        z, real, labels = generator_batch(cfg, step_generator(cfg.seed, step), device)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr)
        skips = skip_images(g, target_styles(z, cfg))
        weight = part_weights(labels, cfg.part_weight) if cfg.part_weight > 0 else None
        loss = synthesis_loss(skips, real, cfg.gradient_weight, weight)
        log = {"loss": loss.item(), "psnr": psnr(skips[cfg.size].detach(), real).mean().item()}
        if perceptual is not None:
            feature_loss = perceptual(skips[cfg.size], real)
            loss = loss + cfg.perceptual_weight * feature_loss
            log["feature_loss"] = feature_loss.item()
        if d is not None:
            log.update(discriminator_step(d, d_opt, real, skips[cfg.size], cfg.r1_gamma,
                                          cfg.r1_every if step % cfg.r1_every == 0 else 0))
            d.requires_grad_(False)
            g_adv = F.softplus(-d(skips[cfg.size])).mean()
            d.requires_grad_(True)
            loss = loss + cfg.adversarial_weight * g_adv
            log["g_adv"] = g_adv.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{log['loss']:.4f}", psnr=f"{log['psnr']:.2f}")
        done = step + 1
        if done % cfg.sample_every == 0 or done == cfg.steps:
            sample_grid(g, fixed_z, run_dir / f"samples_{done:06d}.png", cfg.size)
            tqdm.write(f"[{cfg.name}] step {done}: loss {loss.item():.4f} psnr {log['psnr']:.2f}")
        if run is not None:
            run.log(log, step=done)
        if done % cfg.ckpt_every == 0 or done == end:
            adversary = {"d": d.state_dict(), "d_opt": d_opt.state_dict()} if d is not None else {}
            save_atomic({"g": g.state_dict(), "opt": opt.state_dict(), "step": done,
                         "mapping_rel_mse": mapping_error, **adversary}, ckpt_path)
    if run is not None:
        run.finish()
    g = g.cpu().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        latent_avg = g.mean_latent(10_000)[0]
    return g, latent_avg, losses


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((x.clamp(-1, 1) - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


def export_generator(g, latent_avg: torch.Tensor, name: str, out_dir: Path) -> dict[str, Path]:
    """Write ``<name>.safetensors``: flat ``g_ema.<key>`` fp16 tensors and ``latent_avg`` (load_generator)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    flat = {f"g_ema.{k}": v for k, v in fp16_state(g).items()}
    flat["latent_avg"] = latent_avg.detach().reshape(-1).half().contiguous()
    tmp = out_dir / f".{name}.safetensors.tmp"
    save_file(flat, str(tmp), metadata={"format": "pt", "arch": "stylegan2.Generator"})
    os.replace(tmp, path)
    return {"safetensors": path}


def cmd_stylegan2(args) -> dict:
    cfg = GeneratorConfig(**{**asdict(GeneratorConfig()), **cli_overrides(args, GeneratorConfig)})
    t0 = time.time()
    g, latent_avg, losses = train_generator(cfg, Path(args.work_dir), progress=not args.no_progress,
                                            device=resolve_device(args.device), init=args.init)
    paths = export_generator(g, latent_avg, cfg.name, Path(args.out_dir))
    result = {"name": cfg.name, "train_seconds": time.time() - t0,
              "final_loss": losses[-1] if losses else None, "sha256": print_hashes(paths)}
    print(json.dumps(result, indent=1))
    return result


def stage_features(net: Backbone, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """FD features: the 4 stage maps of ``net`` average-pooled and concatenated, (N, sum(stage_channels)).

    Images (N, 3, S, S) in [-1, 1] are quantised to uint8 first, as FID does.
    """
    from metrics.fid import quantize

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = quantize(images[i:i + batch_size]).float() / 127.5 - 1
            out.append(torch.cat([f.mean((2, 3)) for f in net.stage_features(x)], 1))
    return torch.cat(out).double()


def feature_fd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D)."""
    from metrics.fid import StatsAccumulator, fid

    return fid(StatsAccumulator().update(a).stats(), StatsAccumulator().update(b).stats())


def generate(g, z: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """G([z]) with the stored noise: (N, 3, size, size), clamped to [-1, 1]."""
    with torch.no_grad():
        return torch.cat([g([z[i:i + batch_size]], randomize_noise=False)[0]
                          for i in range(0, len(z), batch_size)]).clamp(-1, 1)


def invert(g, latent_avg: torch.Tensor, target: torch.Tensor, steps: int = 200,
           lr: float = 0.05) -> torch.Tensor:
    """Optimisation-based W+ inversion: the W+ code (B, n_latent, style_dim) minimising MSE + L1 to target."""
    w = latent_avg.detach().reshape(1, 1, -1).repeat(len(target), g.n_latent, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=10)
        fake, _ = g([w], input_is_latent=True, randomize_noise=False)
        loss = F.mse_loss(fake, target) + (fake - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()


BLUR_SCALE_SIGMAS = (0.5, 1.0, 1.5, 2.0)


def check(out_dir: Path, work_dir: Path, fd_samples: int = 1000, n_inversions: int = 100,
          inversion_steps: int = 200, generator: bool = True, fd_inf_samples: int = 5000) -> dict:
    """Quality measurements of the shipped toy networks (the README / issue figures), as a dict.

    arcfaces: ``identity_report`` of each ArcFace loaded through the ID-loss loader, plus the agreement
    (mean cosine) of its ONNX export through insightface with the torch network. stylegan2: Frechet
    distances on toy eval ArcFace stage features (G samples vs real renders, and two disjoint real
    sets) at ``fd_samples`` each, and extrapolated to infinitely many (``frechet_distance_at_infinity``
    over the fifths of ``fd_inf_samples`` larger than the feature dimension, None when fewer than two
    are; the first ``fd_samples`` rows are the fixed-n sets; beside it, that of real renders blurred by
    each of ``BLUR_SCALE_SIGMAS`` pixels as a scale), and
    W+ inversions of ``n_inversions`` test photos a_i (``report_photos``): PSNR, evaluation-ArcFace
    similarity to the photo, to another photo b_i of the person (relative to the real-real similarity)
    and to b_i's look-alike, and the verification accuracy of inversions against look-alikes beside that
    of the real photos (``generator=False`` skips these).
    """
    import insightface
    import numpy as np
    import torchvision
    import torchvision.transforms.functional as TF

    from metrics.fid import frechet_distance_at_infinity
    from models.irse import load_arcface
    from models.stylegan2 import load_generator

    shipped = [p for p in sorted(out_dir.glob("toy_*")) if p.suffix in (".safetensors", ".onnx")]
    result: dict = {"files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in shipped}}
    nets = {}
    photos = report_photos()
    a = photos["a"]
    for name in ARCFACES:
        nets[name] = load_arcface(out_dir / f"{name}.safetensors")
        onnx_model = insightface.model_zoo.get_model(str(out_dir / f"{name}.onnx"),
                                                     providers=["CPUExecutionProvider"])
        x112 = F.interpolate(a[:64], size=(ONNX_INPUT, ONNX_INPUT), mode="bilinear", align_corners=False)
        onnx_emb = torch.from_numpy(onnx_model.forward(((x112 + 1) * 127.5).numpy().astype(np.float32)))
        agreement = F.cosine_similarity(onnx_emb, embed(nets[name], a[:64])).mean().item()
        result[name] = {**identity_report(nets[name]), "onnx_type": type(onnx_model).__name__,
                        "onnx_torch_cosine": agreement}

    if not generator:
        return result
    cfg = GeneratorConfig()
    g, latent_avg = load_generator(out_dir / f"{cfg.name}.safetensors", cfg.size, style_dim=cfg.style_dim,
                                   n_mlp=cfg.n_mlp, channels=dict(cfg.channels))
    g.eval()
    pool = max(fd_samples, fd_inf_samples)
    z = [torch.randn(pool, cfg.style_dim, generator=torch.Generator().manual_seed(100 + k)) for k in range(3)]
    real1, real2 = (torch.cat([render_gaussian(zk[i:i + 250], cfg.size).image
                               for i in range(0, pool, 250)]) for zk in z[:2])
    fake = generate(g, z[2])
    trunk = nets["toy_eval_arcface"]
    f_real1, f_real2, f_fake = (stage_features(trunk, x) for x in (real1, real2, fake))
    fd_fake = feature_fd(f_fake[:fd_samples], f_real1[:fd_samples])
    fd_real = feature_fd(f_real2[:fd_samples], f_real1[:fd_samples])
    # the fixed-n ratio grows with n (the real-real distance is all finite-sample bias): report the
    # bias-free distances too, from the fifths of the pool that exceed the feature dimension
    sizes = [n for n in (fd_inf_samples * k // 5 for k in range(1, 6)) if n > f_fake.shape[1]]
    bias_free: dict = {"fd_inf_samples_vs_real": None, "fd_inf_real_vs_real": None, "fd_by_n": None,
                       "fd_inf_real_blurred_by_sigma": None}
    if len(sizes) >= 2:
        def fd_inf(features: torch.Tensor) -> tuple[float, dict[int, float]]:
            return frechet_distance_at_infinity(features, f_real1, sizes)

        (fake_inf, fake_curve), (real_inf, real_curve) = fd_inf(f_fake), fd_inf(f_real2)
        bias_free = {
            "fd_inf_samples_vs_real": fake_inf, "fd_inf_real_vs_real": real_inf,
            "fd_by_n": {n: [fake_curve[n], real_curve[n]] for n in sizes},
            # a scale for fd_inf: real renders blurred by a Gaussian of sigma pixels
            "fd_inf_real_blurred_by_sigma": {sigma: fd_inf(stage_features(trunk, TF.gaussian_blur(
                real2, 2 * math.ceil(3 * sigma) + 1, sigma)))[0] for sigma in BLUR_SCALE_SIGMAS}}
    work_dir.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image((torch.cat([real1[:16], fake[:16]]) + 1) / 2,
                                 str(work_dir / "check_samples.png"), nrow=16)
    target, other, alike = (photos[k][:n_inversions] for k in ("a", "b", "alike"))
    w = invert(g, latent_avg, target, inversion_steps)
    with torch.no_grad():
        inverted = g([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
    torchvision.utils.save_image((torch.cat([target[:16], inverted[:16]]) + 1) / 2,
                                 str(work_dir / "check_inversions.png"), nrow=16)
    # identity through the generator: the inversion of photo a_i against another photo b_i of the person
    # and b_i's look-alike, judged by the evaluation ArcFace (the metric network)
    judge = nets["toy_eval_arcface"]
    e_t, e_o, e_a, e_i = (embed(judge, x) for x in (target, other, alike, inverted))
    real_real = (e_t * e_o).sum(1).mean().item()
    inv_other = (e_i * e_o).sum(1).mean().item()
    result["toy_stylegan2"] = {
        "fd_samples_vs_real": fd_fake, "fd_real_vs_real": fd_real, "fd_ratio": fd_fake / max(fd_real, 1e-12),
        "fd_features": "toy_eval_arcface stage features, avg-pooled", "fd_samples": fd_samples,
        "fd_inf_samples": fd_inf_samples,
        **bias_free,
        "mapping_rel_mse": mapping_rel_mse(g, cfg), "mapping_rel_mse_floor": mapping_rel_mse_floor(cfg),
        "inversion_psnr_mean": psnr(inverted, target).mean().item(),
        "inversion_sim_to_photo": (e_i * e_t).sum(1).mean().item(),
        "inversion_sim_to_other_photo": inv_other, "real_real_sim": real_real,
        "inversion_sim_to_lookalike": (e_i * e_a).sum(1).mean().item(),
        "inversion_verification_acc_lookalike": verification_accuracy((e_i * e_o).sum(1), (e_i * e_a).sum(1)),
        "real_verification_acc_lookalike": verification_accuracy((e_t * e_o).sum(1), (e_t * e_a).sum(1)),
        "inversion_vs_real_ratio": inv_other / real_real, "inversions": n_inversions,
        "inversion_steps": inversion_steps,
    }
    return result


def cmd_encoder(args) -> dict:
    """Ship the toy IDE encoder: train the main job's run (or take ``--run``) and export its ``final/``."""
    from safetensors.torch import load_file, save_file

    from experiments.pipeline import recorded_generator

    if args.run:
        final = Path(args.run) / "final"
    else:
        from experiments.config import load_config
        from experiments.train import train

        final = train(load_config(["ablation=pretrained_id", f"seed={args.seed or 0}"])) / "final"
    if not (final / "encoder.safetensors").is_file():
        raise SystemExit(f"{final}: no encoder.safetensors (is the run finished?)")
    out = Path(args.out_dir) / "toy_ide"
    out.mkdir(parents=True, exist_ok=True)
    source = final / "encoder.safetensors"
    state = fp16_state(load_file(str(source)))
    generator = recorded_generator(source)
    if generator is None:
        # exported before encoders recorded their generator: stamp the one its config names today
        from experiments.pipeline import load_run_config
        from experiments.world import load_frozen_generator
        from models.weights import state_fingerprint

        generator = state_fingerprint(load_frozen_generator(load_run_config(final), torch.device("cpu"))[0])
        print(f"{source}: no generator fingerprint recorded; stamping {generator}, the generator its "
              "config names now (retrain the run if that generator changed since)")
    tmp = out / "encoder.safetensors.partial"
    save_file(state, str(tmp), metadata={"generator": generator})  # one key: byte-reproducible (methods.export)
    os.replace(tmp, out / "encoder.safetensors")
    (out / "config.yaml").write_text((final / "config.yaml").read_text())
    hashes = print_hashes({"encoder": out / "encoder.safetensors"})
    return {"name": "toy_ide", "run": str(final.parent), "sha256": hashes}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("arcface", "eval-arcface", "stylegan2", "all", "check", "encoder"))
    p.add_argument("--run", default=None, help="encoder: a finished toy run folder to ship instead of training")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the cosine schedule (arcface: AdamW; stylegan2: the synthesis Adam)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--perceptual-weight", type=float, default=None,
                   help="stylegan2: weight of the LPIPS term on the toy ArcFace's stages (default 0: off)")
    p.add_argument("--adversarial-weight", type=float, default=None,
                   help="stylegan2: weight of the GAN term on top of the distillation loss (default 0: off)")
    p.add_argument("--mapping-steps", type=int, default=None,
                   help="stylegan2: steps of the mapping-network fit of a new run (default 40000; with --init "
                        "they continue the file's mapping, 0 keeps it)")
    p.add_argument("--part-weight", type=float, default=None,
                   help="stylegan2: extra loss weight of eye, brow, nose and mouth pixels (default 10; 0: off)")
    p.add_argument("--init", default=None,
                   help="stylegan2: a generator file to start from when --work-dir holds no checkpoint, e.g. "
                        "models/pretrained/toy_stylegan2.safetensors (its mapping is kept; a checkpoint wins)")
    p.add_argument("--work-dir", default=str(REPO_ROOT / "runs" / "pretrain_toy"))
    p.add_argument("--out-dir", default=str(PRETRAINED_DIR))
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fd-samples", type=int, default=1000, help="check: images per fixed-n FD set")
    p.add_argument("--fd-inf-samples", type=int, default=5000,
                   help="check: images per set for the bias-free FD (extrapolated from its fifths)")
    p.add_argument("--inversions", type=int, default=100, help="check: test photos inverted")
    p.add_argument("--no-generator", action="store_true", help="check: the ArcFaces only")
    p.add_argument("--inversion-steps", type=int, default=200, help="check: optimisation steps per inversion")
    p.add_argument("--device", default="auto",
                   help="training device: auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a busy shared CPU)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        resolve_device(args.device)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.init is not None and args.command not in ("stylegan2", "all"):
        raise SystemExit(f"--init: not an option of `pretrain_toy.py {args.command}`")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command in ("arcface", "all"):
        cmd_arcface(args, "toy_arcface")
    if args.command in ("eval-arcface", "all"):
        cmd_arcface(args, "toy_eval_arcface")
    if args.command in ("stylegan2", "all"):
        cmd_stylegan2(args)
    if args.command == "encoder":
        print(json.dumps(cmd_encoder(args), indent=1))
    if args.command == "check":
        print(json.dumps(check(Path(args.out_dir), Path(args.work_dir), args.fd_samples, args.inversions,
                               args.inversion_steps, not args.no_generator, args.fd_inf_samples), indent=1))


if __name__ == "__main__":
    main()
