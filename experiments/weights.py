"""``ideface-weights``: every pretrained file of the registry (:mod:`models.weights`), where it goes, whether
it is there, and with ``--verify`` whether its sha256 matches; exit code 1 on a mismatch."""

from __future__ import annotations

import argparse
import sys

from models.weights import REGISTRY, MissingWeightsError, WeightsChecksumError, expected_path, verify


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="ideface-weights", description="every pretrained file: where it goes, present or not"
    )
    p.add_argument("--root", default=None, help="folder of the non-repo weights (default $IDEFACE_WEIGHTS)")
    p.add_argument("--verify", action="store_true", help="hash the present files against the registry")
    args = p.parse_args(argv)
    bad = 0
    for name, s in REGISTRY.items():
        path = expected_path(name, args.root)
        try:
            status = (
                ("ok" if verify(name, args.root) else "present (no sha256 registered)")
                if args.verify
                else ("present" if path.exists() else "MISSING")
            )
        except MissingWeightsError:
            status = "MISSING"
        except WeightsChecksumError:
            status, bad = "SHA256 MISMATCH", bad + 1
        print(f"{name:24s} {status:32s} {path}\n{'':24s} {s.description}\n{'':24s} get it: {s.source}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
