"""The ``scdsec`` command line.

``scdsec simulate`` writes the embedded demo data (or any size of it); ``scdsec cluster``
runs every step on one input file without Snakemake. Bad input ends the command with one
line that names the file and the problem, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import logging
import sys
import types
import typing
from pathlib import Path

from ._errors import InputError

#: The sections of a config.yaml that ``scdsec cluster --config`` reads.
CONFIG_SECTIONS = ("qc", "normalize", "graph", "preset", "model", "train", "deterministic")


def _simulate(args: argparse.Namespace) -> None:
    from .pipeline import write_h5ad
    from .simulate import simulate_counts

    if args.out.suffix != ".h5ad":
        raise InputError(f"{args.out}: the output must be an .h5ad file")
    proportions = parse_proportions(args.proportions)
    try:
        adata = simulate_counts(
            args.cells,
            args.genes,
            args.types,
            seed=args.seed,
            separation=args.separation,
            proportions=proportions,
            batches=args.batches,
            batch_effect=args.batch_effect,
            batch_library_shift=args.batch_library_shift,
            batch_composition=args.batch_composition,
        )
    except ValueError as err:
        # simulate_counts names its argument; on the command line it is the option.
        msg = str(err)
        for name in ("proportions", "batches", "batch_"):
            if msg.startswith(name):
                option, rest = msg.split(" ", 1)
                msg = f"--{option.replace('_', '-')} {rest}"
                break
        raise InputError(msg) from None
    write_h5ad(adata, args.out)
    batches = f", {args.batches} batches in obs['batch']" if args.batches > 1 else ""
    print(
        f"wrote {adata.n_obs} cells × {adata.n_vars} genes ({args.types} types{batches}) "
        f"to {args.out}"
    )


def parse_proportions(value: str | None) -> list[float] | float | None:
    """``--proportions``: ``0.5,0.3,0.2`` (weights, one per type) or ``dirichlet:A``.

    Parameters
    ----------
    value
        The option's text, or None when it was not given.

    Returns
    -------
    None, the list of weights, or the Dirichlet concentration ``A`` as a float — the
    ``proportions`` argument of :func:`scdsec.simulate.simulate_counts`, which checks the
    values themselves (length, signs).

    Raises
    ------
    InputError
        When the text is not a comma-separated list of numbers or ``dirichlet:`` and a number.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        if text.lower().startswith("dirichlet:"):
            return float(text.split(":", 1)[1])
        return [float(item) for item in text.split(",")]
    except ValueError:
        msg = (
            "--proportions must be comma-separated numbers (0.5,0.3,0.2) or dirichlet:A "
            f"(A > 0), got {value!r}"
        )
        raise InputError(msg) from None


def read_config(path: Path | None) -> dict:
    """The analysis sections of a config.yaml-style file (:data:`CONFIG_SECTIONS`).

    The workflow's other sections (``run``, ``datasets`` …) are ignored; a section whose name
    is close to an analysis section's (a typo such as ``grph``) raises :class:`InputError`
    naming both, so that no setting is dropped without a word."""
    if path is None:
        return {}
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping of sections, got {type(config).__name__}")
    for key in config:
        close = difflib.get_close_matches(str(key), CONFIG_SECTIONS, n=1, cutoff=0.7)
        if key not in CONFIG_SECTIONS and close:
            raise InputError(
                f"{path}: unknown section {key!r}; did you mean {close[0]!r}? (sections read "
                f"by scdsec cluster: {', '.join(CONFIG_SECTIONS)})"
            )
    return {key: config[key] for key in CONFIG_SECTIONS if key in config}


def _checked_section(config: dict, section: str, function, source: Path | None) -> dict:
    """A config section as keyword arguments of ``function``; an unknown key, or a value of
    another type than ``function`` declares, is named. A whole number written as a float
    (``50.0``) where an integer is declared becomes that integer."""
    values = dict(config.get(section) or {})
    known = set(inspect.signature(function).parameters) - {"adata"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{source}: unknown key {section}.{unknown[0]} (known: {sorted(known)})")
    hints = typing.get_type_hints(function)
    for key, value in values.items():
        if key in hints and _wants_int(hints[key]) and _is_whole_float(value):
            values[key] = value = int(value)
        if key in hints and not _matches(value, hints[key]):
            raise InputError(
                f"{source}: {section}.{key} must be {_describe(hints[key])}, got {value!r}"
            )
    return values


def _is_whole_float(value: object) -> bool:
    return isinstance(value, float) and value.is_integer()


def _wants_int(annotation: object) -> bool:
    """Whether an annotation accepts an integer but no other number."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return int in args and float not in args
    return annotation is int


def _matches(value: object, annotation: object) -> bool:
    """Whether a YAML value fits a parameter's annotation (int, float, str, bool, None,
    Literal and unions of them; anything else is left to the function)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def _describe(annotation: object) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return "null" if annotation is type(None) else names.get(annotation, str(annotation))


