"""The workflow's steps as file-to-file functions (the rules' scripts call these).

Each step reads its input, calls the in-memory function of the package, records what made
the output (parameters and versions) in ``uns`` and writes the output atomically: a file
that exists is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import anndata as ad

from .provenance import provenance

logger = logging.getLogger("scdsec")

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5ad(adata: ad.AnnData, path: PathLike) -> None:
    """Write ``adata`` to ``path`` atomically (gzip-free: intermediate files favour speed)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def record(adata: ad.AnnData, step: str, params: Mapping) -> None:
    """Store the step's parameters and the package versions in ``uns['scdsec_steps'][step]``."""
    steps = dict(adata.uns.get("scdsec_steps", {}))
    steps[step] = provenance(params={k: ("none" if v is None else v) for k, v in params.items()})
    adata.uns["scdsec_steps"] = steps


@contextlib.contextmanager
def step_log(log_file: PathLike | None) -> Iterator[None]:
    """Route the package's log lines and Python warnings to ``log_file`` for one step."""
    from .settings import configure_logging

    if log_file is None:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as fh, contextlib.redirect_stderr(fh):
        configure_logging(filename=None)
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        try:
            yield
        except Exception:
            logger.exception("step failed")
            raise
        finally:
            logging.captureWarnings(False)
            sys.stderr.flush()


def download_cache_path(source: str, cache_dir: PathLike) -> Path:
    """Where a URL's file is kept: named after the URL, so a new URL downloads afresh."""
    name = Path(urlparse(source).path).name or "download"
    tag = hashlib.sha1(source.encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{tag}-{name}"


def import_dataset(
    entry: Mapping,
    output: PathLike,
    *,
    name: str,
    cache_dir: PathLike,
) -> ad.AnnData:
    """Download (or simulate) one dataset of ``config.yaml`` and write it as raw counts.

    ``entry`` is the dataset's config entry: either ``simulate`` (arguments of
    :func:`scdsec.simulate.simulate_counts`) or ``source`` (URL or local path) with
    optional ``checksum``, ``format``, ``labels``, ``metadata_columns``, ``cells_as``.
    True labels, when named, end up in ``obs['label']``.
    """
    from .io import fetch, read_counts

    if entry.get("simulate") is not None:
        from .simulate import simulate_counts

        sim = dict(entry["simulate"])
        adata = simulate_counts(
            sim.pop("cells", 3000), sim.pop("genes", 2000), sim.pop("types", 6), **sim
        )
        adata.obs["label"] = adata.obs["cell_type"]
    else:
        source = str(entry["source"])
        scheme = urlparse(source).scheme
        dest = download_cache_path(source, cache_dir) if scheme in ("http", "https") else None
        local = fetch(source, dest, entry.get("checksum"))
        adata = read_counts(
            local,
            format=entry.get("format", "auto"),
            labels=entry.get("labels"),
            metadata_columns=tuple(entry.get("metadata_columns") or ()),
            cells_as=entry.get("cells_as", "auto"),
        )
    adata.uns["dataset"] = name
    record(adata, "download", dict(entry))
    write_h5ad(adata, output)
    logger.info("Dataset %s: %d cells × %d genes → %s", name, *adata.shape, output)
    return adata


def qc_step(input: PathLike, output: PathLike, **params) -> ad.AnnData:
    """Read raw counts, apply :func:`scdsec.preprocessing.qc_filter`, write."""
    from .preprocessing import qc_filter

    adata = qc_filter(ad.read_h5ad(input), **params)
    record(adata, "qc", params)
    write_h5ad(adata, output)
    return adata


def normalize_step(input: PathLike, output: PathLike, **params) -> ad.AnnData:
    """Read QC'd counts, apply :func:`scdsec.preprocessing.normalize`, write."""
    from .preprocessing import normalize

    adata = normalize(ad.read_h5ad(input), **params)
    record(adata, "normalize", params)
    write_h5ad(adata, output)
    return adata


def graph_step(input: PathLike, output: PathLike, **params) -> ad.AnnData:
    """Read normalised data, apply :func:`scdsec.graph.build_knn_graph`, write."""
    from .graph import build_knn_graph

    adata = build_knn_graph(ad.read_h5ad(input), **params)
    record(adata, "graph", params)
    write_h5ad(adata, output)
    return adata
