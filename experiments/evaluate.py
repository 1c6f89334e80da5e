"""Evaluate a method over the test manifest: LPIPS, FID and IDSIM with 95% intervals.

Usage::

    python experiments/evaluate.py checkpoint=runs/input_latent-toy-lr-s0 [eval.max_pairs=500]
    python experiments/evaluate.py method=pulse [world=celebahq data.root=...]
    python experiments/evaluate.py method=copy_contour data.test_pairing=random   # a trivial answer
    accelerate launch --num_processes 4 experiments/evaluate.py checkpoint=<run dir>

The evaluation itself (chunks, resume, intervals) is ``experiments.evaluation``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__.split("The evaluation itself")[0].strip())
        return 0

    from experiments.errors import one_line_errors
    from experiments.evaluation import evaluate, format_table, load_eval_config

    def body() -> int:
        cfg, run_dir = load_eval_config(argv)
        results = evaluate(cfg, run_dir)
        if results:
            print(format_table([results]))
        return 0

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
