"""The methods scDSEC is compared with, run on the same QC'd counts (the paper's Table 2).

* ``leiden``: scanpy's standard pipeline (:func:`standard_pipeline`: ``normalize_total``,
  ``log1p``, top-1000 highly variable genes, ``scale``, 50 PCs, 15-neighbour graph) and Leiden
  at resolution 1 (igraph flavor) on its own graph;
* ``leiden_k``: the same graph, the resolution bisected to give the true number of clusters
  (:func:`leiden_for_k`);
* ``kmeans_pca``: k-means (``n_init`` ≥ 10) on the same 50 PCs;
* ``scvi_leiden`` / ``scvi_kmeans``: Leiden / k-means on scVI's latent space (scvi-tools'
  standard set-up). Optional: without scvi-tools the result says that the method is missing
  and why (:class:`MissingDependency`).

With a batch key (a column of ``obs`` naming each cell's sample, donor or platform) the
methods run scanpy's standard integrated pipeline: highly variable genes ranked per batch
(scanpy's ``batch_key``), PCA, Harmony on the PCs (``obsm['X_pca_harmony']``, the same
correction as scDSEC's graph, :func:`scdsec.graph.harmony_correct`), the neighbour graph on the
corrected PCs (``use_rep='X_pca_harmony'``); Leiden and k-means cluster those. scVI gets the
batch as its covariate (``setup_anndata(batch_key=...)``) and ranks its genes per batch.

The seed of the run is every step's ``random_state``. :func:`baseline_step` is the workflow's
file-level step.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._checks import check_batch_key
from ._errors import InputError
from .experiments import BASELINES, SCVI_BASELINES
from .graph import BATCH_CORRECTIONS, BatchCorrection

logger = logging.getLogger("scdsec")

#: scanpy's standard pipeline as the workflow runs it (``baselines`` in config.yaml).
STANDARD_DEFAULTS: dict[str, Any] = {
    "n_top_genes": 1000,
    "n_pcs": 50,
    "n_neighbors": 15,
    "resolution": 1.0,
    "kmeans_n_init": 10,
}
#: scvi-tools' standard set-up (``baselines.scvi`` in config.yaml); ``max_epochs`` None is
#: scvi-tools' own rule (about 20,000 cell passes, at most 400 epochs).
SCVI_DEFAULTS: dict[str, Any] = {"n_top_genes": 2000, "n_latent": 10, "max_epochs": None}


class MissingDependency(ImportError):
    """An optional package a method needs cannot be imported."""


@dataclass
class BaselineResult:
    """Labels of one baseline run and the embedding it clustered."""

    labels: np.ndarray | None
    embedding: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    #: The expression the method clustered, log-normalised (standard pipeline only).
    expression: ad.AnnData | None = None


def _counts_csr(adata: ad.AnnData) -> sp.csr_matrix:
    x = adata.layers["counts"] if "counts" in adata.layers else adata.X
    return sp.csr_matrix(x, dtype=np.float32)


def standard_pipeline(
    counts: ad.AnnData,
    *,
    n_top_genes: int = 1000,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    seed: int = 0,
    batch_key: str | None = None,
    batch_correction: BatchCorrection = "harmony",
) -> ad.AnnData:
    """scanpy's standard preprocessing of raw counts, with scanpy's own defaults.

    ``normalize_total`` (to the median library size), ``log1p``, the top ``n_top_genes``
    highly variable genes (flavor ``seurat``, capped at the genes available), ``scale`` (no
    clipping), PCA with ``n_pcs`` components (capped at the data's rank) and
    ``sc.pp.neighbors`` with ``n_neighbors`` neighbours (UMAP connectivities).

    With ``batch_key`` (a column of ``counts.obs``), scanpy's integrated pipeline: the genes
    are ranked per batch (``highly_variable_genes(batch_key=...)``) and, under
    ``batch_correction="harmony"``, Harmony corrects the PCs
    (:func:`scdsec.graph.harmony_correct`, seeded) into ``obsm['X_pca_harmony']``, on which
    the neighbours are found (``use_rep='X_pca_harmony'``); ``"none"`` keeps the plain PCs.

    Returns
    -------
    A new AnnData of the selected genes: ``X`` scaled, ``layers['log1p']`` the log-normalised
    values, ``obsm['X_pca']`` (with Harmony also ``obsm['X_pca_harmony']``),
    ``obsp['connectivities']``/``obsp['distances']``, and ``uns['scdsec_use_rep']``: the
    ``obsm`` key of the PCs the methods cluster (``'X_pca_harmony'`` with Harmony, on which
    the neighbours are found; else ``'X_pca'``, the neighbours where scanpy's default puts
    them).

    Raises
    ------
    InputError
        A batch key whose column is missing, has missing values or one value; an unknown
        ``batch_correction``.
    """
    import scanpy as sc

    batches = _batches(counts, batch_key, batch_correction)
    adata = ad.AnnData(X=_counts_csr(counts), obs=counts.obs.copy(), var=counts.var[[]].copy())
    hvg_batch_key = None
    if batches is not None:
        hvg_batch_key = "_scdsec_batch"
        adata.obs[hvg_batch_key] = batches
    use_rep = "X_pca"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.normalize_total(adata)
        sc.pp.log1p(adata)
        if n_top_genes < adata.n_vars:
            sc.pp.highly_variable_genes(
                adata, n_top_genes=int(n_top_genes), subset=True, batch_key=hvg_batch_key
            )
        adata.layers["log1p"] = adata.X.copy()
        sc.pp.scale(adata)
        n_comps = min(int(n_pcs), adata.n_obs - 1, adata.n_vars - 1)
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
        if batches is not None and batch_correction == "harmony":
            from .graph import harmony_correct

            use_rep = "X_pca_harmony"
            adata.obsm[use_rep] = harmony_correct(adata.obsm["X_pca"], batches, seed=seed)
        # Without Harmony, scanpy's own choice as before (X_pca; X itself under 50 genes).
        sc.pp.neighbors(
            adata,
            n_neighbors=int(n_neighbors),
            use_rep=use_rep if use_rep != "X_pca" else None,
            random_state=seed,
        )
    if hvg_batch_key is not None:
        del adata.obs[hvg_batch_key]
    adata.uns["scdsec_use_rep"] = use_rep
    logger.info(
        "Standard pipeline: %d cells, %d genes, %d PCs%s, %d neighbours",
        adata.n_obs,
        adata.n_vars,
        n_comps,
        ""
        if batches is None
        else f" ({len(batches.categories)} batches of obs['{batch_key}'], "
        f"{'Harmony' if use_rep == 'X_pca_harmony' else 'not corrected'})",
        n_neighbors,
    )
    return adata


def _batches(
    counts: ad.AnnData, batch_key: str | None, batch_correction: str
) -> pd.Categorical | None:
    """The cells' batches (checked), or None without a batch key."""
    if batch_key is None:
        return None
    if batch_correction not in BATCH_CORRECTIONS:
        raise InputError(
            f"baselines batch_correction = {batch_correction!r}; expected one of "
            f"{', '.join(map(repr, BATCH_CORRECTIONS))}"
        )
    return check_batch_key(counts.obs, batch_key)


def leiden_clusters(
    adata: ad.AnnData, *, resolution: float = 1.0, seed: int = 0, neighbors_key: str | None = None
) -> np.ndarray:
    """Leiden communities of ``adata``'s neighbour graph (scanpy, igraph flavor), as strings.

    Runs with scanpy's recommended igraph settings (``n_iterations=2``, undirected).
    """
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.leiden(
            adata,
            resolution=float(resolution),
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=seed,
            key_added="_leiden",
            neighbors_key=neighbors_key,
        )
    labels = adata.obs.pop("_leiden").astype(str).to_numpy()
    return labels


def leiden_for_k(
    adata: ad.AnnData,
    n_clusters: int,
    *,
    seed: int = 0,
    start: float = 1.0,
    max_steps: int = 40,
    neighbors_key: str | None = None,
) -> tuple[np.ndarray, float, int]:
    """Leiden with the resolution searched (bisection) to give ``n_clusters`` communities.

    Starting at ``start``, the resolution is doubled until there are at least ``n_clusters``
    communities; the bracket (0 or the last resolution with too few, the first with enough)
    is then bisected. The number of communities grows with the resolution, if not strictly,
    so the search stops at the first resolution that gives exactly ``n_clusters``. When none
    does within ``max_steps`` runs (or the bracket shrinks onto a jump over ``n_clusters``),
    the run closest to ``n_clusters`` (the lower resolution on ties) is returned and a
    warning logged.

    Returns
    -------
    labels, resolution, number of communities found
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be positive, got {n_clusters}")
    tried: dict[float, np.ndarray] = {}

    def count(resolution: float) -> int:
        tried[resolution] = leiden_clusters(
            adata, resolution=resolution, seed=seed, neighbors_key=neighbors_key
        )
        return len(np.unique(tried[resolution]))

    lo, hi = 0.0, float(start)
    n = count(hi)
    steps = 1
    while n < n_clusters and steps < max_steps // 2:
        lo, hi = hi, hi * 2
        n = count(hi)
        steps += 1
    while n != n_clusters and steps < max_steps and hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        n = count(mid)
        steps += 1
        if n == n_clusters:
            hi = mid
            break
        lo, hi = (mid, hi) if n < n_clusters else (lo, mid)
    if n == n_clusters:
        resolution = hi
    else:
        resolution = min(tried, key=lambda r: (abs(len(np.unique(tried[r])) - n_clusters), r))
        logger.warning(
            "leiden_k: no resolution gave %d clusters in %d runs; closest: %d at resolution %.4g",
            n_clusters,
            steps,
            len(np.unique(tried[resolution])),
            resolution,
        )
    labels = tried[resolution]
    found = len(np.unique(labels))
    logger.info("leiden_k: resolution %.4g gives %d clusters (%d runs)", resolution, found, steps)
    return labels, float(resolution), found


def kmeans_labels(x: np.ndarray, n_clusters: int, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn, ``n_init`` restarts, seeded) labels of the rows of ``x`` (str)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=int(n_clusters), n_init=int(n_init), random_state=seed)
    return km.fit_predict(np.asarray(x, dtype=np.float64)).astype(str)


def scvi_latent(
    counts: ad.AnnData,
    *,
    n_top_genes: int = 2000,
    n_latent: int = 10,
    max_epochs: int | None = None,
    seed: int = 0,
    batch_key: str | None = None,
    batch_correction: BatchCorrection = "harmony",
) -> tuple[np.ndarray, dict[str, Any]]:
    """scVI's latent representation of raw counts, with scvi-tools' standard set-up.

    The top ``n_top_genes`` genes by scanpy's ``seurat_v3`` flavor on the counts (capped at the
    genes available), ``SCVI(n_latent=...)`` trained for ``max_epochs`` (None: scvi-tools'
    own rule) with ``scvi.settings.seed = seed``, on the first GPU when there is one.

    With ``batch_key`` (a column of ``counts.obs``), scvi-tools' integration set-up: the genes
    ranked per batch (scanpy's ``batch_key``) and, unless ``batch_correction="none"``, the
    batch registered as scVI's covariate (``setup_anndata(batch_key=...)``: the encoder and
    the decoder are given each cell's batch, so the latent space need not hold it).

    Raises
    ------
    MissingDependency
        When scvi-tools cannot be imported (install the ``scvi`` extra).
    InputError
        A batch key whose column is missing, has missing values or one value.
    """
    batches = _batches(counts, batch_key, batch_correction)
    try:
        import scvi
    except Exception as err:  # noqa: BLE001 - any import failure means the method is missing
        raise MissingDependency(
            f"scvi-tools cannot be imported ({type(err).__name__}: {err}); "
            "install it with: pip install 'scdsec[scvi]'"
        ) from err
    import scanpy as sc

    adata = ad.AnnData(X=_counts_csr(counts), obs=counts.obs[[]].copy(), var=counts.var[[]].copy())
    adata.layers["counts"] = adata.X.copy()
    hvg_batch_key = covariate = None
    if batches is not None:
        hvg_batch_key = "_scdsec_batch"
        adata.obs[hvg_batch_key] = batches
        covariate = hvg_batch_key if batch_correction != "none" else None
    if n_top_genes < adata.n_vars:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.pp.highly_variable_genes(
                adata,
                n_top_genes=int(n_top_genes),
                flavor="seurat_v3",
                subset=True,
                batch_key=hvg_batch_key,
            )
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key=covariate)
    model = scvi.model.SCVI(adata, n_latent=int(n_latent))
    gpu = _cuda_available()
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    from scvi.train._logger import SimpleLogger  # scvi-tools' default logger (1.4)

    # scvi-tools' logger writes lightning_logs/ into the working directory; here it writes into
    # a folder removed afterwards (the history the info needs stays in model.history).
    with tempfile.TemporaryDirectory(prefix="scvi-") as logs:
        model.train(
            max_epochs=max_epochs,
            accelerator="gpu" if gpu else "cpu",
            devices=1,
            default_root_dir=logs,
            logger=SimpleLogger(save_dir=logs),
        )
    info: dict[str, Any] = {
        "scvi_tools": getattr(scvi, "__version__", "unknown"),
        "n_genes": int(adata.n_vars),
        "epochs": int(model.history["elbo_train"].shape[0])
        if "elbo_train" in model.history
        else -1,
        "device": "cuda" if gpu else "cpu",
    }
    if batches is not None:
        info["n_batches"] = int(len(batches.categories))
        info["batch_covariate"] = covariate is not None
    if gpu:
        import torch

        info["gpu_max_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return np.asarray(model.get_latent_representation(), dtype=np.float32), info


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def run_baseline(
    method: str,
    counts: ad.AnnData,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    trained_scvi: tuple[np.ndarray, dict[str, Any]] | None = None,
    batch_key: str | None = None,
    batch_correction: BatchCorrection = "harmony",
) -> BaselineResult:
    """Run one baseline on QC'd raw counts.

    Parameters
    ----------
    method
        One of :data:`scdsec.experiments.BASELINES`.
    counts
        Raw counts after QC (``layers['counts']`` when present, else ``X``).
    n_clusters
        The number of clusters, for ``leiden_k``, ``kmeans_pca`` and ``scvi_kmeans``.
    seed
        ``random_state`` of every step.
    params
        Overrides of :data:`STANDARD_DEFAULTS`; the key ``scvi`` overrides
        :data:`SCVI_DEFAULTS` (the ``baselines`` section of ``config.yaml``).
    trained_scvi
        For a scVI method: ``(latent, info)`` as :func:`scvi_latent` returned it for these
        counts, seed and scVI parameters, clustered instead of training scVI again (so that
        ``scvi_leiden`` and ``scvi_kmeans`` can share one training).
    batch_key
        A column of ``counts.obs`` naming each cell's batch, or ``None``. With it the
        standard-pipeline methods run scanpy's integrated pipeline and scVI gets the batch
        (:func:`standard_pipeline`, :func:`scvi_latent`): Leiden runs on the graph of the
        corrected PCs, k-means on the corrected PCs, which are the embedding returned.
    batch_correction
        With ``batch_key``: ``"harmony"`` (Harmony on the PCs; scVI's batch covariate) or
        ``"none"`` (genes still ranked per batch, nothing corrected). Ignored without one.

    Returns
    -------
    The labels and embedding; for a scVI method without scvi-tools, a result with status
    ``missing``, no labels and the reason. With a batch key ``info`` also holds
    ``batch_key``, ``batch_correction`` and (standard pipeline) ``use_rep``.

    Raises
    ------
    InputError
        A batch key whose column is missing, has missing values or one value.
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; known: {list(BASELINES)}")
    params = dict(params or {})
    scvi_params = {**SCVI_DEFAULTS, **dict(params.pop("scvi", None) or {})}
    std = {**STANDARD_DEFAULTS, **params}
    if method in ("leiden_k", "kmeans_pca", "scvi_kmeans") and not n_clusters:
        raise ValueError(f"{method} needs n_clusters")
    info: dict[str, Any] = {"method": method, "seed": seed}
    batch = {}
    if batch_key is not None:
        _batches(counts, batch_key, batch_correction)  # refused before anything runs
        batch = {"batch_key": batch_key, "batch_correction": batch_correction}
        info.update(batch)

    if method in SCVI_BASELINES:
        if trained_scvi is None:
            try:
                trained_scvi = scvi_latent(counts, seed=seed, **scvi_params, **batch)
            except MissingDependency as err:
                logger.warning("%s is missing: %s", method, err)
                return BaselineResult(None, None, info, status="missing", reason=str(err))
        latent, scvi_info = trained_scvi
        info.update(scvi_info, scvi=scvi_params)
        if method == "scvi_kmeans":
            labels = kmeans_labels(latent, n_clusters, seed=seed, n_init=std["kmeans_n_init"])
            info["n_clusters_given"] = int(n_clusters)
        else:
            import scanpy as sc

            probe = ad.AnnData(obs=pd.DataFrame(index=counts.obs_names.copy()))
            probe.obsm["X_scVI"] = latent
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sc.pp.neighbors(
                    probe, n_neighbors=int(std["n_neighbors"]), use_rep="X_scVI", random_state=seed
                )
            labels = leiden_clusters(probe, resolution=std["resolution"], seed=seed)
            info["resolution"] = float(std["resolution"])
        return BaselineResult(labels, latent, info)

    adata = standard_pipeline(
        counts,
        n_top_genes=std["n_top_genes"],
        n_pcs=std["n_pcs"],
        n_neighbors=std["n_neighbors"],
        seed=seed,
        **batch,
    )
    # With Harmony the corrected PCs, on which the neighbours were also found.
    pcs = adata.obsm[adata.uns["scdsec_use_rep"]]
    info["standard_pipeline"] = {k: std[k] for k in ("n_top_genes", "n_pcs", "n_neighbors")}
    if batch:
        info["use_rep"] = adata.uns["scdsec_use_rep"]
    if method == "leiden":
        labels = leiden_clusters(adata, resolution=std["resolution"], seed=seed)
        info["resolution"] = float(std["resolution"])
    elif method == "leiden_k":
        labels, resolution, found = leiden_for_k(adata, int(n_clusters), seed=seed)
        info.update(resolution=resolution, n_clusters_given=int(n_clusters))
        if found != n_clusters:
            info["note"] = f"{found} clusters at the closest resolution, not {n_clusters}"
    else:  # kmeans_pca
        labels = kmeans_labels(pcs, int(n_clusters), seed=seed, n_init=std["kmeans_n_init"])
        info.update(n_clusters_given=int(n_clusters), kmeans_n_init=int(std["kmeans_n_init"]))
    expression = ad.AnnData(
        X=sp.csr_matrix(adata.layers["log1p"], dtype=np.float32), var=adata.var[[]].copy()
    )
    return BaselineResult(labels, pcs, info, expression=expression)


def _cluster_categories(labels: np.ndarray) -> pd.Categorical:
    """Labels as a categorical with categories in natural order ("0", "1", …, "10")."""
    values = np.asarray(labels).astype(str)
    unique = sorted(set(values), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))
    return pd.Categorical(values, categories=unique)


def baseline_step(
    input: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    method: str,
    n_clusters: int | str | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    graph: str | os.PathLike | None = None,
    batch_key: str | None = None,
    batch_correction: BatchCorrection = "harmony",
) -> BaselineResult:
    """Read QC'd counts, run :func:`run_baseline`, write the results into ``out_dir``.

    Writes ``clusters.tsv`` (``cell``, ``cluster``; only the header when the method is
    missing) and ``{method}.h5ad``: the cells with ``obs[method]`` (labels),
    ``obsm['X_' + method]`` (the embedding clustered), ``X`` the log-normalised expression
    (standard-pipeline methods), and ``uns[method]`` with ``status`` (``ok`` or ``missing``),
    ``reason``, the parameters and the seed. ``n_clusters='auto'`` uses
    :func:`scdsec.clustering.n_clusters_estimate` on ``graph`` (the workflow's kNN graph),
    with the same seed as scDSEC, so both get the same estimate (recorded, with its range, in
    ``uns[method]['n_clusters_estimate']``). ``batch_key`` and ``batch_correction`` go to
    :func:`run_baseline`; with a batch key both are recorded in ``uns[method]`` and among the
    run's parameters.
    """
    from pathlib import Path

    from ._files import atomic_path
    from .pipeline import check_cells, cluster_sizes, record, write_h5ad

    out = Path(out_dir)
    counts = ad.read_h5ad(input)
    k: int | None = None
    estimate: dict | None = None
    if method in ("leiden_k", "kmeans_pca", "scvi_kmeans"):
        if n_clusters == "auto":
            from .clustering import n_clusters_estimate

            if graph is None:
                raise ValueError(f"{method} with n_clusters=auto needs the kNN graph file")
            estimate = n_clusters_estimate(ad.read_h5ad(graph), seed=seed)
            k = estimate["n_clusters"]
        else:
            k = int(n_clusters)
            check_cells(counts, input, n_clusters=k)
    batch = {}
    if batch_key is not None:
        batch = {"batch_key": batch_key, "batch_correction": batch_correction}
    result = run_baseline(method, counts, n_clusters=k, seed=seed, params=params, **batch)

    uns = {
        **result.info,
        "status": result.status,
        "reason": result.reason,
        "n_clusters_estimated": estimate is not None,
    }
    if estimate is not None:
        uns["n_clusters_estimate"] = estimate
    if result.labels is None:
        compact = ad.AnnData(obs=counts.obs.copy())
        cells = pd.DataFrame({"cell": [], "cluster": []})
    else:
        labels = _cluster_categories(result.labels)
        if result.expression is not None:
            compact = ad.AnnData(
                X=result.expression.X, obs=counts.obs.copy(), var=result.expression.var.copy()
            )
        else:
            compact = ad.AnnData(obs=counts.obs.copy())
        compact.obs[method] = labels
        compact.obsm[f"X_{method}"] = np.asarray(result.embedding, dtype=np.float32)
        uns["n_clusters"] = int(len(labels.categories))
        cells = pd.DataFrame({"cell": counts.obs_names, "cluster": np.asarray(labels).astype(str)})
        logger.info(
            "%s: %d clusters, sizes %s",
            method,
            uns["n_clusters"],
            cluster_sizes(labels),
        )
    compact.uns[method] = _jsonable(uns)
    record(
        compact,
        method,
        _jsonable({"n_clusters": n_clusters, "seed": seed, **dict(params or {}), **batch}),
    )
    with atomic_path(out / "clusters.tsv") as tmp:
        cells.to_csv(tmp, sep="\t", index=False)
    write_h5ad(compact, out / f"{method}.h5ad")
    return result


def _jsonable(value: Any) -> Any:
    """A value h5ad can store: None → "none", nested mappings kept, numpy scalars unwrapped."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None:
        return "none"
    if isinstance(value, np.generic):
        return value.item()
    return value
