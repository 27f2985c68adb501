"""The ``scdsec`` command line.

``scdsec simulate`` writes the embedded demo data (or any size of it); ``scdsec cluster``
runs every step on one input file without Snakemake. Bad input ends the command with one
line that names the file and the problem, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._errors import InputError


def _simulate(args: argparse.Namespace) -> None:
    from .pipeline import write_h5ad
    from .simulate import simulate_counts

    if args.out.suffix != ".h5ad":
        raise InputError(f"{args.out}: the output must be an .h5ad file")
    adata = simulate_counts(
        args.cells, args.genes, args.types, seed=args.seed, separation=args.separation
    )
    write_h5ad(adata, args.out)
    print(f"wrote {adata.n_obs} cells × {adata.n_vars} genes ({args.types} types) to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="scdsec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"scdsec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate", help="simulate counts with known cell types (obs['cell_type'])"
    )
    sim.add_argument("--cells", type=int, default=3000)
    sim.add_argument("--genes", type=int, default=2000)
    sim.add_argument("--types", type=int, default=6)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--separation",
        type=float,
        default=0.45,
        help="spread of type differences (higher = easier)",
    )
    sim.add_argument("--out", type=Path, required=True, help="output .h5ad")
    sim.set_defaults(func=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .settings import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        args.func(args)
    except (InputError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        print(f"scdsec {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
