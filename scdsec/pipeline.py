"""The workflow's steps as file-to-file functions (the rules' scripts call these).

Each step reads its input, calls the in-memory function of the package, records what made
the output (parameters and versions) in ``uns`` and writes the output atomically: a file
that exists is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._errors import InputError
from ._files import PathLike, atomic_path
from .experiments import BASELINES
from .provenance import plain, provenance

logger = logging.getLogger("scdsec")


def cluster_sizes(labels) -> str:
    """``"0: 512, 1: 488, …"``: the size of each cluster, largest first, for log lines."""
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts()
    return ", ".join(f"{cluster}: {size}" for cluster, size in counts.items())


def write_params(path: PathLike, params: Mapping) -> None:
    """Write the settings a result depends on as YAML (atomically): the workflow's
    ``params.yaml`` beside each run and the ``.yaml`` beside each preprocessing file, whose
    names carry their hash."""
    import yaml

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plain(params), sort_keys=True))


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
def step_log(
    log_file: PathLike | None, threads: int | None = None, *, resume: str | None = None
) -> Iterator[None]:
    """Route the package's log lines and Python warnings to ``log_file`` for one step, whose
    thread pools are kept to ``threads`` (the rule's; :func:`scdsec.settings.limit_threads`).

    A failure ends the step's log with one line that says why, also printed on the console
    (where Snakemake's error summary stands), and ends the script with exit status 1: bad
    input (:class:`scdsec.InputError`, whose message names the dataset or file and the setting
    to change) as that message, without a traceback; any other error after its traceback in
    the log, as ``step failed: <type>: <message>``.

    An interruption (Ctrl-C: ``KeyboardInterrupt``) ends the log and the console with one
    line, ``interrupted; <resume>``, and exit status 130, without a traceback; ``resume`` says
    what running the same command again does (default: the step runs again).
    """
    from .settings import configure_logging, limit_threads

    limit_threads(threads)
    if log_file is None:
        yield
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    console = sys.stderr
    with open(log_file, "a") as fh, contextlib.redirect_stderr(fh):
        configure_logging(filename=None)
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        try:
            yield
        except KeyboardInterrupt:
            line = f"interrupted; {resume or 'the same snakemake command runs this step again'}"
            logger.warning("%s", line)
            print(f"{line} (log: {log_file})", file=console, flush=True)
            raise SystemExit(130) from None
        except Exception as err:
            cause = " ".join(str(err).split())
            if not isinstance(err, InputError):
                logger.exception("step failed")
                cause = f"step failed: {type(err).__name__}: {cause}"
            logger.error("%s", cause)
            print(f"Error: {cause} (log: {log_file})", file=console, flush=True)
            raise SystemExit(1) from None
        finally:
            logging.captureWarnings(False)
            sys.stderr.flush()


#: The ``obs`` columns the package writes: true labels (a copy of the dataset's ``labels``),
#: QC totals (scanpy's ``calculate_qc_metrics`` names, prefixed), size factors, and the
#: clusters of scDSEC (the workflow's baselines add theirs, under their method names).
OWN_OBS_COLUMNS = (
    "scdsec_true_label",
    "scdsec_total_counts",
    "scdsec_n_genes_by_counts",
    "scdsec_size_factor",
    "scdsec",
    "scdsec_agreement",
)
#: The ``var`` columns the package writes: the scaling of the network input.
OWN_VAR_COLUMNS = ("scdsec_mean", "scdsec_std")


def keep_input_columns(
    adata: ad.AnnData, where: str, *, labels: str | None = None, baselines: bool = False
) -> None:
    """Rename, in place, the input's ``obs``/``var`` columns that bear a name the package
    writes (:data:`OWN_OBS_COLUMNS`, :data:`OWN_VAR_COLUMNS`; with ``baselines``, also the
    baselines' keys such as ``leiden``) to ``<name>_input``, so that nothing of the user's is
    overwritten; each renaming is logged (``where`` begins the line). With ``labels`` given,
    ``obs['scdsec_true_label']`` is the reader's copy and stays.
    """
    obs_columns = OWN_OBS_COLUMNS + (BASELINES if baselines else ())
    for axis, own in (("obs", obs_columns), ("var", OWN_VAR_COLUMNS)):
        frame = getattr(adata, axis)
        clashes = [c for c in own if c in frame and not (labels and c == "scdsec_true_label")]
        for name in clashes:
            new = f"{name}_input"
            while new in frame:
                new += "_"
            frame.rename(columns={name: new}, inplace=True)
            logger.warning(
                "%s: %s column %r of the input kept as %r (scdsec writes its own %r)",
                where,
                axis,
                name,
                new,
                name,
            )


def download_cache_path(source: str, cache_dir: PathLike) -> Path:
    """Where a URL's file is kept: named after the URL, so a new URL downloads afresh."""
    name = Path(unquote(urlparse(source).path)).name or "download"
    tag = hashlib.sha1(source.encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{tag}-{name}"


def import_dataset(
    entry: Mapping,
    output: PathLike,
    *,
    name: str,
    cache_dir: PathLike,
    n_neighbors: int | None = None,
    n_clusters: int | str | None = None,
    batch_key: str | None = None,
) -> ad.AnnData:
    """Download (or simulate) one dataset of ``config.yaml`` and write it as raw counts.

    ``entry`` is the dataset's config entry: either ``simulate`` (arguments of
    :func:`scdsec.simulate.simulate_counts`) or ``source`` (URL or local path) with
    optional ``checksum``, ``format``, ``labels``, ``metadata`` (a cell metadata table joined
    by cell name: :func:`scdsec.io.metadata.read_counts_with_metadata`), ``metadata_columns``,
    ``cells_as``, ``layer``, ``genome``, ``counts``, ``sample``, ``batch_pattern`` (the
    batch from the cell names, written to ``obs[batch_key]``:
    :func:`scdsec.io.metadata.batch_from_cell_names`).
    True labels, when named, are copied to ``obs['scdsec_true_label']``; the input's columns
    are never overwritten (:func:`keep_input_columns`).

    ``n_neighbors`` (``graph.n_neighbors``) and ``n_clusters`` (the dataset's) are checked
    against the cells read (:func:`check_cells`), and ``batch_key`` (the dataset's) against
    its column (:func:`scdsec._checks.check_batch_key`), before anything is written: settings
    the data cannot hold stop the run before QC. Raises :class:`InputError` naming the
    dataset, its cells and the key.
    """
    from .io import fetch
    from .io.metadata import read_counts_with_metadata

    if entry.get("simulate") is not None:
        from .simulate import simulate_counts

        sim = dict(entry["simulate"])
        adata = simulate_counts(
            sim.pop("cells", 3000), sim.pop("genes", 2000), sim.pop("types", 6), **sim
        )
        adata.obs["scdsec_true_label"] = adata.obs["cell_type"]
    else:
        source = str(entry["source"])
        scheme = urlparse(source).scheme
        dest = download_cache_path(source, cache_dir) if scheme in ("http", "https") else None
        local = fetch(source, dest, entry.get("checksum"))
        metadata = entry.get("metadata")
        if metadata is not None:
            meta_dest = download_cache_path(str(metadata), cache_dir)
            metadata = fetch(str(metadata), meta_dest)
        adata = read_counts_with_metadata(
            local,
            metadata=metadata,
            format=entry.get("format", "auto"),
            labels=entry.get("labels"),
            metadata_columns=tuple(entry.get("metadata_columns") or ()),
            cells_as=entry.get("cells_as", "auto"),
            layer=entry.get("layer"),
            genome=entry.get("genome"),
            counts=entry.get("counts", "integer"),
            sample=entry.get("sample"),
        )
        keep_input_columns(adata, f"dataset {name}", labels=entry.get("labels"), baselines=True)
    adata.uns["dataset"] = name
    pattern = entry.get("batch_pattern")
    if pattern is not None:
        from .io.metadata import batch_from_cell_names

        with _named(f"dataset {name}"):
            setting = f"datasets.{name}.batch_pattern"
            batch_from_cell_names(adata, str(pattern), str(batch_key), setting=setting)
    check_cells(adata, output, n_neighbors=n_neighbors, n_clusters=n_clusters, cells="cells")
    if batch_key is not None:
        check_batch(adata, output, batch_key)
    record(adata, "download", dict(entry))
    write_h5ad(adata, output)
    logger.info("Dataset %s: %d cells × %d genes → %s", name, *adata.shape, output)
    return adata


def _where(adata: ad.AnnData, input: PathLike) -> str:
    """How a step's messages name its data: the dataset of ``config.yaml``, else the file."""
    name = adata.uns.get("dataset")
    return f"dataset {name}" if name else str(input)


@contextlib.contextmanager
def _named(where: str) -> Iterator[None]:
    """Begin the message of an :class:`InputError` raised inside with ``where``."""
    try:
        yield
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def check_cells(
    adata: ad.AnnData,
    input: PathLike,
    *,
    n_neighbors: int | None = None,
    neighbors_key: str = "graph.n_neighbors",
    n_clusters: int | str | None = None,
    cells: str = "cells after QC",
) -> None:
    """:func:`scdsec.graph.check_cell_count` on a step's cells, in config terms.

    The message names the dataset (``uns['dataset']``, else the file ``input``), the cells
    (``cells``: how the message calls them) and the key: ``neighbors_key`` for
    ``n_neighbors`` and ``datasets.<name>.n_clusters`` for ``n_clusters``.
    """
    from .graph import check_cell_count

    name = adata.uns.get("dataset")
    check_cell_count(
        adata.n_obs,
        n_neighbors=n_neighbors,
        n_clusters=n_clusters,
        where=_where(adata, input),
        cells=cells,
        neighbors_key=neighbors_key,
        clusters_key=f"datasets.{name}.n_clusters" if name else "n_clusters",
    )


def check_batch(adata: ad.AnnData, input: PathLike, batch_key: str) -> None:
    """:func:`scdsec._checks.check_batch_key` on a step's cells, in config terms: the message
    names the dataset (or the file ``input``) and ``datasets.<name>.batch_key``."""
    from ._checks import check_batch_key

    name = adata.uns.get("dataset")
    setting = f"datasets.{name}.batch_key" if name else "batch_key"
    with _named(_where(adata, input)):
        check_batch_key(adata.obs, batch_key, setting=setting)


def qc_step(
    input: PathLike,
    output: PathLike,
    *,
    n_neighbors: int | None = None,
    n_clusters: int | str | None = None,
    **params,
) -> ad.AnnData:
    """Read raw counts, apply :func:`scdsec.preprocessing.qc_filter`, write.

    ``n_neighbors`` (``graph.n_neighbors``) and ``n_clusters`` (the dataset's) are not QC
    settings: the cells left are checked against them (:func:`check_cells`), so that a run
    stops at the first step that knows it cannot go on. They are not recorded.
    """
    from .preprocessing import qc_filter

    raw = ad.read_h5ad(input)
    with _named(_where(raw, input)):
        adata = qc_filter(raw, **params)
    check_cells(adata, input, n_neighbors=n_neighbors, n_clusters=n_clusters)
    record(adata, "qc", params)
    write_h5ad(adata, output)
    return adata


def normalize_step(input: PathLike, output: PathLike, **params) -> ad.AnnData:
    """Read QC'd counts, apply :func:`scdsec.preprocessing.normalize`, write (with the
    dataset's ``batch_key`` among ``params``, its column is checked first: :func:`check_batch`)."""
    from .preprocessing import normalize

    qc = ad.read_h5ad(input)
    if params.get("batch_key") is not None:
        check_batch(qc, input, params["batch_key"])
    with _named(_where(qc, input)):
        adata = normalize(qc, **params)
    record(adata, "normalize", params)
    write_h5ad(adata, output)
    return adata


def graph_step(
    input: PathLike, output: PathLike, *, neighbors_key: str = "graph.n_neighbors", **params
) -> ad.AnnData:
    """Read normalised data, apply :func:`scdsec.graph.build_knn_graph`, write.

    Too few cells for ``n_neighbors`` stop the step with an :class:`InputError` that names
    the dataset, its cells after QC and ``neighbors_key`` (the setting K came from).
    """
    from .graph import build_knn_graph

    adata = ad.read_h5ad(input)
    check_cells(adata, input, n_neighbors=params.get("n_neighbors"), neighbors_key=neighbors_key)
    adata = build_knn_graph(adata, **params)
    record(adata, "graph", params)
    write_h5ad(adata, output)
    return adata


def write_results(adata: ad.AnnData, model, out_dir: PathLike, key: str = "scdsec") -> None:
    """Write a trained model's results into ``out_dir``.

    * ``{key}.h5ad`` (``scdsec.h5ad``): the cells with ``obs[key]`` (labels), ``obsm['X_' + key]``
      (embedding), ``obsm[key + '_q']`` (soft assignments), ``uns[key]`` (parameters, seed,
      versions, loss history); ``X`` is the log-normalised expression of the model's genes.
    * ``clusters.tsv``: cell and cluster, one line per cell.
    * ``loss.tsv``: the per-epoch loss terms.
    * ``model/``: the checkpoint (:meth:`scdsec.model.SCDSEC.save`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    compact = ad.AnnData(
        X=sp.csr_matrix(adata.layers["log1p"]) if "log1p" in adata.layers else adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        obsm={k: v for k, v in adata.obsm.items()},
        uns={k: v for k, v in adata.uns.items()},
    )
    with atomic_path(out / "model") as tmp:
        model.save(tmp)
    with atomic_path(out / "loss.tsv") as tmp:
        model.history.to_csv(tmp, sep="\t", index=False)
    clusters = pd.DataFrame({"cell": adata.obs_names, "cluster": adata.obs[key].astype(str)})
    with atomic_path(out / "clusters.tsv") as tmp:
        clusters.to_csv(tmp, sep="\t", index=False)
    write_h5ad(compact, out / f"{key}.h5ad")


def train_step(
    input: PathLike,
    out_dir: PathLike,
    *,
    n_clusters: int | str,
    params: Mapping,
    seed: int,
    threads: int | None = None,
    deterministic: bool | str = "auto",
    device: str = "auto",
    key: str = "scdsec",
    checkpoint_dir: PathLike | None = None,
    checkpoint_every: int = 10,
    batch_key: str | None = None,
) -> ad.AnnData:
    """Read the graph step's output, train scDSEC with ``seed``, write :func:`write_results`.

    ``batch_key``: the dataset's batch column (the decoder's covariate; see
    :func:`scdsec.tl.cluster`).

    ``uns[key]`` also gets ``n_clusters_given`` (the K trained with) and, when trained on a
    GPU, ``gpu_max_memory_mb`` (``torch.cuda.max_memory_allocated()`` during training); the
    train record in ``uns['scdsec_steps']`` gets the latter too. More clusters than cells
    stop the step with an :class:`InputError` naming ``datasets.<name>.n_clusters``.
    """
    import torch

    from .tl import cluster

    adata = ad.read_h5ad(input)
    check_cells(adata, input, n_clusters=n_clusters)
    if batch_key is not None:
        check_batch(adata, input, batch_key)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model = cluster(
        adata,
        n_clusters,
        params=params,
        seed=seed,
        device=device,
        threads=threads,
        deterministic=deterministic,
        key_added=key,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        batch_key=batch_key,
    )
    run = adata.uns[key]
    run["n_clusters_given"] = int(model.n_clusters)
    extra = {}
    if str(run.get("device", "")).startswith("cuda"):
        extra["gpu_max_memory_mb"] = run["gpu_max_memory_mb"] = (
            torch.cuda.max_memory_allocated() / 2**20
        )
        logger.info("Peak GPU memory: %.1f MB", run["gpu_max_memory_mb"])
    batch = {"batch_key": batch_key} if batch_key is not None else {}
    record(adata, "train", {"n_clusters": n_clusters, "seed": seed, **batch, **params, **extra})
    write_results(adata, model, out_dir, key=key)
    labels = adata.obs[key]
    logger.info("scDSEC: %d clusters, sizes %s", labels.nunique(), cluster_sizes(labels))
    return adata
