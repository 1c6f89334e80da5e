"""What a result was computed from, so that a result is reused only for the same inputs.

An evaluation's figures depend on the checkpoint (its sha256), the test manifest (its sha256) and the
evaluation settings of :func:`evaluation_settings`. Every evaluation chunk stores :func:`chunk_key` of
the first two and the per-pair settings, and ``results.json`` records all three
(:func:`results_provenance`); :func:`results_match` says whether a results.json may stand for an
evaluation asked for now.

A training run's completion record (``summary.json``'s ``completed``: the steps trained and the sha256 of
``final/encoder.safetensors``) is written only after the final export is in place;
:func:`completed_run` is what decides that a run is finished, not the existence of a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from models.build import EVAL_ONLY

# Config values that change a pair's figures (LPIPS, IDSIM, the FID features); the data and test-pair keys
# are covered by the manifest's sha256 and the checkpoint's by its own.
PER_PAIR_KEYS = (
    "model.kind",
    "generator.weights",
    "data.condition",
    "data.lr_size",
    "data.input_size",
    "eval.lpips_backbone",
    "eval.lpips_resolution",
    "eval.feature_network",
    "eval.idsim_model",
    "eval.id_crop",
    "eval.fid_detector",
    "eval.dlib_judge",
)
# Values that change only how the chunks are combined into the reported figures and intervals.
AGGREGATE_KEYS = (
    "seed",
    "eval.max_pairs",
    "eval.batch_size",
    "eval.n_boot",
    "eval.fid_blocks",
    "eval.fid_reference",
    "eval.fid_reference_size",
)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def evaluation_settings(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """{"per_pair": {...}, "aggregate": {...}}: the settings of ``cfg`` that change an evaluation's figures
    (for a method with no checkpoint its kind and generator, and PULSE's whole optimisation config, count as
    per-pair; ``n_iters`` resolved to the steps run)."""
    per_pair = {key: _plain(OmegaConf.select(cfg, key)) for key in PER_PAIR_KEYS}
    per_pair["n_iters"] = cfg.eval.n_iters or cfg.model.n_iters
    if cfg.model.kind in EVAL_ONLY:  # no checkpoint: the kind and the generator make the outputs
        per_pair["kind"] = cfg.model.kind
        per_pair["generator"] = _plain(cfg.generator)
    if cfg.model.kind == "pulse":
        pulse = _plain(cfg.pulse)
        if not pulse.get("compile"):  # off, the default: evaluations from before the knob existed still match
            pulse.pop("compile", None)
        per_pair["pulse"] = pulse
    return {"per_pair": per_pair, "aggregate": {key: _plain(OmegaConf.select(cfg, key)) for key in AGGREGATE_KEYS}}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def chunk_key(checkpoint_sha256: str | None, manifest_sha256: str, settings: dict) -> str:
    """sha256 hex of what a chunk's per-pair values depend on (``settings`` from :func:`evaluation_settings`)."""
    return _digest({"checkpoint": checkpoint_sha256, "manifest": manifest_sha256, "settings": settings["per_pair"]})


def results_provenance(checkpoint_sha256: str | None, manifest_sha256: str, settings: dict) -> dict[str, Any]:
    """The provenance entries of a results.json."""
    return {"checkpoint_sha256": checkpoint_sha256, "manifest_sha256": manifest_sha256, "evaluation_settings": settings}


def results_match(results: dict, expected: dict) -> str | None:
    """None when ``results`` (a results.json) was computed from ``expected`` (:func:`results_provenance`),
    else what differs, as words for a log line."""
    expected = json.loads(json.dumps(expected))  # as results.json holds it (e.g. int dict keys become str)
    differ = [key for key in expected if results.get(key) != expected[key]]
    return None if not differ else f"its {', '.join(differ)} differ from this evaluation's"


# Config keys that change neither the weights a run trains nor its folder's meaning: where things are, how
# it is watched and checkpointed (tests/experiments/test_train.py: the same weights), how long it runs (checked on
# its own) and how it is evaluated.
NOT_TRAINING = (
    "eval",
    "wandb",
    "resume",
    "output_dir",
    "run_name",
    "weights_root",
    "train.cpu_threads",
    "train.max_steps",
    "train.val_every",
    "train.log_every",
    "train.ckpt_every",
    "train.keep_last",
    "data.num_workers",
    "data.cache_dir",
    "data.test_pairing",
    "data.manifest_seed",
)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return out


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` flattened to dotted keys, without the :data:`NOT_TRAINING` ones."""
    flat = _flat(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_TRAINING)}


def config_difference(run_config: DictConfig, cfg: DictConfig) -> list[str]:
    """The training keys whose values differ between a run folder's config and ``cfg``."""
    a, b = training_config(run_config), training_config(cfg)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def completion_record(run_dir: Path, steps: int) -> dict[str, Any]:
    """The summary entry that marks a run finished: the steps and the final encoder's sha256."""
    from models.weights import sha256_of

    return {"steps": steps, "encoder_sha256": sha256_of(Path(run_dir) / "final" / "encoder.safetensors")}


def completed_run(run_dir: Path, max_steps: int) -> str | None:
    """None when ``run_dir`` finished ``max_steps`` steps and its final encoder is the one it exported,
    else why not (words for a log line)."""
    from experiments.tracking import RunRecord
    from models.weights import sha256_of

    record = RunRecord.read_summary(run_dir).get("completed")
    encoder = Path(run_dir) / "final" / "encoder.safetensors"
    if not record:
        return "no completion record"
    if record.get("steps") != max_steps:
        return f"it finished {record.get('steps')} steps, not train.max_steps={max_steps}"
    if not encoder.is_file() or sha256_of(encoder) != record.get("encoder_sha256"):
        return f"{encoder} is not the encoder it exported"
    return None
