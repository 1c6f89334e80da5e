"""Train the toy world's networks from scratch and export them to ``models/pretrained/``.

    python experiments/pretrain_toy.py {arcface,eval-arcface,stylegan2,all,encoder,check} [options]

The entry point of ``experiments.toy_pretraining`` (its ``cli`` lists the subcommands and options:
``--help``); the run history of the shipped files is in ``models/pretrained/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# this checkout's packages, not those of wherever the project is pip-installed (editable) from
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from experiments.toy_pretraining.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
