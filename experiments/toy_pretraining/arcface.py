"""The toy ArcFaces: the ID-loss / pretrained-ID-init network and the evaluation network.

IR-SE backbones working on the world's image itself (``Backbone(input_size=32)`` at 32x32), trained on all 2,000
toy *train* identities (``data.toyfaces.dataset`` identity codes, world seed 0) under fresh per-photo draws
(coarse look and nuisance) each step, with an additive angular margin loss plus an auxiliary regression
of the identity code, and a curriculum that grows the per-photo draws from the mean look and pose to the
world's (``photo_curriculum``). Their ONNX exports take the ArcFace-standard (B, 3, 112, 112) input in
[-1, 1] (what ``insightface.model_zoo.get_model`` recognises as ``ArcFaceONNX``) and resize it to their input
size in the graph.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from data.toyfaces.dataset import identity_codes
from data.toyfaces.render import N_IDENTITY, N_PHOTO, assemble, render_gaussian
from experiments.toy_pretraining.export import fp16_state
from experiments.toy_pretraining.sizes import toy_world_sizes
from experiments.toy_pretraining.training import cosine_lr, load_checkpoint, save_atomic, start_wandb, step_generator
from experiments.toy_pretraining.verification import identity_report
from models.irse import Backbone
from ops.atomic_write import atomic_path

ONNX_INPUT = 112


@dataclass
class ArcFaceConfig:
    """One toy ArcFace: architecture, ArcFace head and optimisation."""

    name: str = "toy_arcface"
    seed: int = 1
    # the encoders' layout (world/toy.yaml's model section): this network initialises the identity encoder
    stage_channels: tuple[int, ...] = field(default_factory=lambda: toy_world_sizes().stage_channels)
    stage_units: tuple[int, ...] = field(default_factory=lambda: toy_world_sizes().stage_units)
    embedding_dim: int = 128
    image_size: int = field(default_factory=lambda: toy_world_sizes().image_size)
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
    # from scratch at full scale the parts are not found, with the look and pose held fixed they are found
    # quickly (the curriculum finds the parts first, then learns invariance; models/pretrained/README.md).
    photo_curriculum: float = 0.4
    ckpt_every: int = 100
    eval_every: int = 500
    eval_identities: int = 300


ARCFACES = {
    # the loss / pretrained-ID-init network
    "toy_arcface": ArcFaceConfig(steps=6000),
    # the metric network: another seed and a slimmer layout (the real metric model differs from the loss one);
    # at 32 px the slim layout needs more steps to verify random impostors (models/pretrained/README.md)
    "toy_eval_arcface": ArcFaceConfig(
        name="toy_eval_arcface", seed=2, stage_channels=(16, 32, 64, 128), stage_units=(1, 2, 2, 1), steps=8000
    ),
}


def build_arcface(cfg: ArcFaceConfig) -> Backbone:
    """The IR-SE backbone: (B, 3, S, S) in [-1, 1], S = ``cfg.image_size`` -> (B, embedding_dim) unit vectors."""
    return Backbone(
        cfg.image_size,
        mode="ir_se",
        drop_ratio=0.0,
        stage_channels=cfg.stage_channels,
        stage_units=cfg.stage_units,
        embedding_dim=cfg.embedding_dim,
    )


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
        target = torch.where(theta + margin < math.pi, torch.cos(theta + margin), cos_y - margin * math.sin(margin))
        return self.scale * cos.scatter(1, labels[:, None], target)


def arcface_batch(
    ident: torch.Tensor,
    batch_size: int,
    gen: torch.Generator,
    size: int,
    device: str | torch.device = "cpu",
    photo_scale: float = 1.0,
):
    """Fresh photos of random train identities: ((B, 3, size, size) in [-1, 1], labels (B,)) on ``device``.

    ``photo_scale`` scales the per-photo codes (look and nuisance; 1 = the world's photos, 0 = every photo
    in the mean look and pose). The codes are drawn on the CPU (``gen``), so every device trains on the
    same photos; the renderer runs where the codes are."""
    labels = torch.randint(0, ident.shape[0], (batch_size,), generator=gen)
    photo = torch.randn(batch_size, N_PHOTO, generator=gen) * photo_scale
    codes = assemble(ident[labels], photo).to(device)
    return render_gaussian(codes, size).image, labels.to(device)


def train_arcface(
    cfg: ArcFaceConfig,
    work_dir: Path,
    progress: bool = True,
    stop_at: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Backbone, dict]:
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
        images, labels = arcface_batch(
            ident, cfg.batch_size, step_generator(cfg.seed, step), cfg.image_size, device, photo_scale
        )
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
        log = {
            "loss": loss.item(),
            "code_loss": code_loss.item(),
            "lr": lr,
            "margin": margin,
            "photo_scale": photo_scale,
            "train_acc": (logits.argmax(1) == labels).float().mean().item(),
        }
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
    with atomic_path(st) as tmp:
        save_file(fp16_state(net), str(tmp), metadata={"format": "pt", "arch": "irse.Backbone"})
    onnx_path = out_dir / f"{name}.onnx"
    # the fp16 round trip first, so the ONNX graph computes exactly what the shipped torch weights do
    net = build_like(net, st)
    wrapper = ArcFaceONNXInput(net).eval()
    dummy = torch.zeros(2, 3, ONNX_INPUT, ONNX_INPUT)
    with atomic_path(onnx_path) as tmp:
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(tmp),
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=18,
            dynamo=False,
        )
    return {"safetensors": st, "onnx": onnx_path}


def build_like(net: Backbone, path: Path) -> Backbone:
    """A fresh fp32 copy of ``net``'s architecture loaded strictly from a safetensors file, eval mode."""
    from models.weights import load_state_file

    fresh = Backbone(
        net.input_size,
        mode="ir_se",
        drop_ratio=0.0,
        stage_channels=net.stage_channels,
        stage_units=net.stage_units,
        embedding_dim=net.output_layer[3].out_features,
    )
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_file(path).items()}
    fresh.load_state_dict(state, strict=True)
    return fresh.eval()