def _batch_size(value: str) -> int | str:
    """``--batch-size``: auto, full or a positive number of cells."""
    if value in ("auto", "full"):
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InputError(f"--batch-size must be a positive integer, auto or full, got {value!r}")
    return number


def _cluster(args: argparse.Namespace) -> None:
    from ._files import atomic_path
    from .graph import build_knn_graph
    from .io.metadata import batch_from_cell_names, read_counts_with_metadata
    from .metrics import batch_entropy, ilisi, score_labelled
    from .model import Params
    from .pipeline import keep_input_columns, record, write_results
    from .preprocessing import normalize, qc_filter
    from .tl import cluster

    n_clusters = _n_clusters(args.n_clusters)
    if args.batch_pattern is not None and args.batch_key is None:
        raise InputError("--batch-pattern needs --batch-key: the column it makes (e.g. plate)")
    config = read_config(args.config)
    steps = {"qc": qc_filter, "normalize": normalize, "graph": build_knn_graph}
    sections = {name: _checked_section(config, name, f, args.config) for name, f in steps.items()}
    params = {key: config[key] for key in ("preset", "model", "train") if key in config}
    if args.batch_size is not None:
        size = _batch_size(args.batch_size)
        params["train"] = {**(params.get("train") or {}), "batch_size": size}
    try:  # the model's settings are checked before the data is read
        model_params = Params.from_dict(params)
    except InputError as err:
        raise InputError(f"{args.config or '--batch-size'}: {err}") from None
    adata = read_counts_with_metadata(
        args.input,
        metadata=args.metadata,
        format=args.format,
        labels=args.labels,
        metadata_columns=[c for c in args.metadata_columns.split(",") if c],
        cells_as=args.cells_as,
        layer=args.layer,
        genome=args.genome,
        counts=args.counts,
        sample=args.sample,
    )
    keep_input_columns(adata, str(args.input), labels=args.labels)
    batch = {}
    if args.batch_key is not None:
        from ._checks import check_batch_key

        try:
            if args.batch_pattern is not None:
                batch_from_cell_names(
                    adata, args.batch_pattern, args.batch_key, setting="--batch-pattern"
                )
            check_batch_key(adata.obs, args.batch_key, setting="--batch-key")
        except InputError as err:
            raise InputError(f"{args.input}: {err}") from None
        batch = {"batch_key": args.batch_key}
    # what the settings ask of the cells is checked on the file's cells, then after QC
    _check_cells(adata.n_obs, "cells", sections["graph"], n_clusters, args)
    for name, function in steps.items():
        try:
            adata = function(adata, **sections[name], **({} if name == "qc" else batch))
        except InputError as err:
            raise InputError(f"{args.input}: {err}") from None
        except (TypeError, ValueError) as err:
            raise InputError(f"{args.input}: {name} step: {err}") from None
        if name == "qc":
            _check_cells(adata.n_obs, "cells after QC", sections["graph"], n_clusters, args)
    if args.labels:
        _check_labelled(adata.obs["scdsec_true_label"], args)
    try:
        model = cluster(
            adata,
            n_clusters,
            params=model_params,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            deterministic=config.get("deterministic", "auto"),
            checkpoint_dir=args.out / "checkpoints",
            checkpoint_every=args.checkpoint_every,
            **batch,
        )
    except InputError as err:  # the settings were checked above: this is about the data
        raise InputError(f"{args.input}: {err}") from None
    record(
        adata,
        "cluster",
        {"input": str(args.input), "seed": args.seed, **batch, **sections, **params},
    )
    write_results(adata, model, args.out)
    summary = f"{adata.n_obs} cells in {model.n_clusters} clusters"
    scores: dict = {}
    if args.labels:
        scores = score_labelled(
            adata.obs["scdsec_true_label"], adata.obs["scdsec"], label_key=args.labels
        )
    if batch:
        batches = adata.obs[args.batch_key].astype(str).to_numpy()
        scores["ilisi"] = ilisi(adata.obsm["X_scdsec"], batches)
        scores["batch_entropy"] = batch_entropy(adata.obs["scdsec"].to_numpy(), batches)
    if not scores:  # scores of an earlier run into this folder belong to other clusters
        (args.out / "metrics.json").unlink(missing_ok=True)
    else:
        found = {"labels": args.labels, **batch, "seed": args.seed, **scores}
        with atomic_path(args.out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(found, indent=1))
    left_out = scores.pop("n_unlabelled", 0)
    names = {"ilisi": "iLISI", "batch_entropy": "batch entropy"}
    summary += "".join(f", {names.get(k, k.upper())} {v:.3f}" for k, v in scores.items())
    if left_out:
        summary += f" (on the labelled cells; {left_out} unlabelled cells left out)"
    print(f"{summary}; results in {args.out}/")


