"""The one registry of pretrained files: name -> file, where it lives, its sha256, where to get it.

Nothing is downloaded. ``resolve(name)`` returns the path or raises :class:`MissingWeightsError`
(a FileNotFoundError) naming the file, the expected path and where to get it. Locations:

- ``root`` entries: ``root`` argument, else ``$IDEFACE_WEIGHTS``, else ``~/.cache/ideface/weights``;
- ``repo`` entries: shipped in this repository under ``models/pretrained/`` (the toy world);
- ``torch_hub`` entries: ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), where torchvision,
  lpips and pytorch-fid look for them.

A known sha256 (or a torchvision-style prefix of one, from the file name) is checked on first
resolve in a process, reading the file in chunks. ``ideface-weights`` lists every entry
and its status; ``--verify`` hashes the files present.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAIN_TOY = "run `ideface-pretrain-toy all` (writes models/pretrained/)"


class MissingWeightsError(FileNotFoundError):
    """A registered pretrained file is absent; the message says which, where, and how to get it."""


class WeightsChecksumError(ValueError):
    """A registered file exists but its sha256 differs from the registry's."""


@dataclass(frozen=True)
class WeightSpec:
    name: str
    filename: str
    sha256: str | None  # full hex digest, a >= 8-char prefix of one, or None when unknown
    source: str  # where a user gets the file
    description: str
    location: str = "root"  # root | repo | torch_hub
    is_dir: bool = False


REGISTRY: dict[str, WeightSpec] = {
    s.name: s
    for s in [
        WeightSpec(
            "stylegan2_ffhq_1024",
            "stylegan2-ffhq-config-f.pt",
            None,
            "rosinality/stylegan2-pytorch README (the converted FFHQ config-f checkpoint, the file "
            "pSp/ReStyle use), or convert NVlabs' ffhq.pkl: ideface-convert ffhq.pkl "
            "stylegan2-ffhq-config-f.pt --size 1024 --trust-pickle",
            "StyleGAN2 FFHQ 1024 generator, rosinality format {'g_ema', 'latent_avg'}",
        ),
        WeightSpec(
            "ir_se50",
            "model_ir_se50.pth",
            None,
            "pSp/ReStyle README, 'Pretrained Models' (IR-SE50 from TreB1eN/InsightFace_Pytorch)",
            "ArcFace IR-SE50 (TreB1eN layout): ID loss and encoder initialisation",
        ),
        WeightSpec(
            "arcface_onnx",
            "w600k_r50.onnx",
            None,
            "insightface buffalo_l pack: https://github.com/deepinsight/insightface/releases/download/v0.7/"
            "buffalo_l.zip (w600k_r50.onnx inside)",
            "insightface ArcFace R50 (WebFace600K) recognition model: the IDSIM metric",
        ),
        WeightSpec(
            "buffalo_l",
            "buffalo_l",
            None,
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip, unzipped",
            "insightface model pack folder (SCRFD detector for face alignment)",
            is_dir=True,
        ),
        WeightSpec(
            "lpips_alex",
            "alexnet-owt-7be5be79.pth",
            "7be5be79",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "torchvision AlexNet backbone of LPIPS (alex)",
            location="torch_hub",
        ),
        WeightSpec(
            "fid_inception",
            "pt_inception-2015-12-05-6726825d.pth",
            "6726825d",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "pytorch-fid's FID Inception-v3 (TF FID graph weights)",
            location="torch_hub",
        ),
        WeightSpec(
            "toy_stylegan2",
            "toy_stylegan2.safetensors",
            "2ce7c1f62b093494c277f0f55af1f249f8e67e7e78817c9eb511404863a86186",
            PRETRAIN_TOY,
            "toy StyleGAN2 32x32 (style_dim 128, n_mlp 4), save_generator format",
            location="repo",
        ),
        WeightSpec(
            "toy_arcface",
            "toy_arcface.safetensors",
            "7456ec859eaef32e2bc4353efc4952c8d39787cad138ff0e9a35777d013430c7",
            PRETRAIN_TOY,
            "toy ArcFace IR-SE (ID loss, pretrained identity-encoder init)",
            location="repo",
        ),
        WeightSpec(
            "toy_arcface_onnx",
            "toy_arcface.onnx",
            "cda80ef2636a7a7d1659977c8db49d0e9732cd7c7e71e8f7512ca8aff971c180",
            PRETRAIN_TOY,
            "toy ArcFace as ONNX (112x112 input)",
            location="repo",
        ),
        WeightSpec(
            "toy_eval_arcface",
            "toy_eval_arcface.safetensors",
            "20a2ecdc11921a3df15d07fd7fbe2e9041ac4b6bd9cdcc407d4f1716a5042671",
            PRETRAIN_TOY,
            "second toy ArcFace used only by the metrics",
            location="repo",
        ),
        WeightSpec(
            "toy_ide",
            "toy_ide/encoder.safetensors",
            "dfc3ffe388bffa72a2f0938a0c12ef86f9853f06e5633a9716304adc2faa8344",
            "run `ideface-pretrain-toy encoder` (trains the toy run, writes models/pretrained/toy_ide/)",
            "toy IDE encoder (Ours = pretrained-ID row, fp16; config.yaml beside it): load_pipeline('toy')",
            location="repo",
        ),
        WeightSpec(
            "toy_eval_arcface_onnx",
            "toy_eval_arcface.onnx",
            "540f99b873ffbe500c4deadd82d4552b11cffab5f6ddb63d93cb49fa6649f81f",
            PRETRAIN_TOY,
            "second toy ArcFace as ONNX (112x112 input): the toy IDSIM metric",
            location="repo",
        ),
    ]
}

