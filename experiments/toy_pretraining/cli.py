"""Train the toy world's networks from scratch and export them to ``models/pretrained/``.

    ideface-pretrain-toy arcface          # toy ArcFace (ID loss, pretrained-ID init)
    ideface-pretrain-toy eval-arcface     # second ArcFace for the metrics (IDSIM/LPIPS/FID)
    ideface-pretrain-toy stylegan2        # toy StyleGAN2 (32x32, n_latent 8), by distillation
    ideface-pretrain-toy all              # the three above, in order
    ideface-pretrain-toy encoder [--run DIR]  # ship the toy IDE encoder (load_pipeline("toy"))
    ideface-pretrain-toy check            # quality measurements of the shipped files, as JSON

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

How each shipped file was made, with its measurements: ``models/pretrained/README.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from experiments.config_schema import ConfigError
from experiments.device import resolve_device
from experiments.errors import one_line_errors
from experiments.toy_pretraining.arcface import ARCFACES, ArcFaceConfig, export_arcface, train_arcface
from experiments.toy_pretraining.check import FD_DRAWS, check
from experiments.toy_pretraining.encoder import ship_encoder
from experiments.toy_pretraining.export import print_hashes
from experiments.toy_pretraining.generator import GeneratorConfig, export_generator, train_generator
from models.weights import PRETRAINED_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli_overrides(args, config_cls) -> dict:
    """The fields of ``config_cls`` given on the command line (--steps, --batch-size, --lr, --seed,
    --adversarial-weight, --perceptual-weight, --part-weight, --mapping-steps). An option the network does
    not have is an error, except under ``all``."""
    given = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "adversarial_weight": args.adversarial_weight,
        "perceptual_weight": args.perceptual_weight,
        "part_weight": args.part_weight,
        "mapping_steps": args.mapping_steps,
    }
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(config_cls)})
    if unknown and args.command != "all":
        options = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{options}: not an option of `ideface-pretrain-toy {args.command}`")
    return {k: v for k, v in given.items() if k not in unknown}


def cmd_arcface(args, name: str) -> dict:
    cfg = ArcFaceConfig(**{**asdict(ARCFACES[name]), **cli_overrides(args, ArcFaceConfig)})
    t0 = time.time()
    net, out = train_arcface(
        cfg, Path(args.work_dir), progress=not args.no_progress, device=resolve_device(args.device)
    )
    paths = export_arcface(net, cfg.name, Path(args.out_dir))
    result = {"name": cfg.name, "train_seconds": time.time() - t0, **out["report"], "sha256": print_hashes(paths)}
    print(json.dumps(result, indent=1))
    return result


def cmd_stylegan2(args) -> dict:
    cfg = GeneratorConfig(**{**asdict(GeneratorConfig()), **cli_overrides(args, GeneratorConfig)})
    t0 = time.time()
    g, latent_avg, losses = train_generator(
        cfg, Path(args.work_dir), progress=not args.no_progress, device=resolve_device(args.device), init=args.init
    )
    paths = export_generator(g, latent_avg, cfg.name, Path(args.out_dir))
    result = {
        "name": cfg.name,
        "train_seconds": time.time() - t0,
        "final_loss": losses[-1] if losses else None,
        "sha256": print_hashes(paths),
    }
    print(json.dumps(result, indent=1))
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="ideface-pretrain-toy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=("arcface", "eval-arcface", "stylegan2", "all", "check", "encoder"))
    p.add_argument("--run", default=None, help="encoder: a finished toy run folder to ship instead of training")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate of the cosine schedule (arcface: AdamW; stylegan2: the synthesis Adam)",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--perceptual-weight",
        type=float,
        default=None,
        help="stylegan2: weight of the LPIPS term on the toy ArcFace's stages (default 0: off)",
    )
    p.add_argument(
        "--adversarial-weight",
        type=float,
        default=None,
        help="stylegan2: weight of the GAN term on top of the distillation loss (default 0: off)",
    )
    p.add_argument(
        "--mapping-steps",
        type=int,
        default=None,
        help="stylegan2: steps of the mapping-network fit of a new run (default 40000; with --init "
        "they continue the file's mapping, 0 keeps it)",
    )
    p.add_argument(
        "--part-weight",
        type=float,
        default=None,
        help="stylegan2: extra loss weight of eye, brow, nose and mouth pixels (default 10; 0: off)",
    )
    p.add_argument(
        "--init",
        default=None,
        help="stylegan2: a generator file to start from when --work-dir holds no checkpoint, e.g. "
        "models/pretrained/toy_stylegan2.safetensors (its mapping is kept; a checkpoint wins)",
    )
    p.add_argument("--work-dir", default=str(REPO_ROOT / "runs" / "pretrain_toy"))
    p.add_argument("--out-dir", default=str(PRETRAINED_DIR))
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fd-samples", type=int, default=1000, help="check: images per fixed-n FD set")
    p.add_argument(
        "--fd-draws",
        type=int,
        default=FD_DRAWS,
        help="check: independent draws of the fixed-n sets; the FD ratio is that of their means",
    )
    p.add_argument(
        "--fd-inf-samples",
        type=int,
        default=5000,
        help="check: images per set for the bias-free FD (extrapolated from its fifths)",
    )
    p.add_argument("--inversions", type=int, default=100, help="check: test photos inverted")
    p.add_argument("--no-generator", action="store_true", help="check: the ArcFaces only")
    p.add_argument("--inversion-steps", type=int, default=200, help="check: optimisation steps per inversion")
    p.add_argument(
        "--inversion-perceptual-weight",
        type=float,
        default=1.0,
        help="check: weight of the inversions' LPIPS term on the ID-loss ArcFace's stages (0: MSE + L1 only)",
    )
    p.add_argument("--device", default="auto", help="training device: auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a busy shared CPU)")
    return p.parse_args(argv)


def main(argv=None):
    """The command line; user errors (the project's own and OS errors about the user's paths) are one
    line and exit code 2."""
    code = one_line_errors(lambda: _main(argv))
    if code:
        raise SystemExit(code)


def _main(argv=None):
    args = parse_args(argv)
    try:
        resolve_device(args.device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.init is not None and args.command not in ("stylegan2", "all"):
        raise ConfigError(f"--init: not an option of `ideface-pretrain-toy {args.command}`")
    if args.command == "check" and args.fd_draws < 1:
        raise ConfigError(f"--fd-draws {args.fd_draws}: must be at least 1 (independent draws of the FD sets)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command in ("arcface", "all"):
        cmd_arcface(args, "toy_arcface")
    if args.command in ("eval-arcface", "all"):
        cmd_arcface(args, "toy_eval_arcface")
    if args.command in ("stylegan2", "all"):
        cmd_stylegan2(args)
    if args.command == "encoder":
        print(json.dumps(ship_encoder(Path(args.out_dir), args.run, args.seed or 0), indent=1))
    if args.command == "check":
        print(
            json.dumps(
                check(
                    Path(args.out_dir),
                    Path(args.work_dir),
                    args.fd_samples,
                    args.inversions,
                    args.inversion_steps,
                    not args.no_generator,
                    args.fd_inf_samples,
                    args.inversion_perceptual_weight,
                    args.fd_draws,
                ),
                indent=1,
            )
        )