def _n_clusters(value: str) -> int | str:
    """``--n-clusters``: auto, or a whole number of at least 2 (``8.0`` reads as 8)."""
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer() or number < 2:
        msg = f"--n-clusters must be auto or a whole number of at least 2, got {value!r}" + (
            " (one cluster is no clustering)" if number == 1 else ""
        )
        raise InputError(msg)
    return int(number)


def _check_cells(n_cells: int, cells: str, graph: dict, n_clusters: int | str, args) -> None:
    """Stop when the cells (``cells``: of the file, then after QC) are too few for K
    (graph.n_neighbors) or for --n-clusters: the workflow's check
    (:func:`scdsec.graph.check_cell_count`), each setting named as the user gave it."""
    from .graph import build_knn_graph, check_cell_count

    default = inspect.signature(build_knn_graph).parameters["n_neighbors"].default
    given = "n_neighbors" in graph
    try:
        check_cell_count(
            n_cells,
            n_neighbors=graph.get("n_neighbors", default),
            n_clusters=n_clusters,
            where=str(args.input),
            cells=cells,
            neighbors_key=f"graph.n_neighbors of {args.config}" if given else "graph.n_neighbors",
            clusters_key="--n-clusters",
        )
    except InputError as err:
        if given or "n_neighbors" not in str(err):
            raise
        raise InputError(f"{err} in a --config file (default {default})") from None