# Trained encoders shipped as exports (encoder.safetensors + config.yaml): the short name that
# ``load_pipeline`` and the generate/demo tools take -> the registry entry of the encoder file.
SHIPPED_ENCODERS = {"toy": "toy_ide"}

_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) already hashed in this process


def weights_root(root=None) -> Path:
    """Folder of ``root`` entries: ``root``, else ``$IDEFACE_WEIGHTS``, else ``~/.cache/ideface/weights``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("IDEFACE_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ideface" / "weights"


def spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights name {name!r}; registered: {', '.join(REGISTRY)}") from None


def expected_path(name: str, root=None) -> Path:
    """Where the file of entry ``name`` must be."""
    s = spec(name)
    if s.location == "repo":
        return PRETRAINED_DIR / s.filename
    if s.location == "torch_hub":
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / s.filename
    return weights_root(root) / s.filename


class UnsafeCheckpointError(ValueError):
    """A torch file holds objects that ``torch.load(weights_only=True)`` refuses to rebuild."""


class UnreadableCheckpointError(ValueError):
    """A weights file exists but cannot be parsed (truncated, corrupted or not a checkpoint at all)."""


class WeightsMismatchError(ValueError):
    """A readable weights file whose tensors do not fit the network the config describes."""


def mismatch_detail(err: RuntimeError, limit: int = 3) -> str:
    """``load_state_dict``'s error -> one line: its first ``limit`` problems (size mismatches, missing or
    unexpected keys), without the module's repr."""
    lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more if lines else str(err).strip()


def unreadable_error(path, err: BaseException, detail: str | None = None) -> UnreadableCheckpointError:
    """``detail``: the telling part of ``err``'s message (default: its first non-empty line)."""
    detail = detail or next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return UnreadableCheckpointError(
        f"{path}: not a readable {'safetensors' if Path(path).suffix == '.safetensors' else 'torch'} file "
        f"({type(err).__name__}{': ' + detail if detail else ''}); it may be truncated or corrupted: copy or "
        "export it again"
    )


