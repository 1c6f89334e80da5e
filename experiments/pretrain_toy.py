"""Train the toy world's networks from scratch and export them to ``models/pretrained/``.

    ideface-pretrain-toy {arcface,eval-arcface,stylegan2,all,encoder,check} [options]
    python -m experiments.pretrain_toy ...          # the same, without the console script

The entry point of ``experiments.toy_pretraining`` (its ``cli`` lists the subcommands and options:
``--help``); the run history of the shipped files is in ``models/pretrained/README.md``.
"""

from __future__ import annotations

from experiments.toy_pretraining.cli import main

if __name__ == "__main__":
    main()
