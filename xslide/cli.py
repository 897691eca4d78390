"""The ``xslide`` command line: ``xslide demo`` fits a synthetic TPC-distortion-like dataset."""

from __future__ import annotations

import argparse
import sys

from .demo import demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xslide", description="Sliding-window group-by regression on integer-binned grids."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit a synthetic TPC-distortion dataset and summarise")
    p_demo.add_argument("--rows", type=int, default=1_000_000, help="number of rows (1e6)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed")
    p_demo.add_argument("--min-entries", type=int, default=10, help="min rows per window")
    p_demo.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