def load_torch_file(path) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``, also admitting ``argparse.Namespace``.

    rosinality's ``train.py`` checkpoints keep their ``args`` as a Namespace: a plain attribute holder
    whose contents the weights-only unpickler still checks, so allowing it runs no code from the file.
    Anything else that needs a full unpickler raises :class:`UnsafeCheckpointError` naming the file and
    the refused object, and saying how to get a loadable file; a file torch cannot parse at all raises
    :class:`UnreadableCheckpointError` (a missing one, FileNotFoundError).
    """
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        garbage = re.search(r"Unsupported operand \d+", str(err))  # bytes that are no pickle opcode
        if garbage:
            raise unreadable_error(path, err, garbage.group(0)) from None
        found = re.search(r"GLOBAL (\S+)", str(err))
        refused = f"a {found.group(1)} object" if found else "objects beyond tensors and plain containers"
        raise UnsafeCheckpointError(
            f"{path}: not loaded: it holds {refused}, which only a full (code-running) unpickler rebuilds. "
            "If you trust its source, load it once with torch.load(path, weights_only=False) and torch.save "
            "only its tensors (e.g. the 'g_ema' state dict and 'latent_avg'); an NVlabs .pkl is converted "
            "by `ideface-convert SRC DST --trust-pickle`."
        ) from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as err:  # torch's errors on damaged files
        raise unreadable_error(path, err) from None


def load_state_file(path) -> dict:
    """A ``.safetensors`` file (flat name -> tensor) or a torch file (``load_torch_file``), on the CPU.
    Damaged files raise :class:`UnreadableCheckpointError` naming the file."""
    if Path(path).suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except FileNotFoundError:
            raise
        except SafetensorError as err:
            raise unreadable_error(path, err) from None
    return load_torch_file(path)


def sha256_of(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def state_fingerprint(module, prefix: str = "") -> str:
    """sha256 (16 hex digits) of ``module``'s state entries whose names start with ``prefix``, as float32.

    It identifies the weights a network computes with, whatever file format or precision they came
    from, so a file trained against one generator can refuse to run with another.
    """
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        if k.startswith(prefix):
            h.update(k.encode())
            h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def verify(name: str, root=None) -> bool | None:
    """Hash the file of ``name``: True if it matches, None if no sha256 is registered (or a folder).

    Raises MissingWeightsError when absent, WeightsChecksumError on a mismatch.
    """
    s, path = spec(name), expected_path(name, root)
    _check_exists(s, path)
    if s.sha256 is None or s.is_dir:
        return None
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = sha256_of(path)
        if not digest.startswith(s.sha256.lower()):
            raise WeightsChecksumError(
                f"{path} has sha256 {digest}, expected {s.sha256}{'...' if len(s.sha256) < 64 else ''} "
                f"({s.description}). The file is corrupt or a different version; get it from: {s.source}"
            )
        _verified.add(key)
    return True


def _check_exists(s: WeightSpec, path: Path) -> None:
    if not (path.is_dir() if s.is_dir else path.is_file()):
        where = (
            "it ships with the repository"
            if s.location == "repo"
            else "set $TORCH_HOME to change this folder"
            if s.location == "torch_hub"
            else "set $IDEFACE_WEIGHTS or weights_root= to change this folder"
        )
        raise MissingWeightsError(
            f"missing pretrained {'folder' if s.is_dir else 'file'} '{s.filename}' "
            f"({s.name}: {s.description}).\n"
            f"  expected at: {path}  ({where})\n  get it: {s.source}"
        )


def resolve(name: str, root=None) -> Path:
    """Path of registry entry ``name`` after checking it exists (and its sha256 when registered)."""
    path = expected_path(name, root)
    verify(name, root)
    return path


def resolve_path(name_or_path, root=None) -> Path:
    """An existing file/folder path as is, otherwise the registry entry of that name."""
    key = str(name_or_path)
    if key in REGISTRY:
        return resolve(key, root)
    path = Path(key).expanduser()
    if path.exists():
        return path
    raise MissingWeightsError(
        f"'{key}' is neither an existing path nor a registered weights name ({', '.join(REGISTRY)})"
    )