def _check_labelled(truth, args: argparse.Namespace) -> None:
    """Stop before training, naming the input and the label key, when no cell has a label."""
    from .metrics import labelled_cells

    try:
        labelled_cells(truth, label_key=args.labels)
    except InputError as err:
        raise InputError(f"{args.input}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .io.readers import COUNTS, FORMATS
    from .simulate import DEFAULT_BATCH_EFFECT, DEFAULT_BATCH_LIBRARY_SHIFT

    parser = argparse.ArgumentParser(prog="scdsec", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"scdsec {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    talk.add_argument("-v", "--verbose", action="store_true", help="also print debug lines")
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
    sim.add_argument(
        "--proportions",
        metavar="P1,P2,…|dirichlet:A",
        help="cell-type proportions: one weight per type (type1 first; normalised, rare types "
        "welcome) or dirichlet:A for Dirichlet(A) weights (small A = imbalanced); type sizes "
        "then follow the weights exactly. Default: sizes drawn around Dirichlet(4) weights",
    )
    sim.add_argument(
        "--batches",
        type=int,
        default=1,
        help="number of batches (samples, donors) in obs['batch'], each with its own gene-wise "
        "scaling and sequencing depth. Default 1: no batch, the counts of before",
    )
    sim.add_argument(
        "--batch-effect",
        type=float,
        default=DEFAULT_BATCH_EFFECT,
        metavar="SD",
        help="sd of each gene's log scale factor per batch (default %(default)s; 0: none)",
    )
    sim.add_argument(
        "--batch-library-shift",
        type=float,
        default=DEFAULT_BATCH_LIBRARY_SHIFT,
        metavar="S",
        help="batch library sizes scaled by exp(s), s evenly spaced from -S (batch1) to +S "
        "(default %(default)s)",
    )
    sim.add_argument(
        "--batch-composition",
        choices=("equal", "different"),
        default="equal",
        help="equal: batches of equal size with the same type proportions; different: each "
        "type split among the batches by Dirichlet(0.5) weights (default %(default)s)",
    )
    sim.add_argument("--out", type=Path, required=True, help="output .h5ad")
    sim.set_defaults(func=_simulate)

    clu = sub.add_parser(
        "cluster",
        help="QC, normalise, build the graph and cluster one count file",
        description="Runs the workflow's steps on one input file (any supported format) and "
        "writes DIR/scdsec.h5ad, DIR/clusters.tsv, DIR/loss.tsv, DIR/model/ and, with "
        "--labels, DIR/metrics.json (NMI, ARI, ACC, AMI on the labelled cells; n_unlabelled: "
        "the cells without a label, clustered but left out of the scores; with --batch-key "
        "also the batch mixing: ilisi, batch_entropy).",
    )
    clu.add_argument("input", type=Path, help="counts: .h5ad, 10x .h5/.mtx, CSV/TSV, X/Y .h5, …")
    clu.add_argument("--out", type=Path, required=True, help="output folder")
    clu.add_argument(
        "--n-clusters",
        default="auto",
        help="number of clusters, or auto (default; a rough estimate, see docs/method.md §7)",
    )
    clu.add_argument(
        "--labels",
        help="where the true cell types are (obs column, CSV column, Y, a --metadata column); "
        "cells whose label is "
        "missing (NaN, None, empty, NA, nan, null …) are clustered but not scored",
    )
    clu.add_argument(
        "--format",
        default="auto",
        help=f"input format: auto (default: from the content) or one of {', '.join(FORMATS)}",
    )
    clu.add_argument(
        "--cells-as",
        default="auto",
        choices=["auto", "rows", "columns"],
        help="CSV/TSV: cells are the table's rows or columns (auto: only where the table says)",
    )
    clu.add_argument(
        "--layer",
        help=".h5ad/.zarr/.loom: read the counts from this layer instead of X (raw: from .raw, "
        "where other toolkits keep the counts beside normalised X)",
    )
    clu.add_argument(
        "--counts",
        default=COUNTS[0],
        choices=COUNTS,
        help="integer (default): values must be whole numbers; round: round ambient-RNA-"
        "corrected counts (non-integer, not log-scaled, e.g. SoupX, DecontX) to whole numbers",
    )
    clu.add_argument("--genome", help="10x .h5 with several genomes: the genome to cluster")
    clu.add_argument(
        "--sample",
        help="10x .mtx folder/archive with several samples (GEO's GSM…_matrix.mtx.gz): the "
        "sample to cluster (its prefix, e.g. a GSM id), or all (each cell's sample in "
        "obs['sample'])",
    )
    clu.add_argument(
        "--metadata",
        type=Path,
        metavar="TABLE",
        help="cell metadata table (CSV/TSV: one row per cell, its name first, a header), "
        "joined to the counts by cell name; --labels may name one of its columns",
    )
    clu.add_argument(
        "--batch-key",
        help="where each cell's batch (sample, donor, plate) is: an obs column, a CSV or "
        "--metadata column, or the column --batch-pattern makes. HVGs are then chosen per "
        "batch, the PCA is corrected (Harmony) and the decoder conditioned on the batch; "
        "metrics.json gains the batch mixing (iLISI, batch entropy)",
    )
    clu.add_argument(
        "--batch-pattern",
        metavar="REGEX",
        help="the batch is in the cell names: the first group of REGEX searched in each name "
        "(e.g. '^([^:]+):' for p1:A1), written to obs[--batch-key]",
    )
    clu.add_argument(
        "--metadata-columns",
        default="",
        help="CSV/TSV: comma-separated columns that describe cells (not genes) besides --labels",
    )
    clu.add_argument(
        "--checkpoint-every",
        type=int,
        default=10,
        help="epochs between training checkpoints in OUT/checkpoints/; rerunning a killed "
        "command with the same --out resumes from the last one (default: 10)",
    )
    clu.add_argument("--seed", type=int, default=0)
    clu.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    clu.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    clu.add_argument(
        "--batch-size",
        help="cells per training step: auto (full batch up to 8,192 cells), full, or a number "
        "(overrides train.batch_size)",
    )
    clu.add_argument(
        "--config", type=Path, help="YAML with config.yaml's qc/normalize/graph/preset/model/train"
    )
    clu.set_defaults(func=_cluster)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .settings import configure_logging

    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    configure_logging(level)
    try:
        args.func(args)
    except (InputError, OSError) as err:
        print(f"scdsec {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = ""
        if args.command == "cluster":
            resume = (
                f"; the same command resumes from the last checkpoint in {args.out}/checkpoints"
            )
        print(f"scdsec {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
