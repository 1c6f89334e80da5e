"""Reproduce the paper's tables: train what is missing, evaluate every row, write the tables.

Usage::

    python experiments/reproduce.py table=all                       # both tables, toy world, seed 0
    python experiments/reproduce.py table=2 seeds=[0,1,2]          # mean and spread over 3 seeds
    python experiments/reproduce.py table=all seeds=[0,1,2] recipe=toy_long jobs=2   # the committed toy tables
    python experiments/reproduce.py table=2 protocols=[random]     # one test protocol (default: both)
    python experiments/reproduce.py table=1 world=celebahq data.root=/data/celebahq output_dir=runs/paper
    python experiments/reproduce.py table=path/to/suite.yaml train.max_steps=50

``table=`` names ``ablations/tables/table<n>.yaml`` (``1``, ``2``, ``all``) or a suite file's path. A suite
file lists rows (name, presets, optional overrides with ``{seed}``, the paper's numbers); every
other token is a preset or dotted override applied to every row (``world=``, ``output_dir=``, ...).

Each row x seed is one run folder ``<output_dir>/<run name>``: a run whose completion record says it
finished ``train.max_steps`` steps and exported the ``final/encoder.safetensors`` found is not trained again,
an unfinished one resumes from its latest checkpoint (a folder started with another training config is
refused), and ``eval/<test pairing>/results.json`` is reused only when its checkpoint sha256, manifest sha256
and evaluation settings are this evaluation's; PULSE rows and the trivial answers (``models.build.EVAL_ONLY``)
have nothing to train and are only evaluated. Every row is evaluated on the same test
manifest (``data.manifest_seed``), checked by its hash. The tables go to
``<output_dir>/tables/table<n>-<protocol>.{md,csv,json}`` (one per test protocol of ``protocols=``,
by default ``random``, the paper's cross-identity pairs, and ``same_identity``) and, unless W&B is
disabled, to a ``wandb.Table`` in a run of its own (job_type ``reproduce``, group = the suite).

By default everything runs in this one process. ``jobs=N`` runs the runs first in N worker processes
(spawned, one per task, each with 1/N of the cores as ``train.cpu_threads`` unless given, each running its
config as resolved when the command started, so editing a config file meanwhile cannot reach it): a trained run
is one task (train, then evaluate each protocol), an evaluation-only row a task per protocol; a line is
printed as each task ends, and the first one that fails stops the others (they resume from their last
checkpoint). On a CPU, small networks use two cores better as two 1-thread processes than as one
2-thread one, so ``jobs=2`` suits the toy suite on 2 cores. On several GPUs, train each row with
``accelerate launch experiments/run.py <row presets> seed=<s> output_dir=<same>`` first; this command then
finds the finished runs and only evaluates and tabulates.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or "-h" in argv or "--help" in argv:
        print(__doc__.split("Each row")[0].strip())
        return 0 if argv else 2
    from experiments.errors import one_line_errors
    from experiments.reproduction import reproduce

    def body() -> int:
        out = reproduce(argv)
        for paths in out["tables"].values():
            print(paths["md"].read_text())
        print("\n".join(out["log"]))
        return 0

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
