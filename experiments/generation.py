"""Generation from image files with a trained checkpoint: one (contour, identity) pair, or folders of
them (every contour with every identity, or the pairs of a CSV); the library behind
``experiments/generate.py``, whose docstring gives the options. :func:`run` takes its parsed arguments."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
GRID_MAX_ROWS = 32


class InputError(ValueError):
    """A bad command-line input; the message is one line."""


def list_images(folder: Path) -> dict[str, Path]:
    """Image files of a folder by stem (sorted); two files with one stem are an error."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise InputError(
                f"{folder}: {files[path.stem].name} and {path.name} share the name '{path.stem}'; outputs would collide"
            )
        files[path.stem] = path
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _lookup(files: dict[str, Path], folder: Path, value: str, what: str, where: str) -> Path:
    candidate = folder / value
    if candidate.is_file():
        return candidate
    stem = Path(value).stem
    if stem in files:
        return files[stem]
    raise InputError(f"{where}: no {what} file '{value}' in {folder}")


def read_pairs(
    path: Path, contours: dict[str, Path], contour_dir: Path, identities: dict[str, Path], identity_dir: Path
) -> list[tuple[Path, Path]]:
    """(contour file, identity file) for each row of a CSV with ``contour`` and ``identity`` columns."""
    if not path.is_file():
        raise InputError(f"pairs file {path} not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("contour", "identity") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (need 'contour' and 'identity')")
        pairs = [
            (
                _lookup(contours, contour_dir, row["contour"], "contour", f"{path} line {n}"),
                _lookup(identities, identity_dir, row["identity"], "identity", f"{path} line {n}"),
            )
            for n, row in enumerate(reader, start=2)
        ]
    if not pairs:
        raise InputError(f"{path}: no pairs listed")
    return pairs


