"""Train (and then evaluate) one configuration.

Usage::

    accelerate launch experiments/run.py [group=name ...] [dotted.key=value ...] [--dry-run]
    accelerate launch experiments/run.py ablation=input_latent          # the main job: toy world, ~4 min on 2 cores
    accelerate launch experiments/run.py world=celebahq ablation=pretrained_id data.root=/data/celebahq
    accelerate launch experiments/run.py method=psp train.max_steps=200 resume=latest

Presets: ``world=`` (experiments/configs/world), ``method=`` (experiments/configs/method),
``ablation=`` (ablations/). The resolved config is printed at start and saved in the run folder;
``--dry-run`` prints it and exits. Bad input stops with one line saying what to change.
"""

from __future__ import annotations

import os
import sys

USAGE = __doc__.split("Presets:")[0].strip()


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]

    from experiments.config import load_config, to_yaml
    from experiments.errors import one_line_errors

    def body() -> int:
        cfg = load_config(argv)
        if is_main_process():
            print("# resolved config\n" + to_yaml(cfg), flush=True)
        if dry_run:
            return 0
        from experiments.train import train

        run_dir = train(cfg)
        if cfg.eval.at_end:
            from experiments.evaluation import evaluate_run, format_table

            results = evaluate_run(run_dir)
            if is_main_process() and results:
                print(format_table([results]))
        return 0

    return one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