def collect_pairs(args) -> tuple[list[tuple[Path, Path]], bool]:
    """The (contour, identity) files to generate and whether this is folder mode."""
    folder_mode = args.identity_dir is not None or args.contour_dir is not None
    if args.pairs and not (args.identity_dir and args.contour_dir):
        raise InputError("--pairs needs --identity-dir and --contour-dir")
    if not folder_mode:
        return [(args.contour, args.identity)], False
    contours = list_images(args.contour_dir) if args.contour_dir else {args.contour.stem: args.contour}
    identities = list_images(args.identity_dir) if args.identity_dir else {args.identity.stem: args.identity}
    if args.pairs:
        return read_pairs(args.pairs, contours, args.contour_dir, identities, args.identity_dir), True
    return [(c, i) for c in contours.values() for i in identities.values()], True


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def prepare_inputs(pipe, pairs, args):
    """Prepare each distinct file once: ({contour file: (C, s, s)}, {identity file: (3, s, s)}, errors,
    {identity file: aligner})."""
    from data.conditions import lr_downsample

    contours, identities, errors, aligners = {}, {}, [], {}
    for path in dict.fromkeys(i for _, i in pairs):
        try:
            result = pipe.align(path, aligned=args.aligned)
            if result.n_faces > 1:
                print(f"note: {result.message}", file=sys.stderr)
            identities[path], aligners[path] = result.image, result.method
        except (ValueError, OSError) as err:
            errors.append(one_line(err))
    for path in dict.fromkeys(c for c, _ in pairs):
        try:
            source = path
            if args.make_lr:
                photo = pipe.align(path, aligned=args.aligned).image
                source = lr_downsample(photo, args.make_lr)
            contours[path] = pipe.prepare_contour(source)[0]
        except (ValueError, OSError) as err:
            errors.append(one_line(err))
    return contours, identities, errors, aligners


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from data.align import ALIGNERS
    from data.images import save_image
    from experiments.device import resolve_device
    from experiments.errors import check_output_dir, check_output_file
    from experiments.pipeline import load_pipeline
    from ops.resize import resize_to

    if args.make_lr is not None and args.make_lr < 1:
        raise InputError(f"--make-lr must be a positive size, got {args.make_lr}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.size is not None and args.size < 1:
        raise InputError(f"--size must be >= 1, got {args.size}")
    pairs, folder_mode = collect_pairs(args)
    if folder_mode and args.out.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(
            f"--out {args.out} looks like an image file; folder mode writes one image per pair into an output folder"
        )
    if not folder_mode and args.out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"--out {args.out}: use an image file name ending in {', '.join(sorted(IMAGE_SUFFIXES))}")
    if args.n_iters is not None and args.n_iters < 1:
        raise InputError(f"--n-iters must be >= 1, got {args.n_iters}")
    # every output path is checked before the model is built
    (check_output_dir if folder_mode else check_output_file)(args.out, "--out")
    if args.steps_out:
        check_output_dir(args.steps_out, "--steps-out")
    if args.grid:
        check_output_file(args.grid, "--grid")
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise InputError(f"--device: {err}") from None
    pipe = load_pipeline(
        args.checkpoint,
        device=device,
        dtype=getattr(torch, args.dtype),
        weights_root=args.weights_root,
        detector=args.detector,
    )
    if args.modality and args.modality != pipe.modality:
        raise InputError(
            f"the checkpoint was trained on {pipe.modality!r} contours; --modality "
            f"{args.modality} needs a checkpoint trained on that modality"
        )
    if args.make_lr and pipe.modality != "lr":
        raise InputError(f"--make-lr makes LR contours, but the checkpoint takes {pipe.modality!r} contours")
    if args.n_iters not in (None, 1) and pipe.model.kind == "psp":
        raise InputError(f"--n-iters {args.n_iters}: a psp checkpoint is single-pass (--n-iters 1)")
    if args.make_lr and args.make_lr > pipe.input_size:
        raise InputError(f"--make-lr {args.make_lr} is larger than the encoder input ({pipe.input_size})")

    contours, identities, errors, aligners = prepare_inputs(pipe, pairs, args)
    if errors and not args.skip_bad:
        for line in errors:
            print(f"error: {line}", file=sys.stderr)
        return 2
    for line in errors:
        print(f"skipped: {line}", file=sys.stderr)
    pairs = [(c, i) for c, i in pairs if c in contours and i in identities]
    if not pairs:
        raise InputError("no usable (contour, identity) pair left")
    for method in sorted(set(aligners.values())):
        n = sum(m == method for m in aligners.values())
        print(f"identity photos aligned by {method} ({ALIGNERS[method]}): {n}")

    size = args.size or pipe.output_size
    grid_rows = []
    batches = [pairs[k : k + args.batch_size] for k in range(0, len(pairs), args.batch_size)]
    for b, batch in enumerate(tqdm(batches, desc="generating", unit="batch", disable=not folder_mode)):
        result = pipe.run_tensors(
            torch.stack([contours[c] for c, _ in batch]),
            torch.stack([identities[i] for _, i in batch]),
            n_iters=args.n_iters,
            seed=None if args.seed is None else args.seed + b,
        )
        for k, (c, i) in enumerate(batch):
            name = f"{c.stem}__{i.stem}"
            out = args.out / f"{name}.png" if folder_mode else args.out
            text = {"ideface.identity": i.name, "ideface.contour": c.name, "ideface.aligner": aligners[i]}
            save_image(resize_to(result.image[k : k + 1].cpu(), size)[0].clamp(-1, 1), out, text=text)
            if args.steps_out:
                folder = args.steps_out / name if folder_mode else args.steps_out
                for t, step in enumerate(result.steps, start=1):
                    save_image(resize_to(step[k : k + 1].cpu(), size)[0].clamp(-1, 1), folder / f"step_{t}.png")
        if args.grid and b * args.batch_size < GRID_MAX_ROWS:
            grid_rows.append(pipe.grid(result))
    if args.grid:  # rows are input_size tall
        save_image(torch.cat(grid_rows, dim=1)[:, : GRID_MAX_ROWS * pipe.input_size], args.grid)
    where = args.out if not folder_mode else f"{args.out}/ ({len(pairs)} images)"
    print(f"wrote {where} with {pipe.model.kind} ({pipe.modality}, {len(result.steps)} steps)")
    return 0
