"""Clustering outside the deep model: the number of clusters when it is ``auto``, and the
classical methods the model is compared with (Leiden, k-means)."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp

logger = logging.getLogger("scdsec")

AUTO_RESOLUTION = 0.5  # measured on ../shared/data and the simulator: docs/method.md §7


def leiden_labels(adjacency: sp.spmatrix, *, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Leiden communities (igraph implementation, run to convergence) of a cell graph."""
    import scanpy as sc

    probe = ad.AnnData(obs={"i": np.arange(adjacency.shape[0])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.leiden(
            probe,
            resolution=resolution,
            adjacency=sp.csr_matrix(adjacency),
            flavor="igraph",
            n_iterations=-1,
            random_state=seed,
            key_added="leiden",
        )
    return probe.obs["leiden"].astype(int).to_numpy()


def estimate_n_clusters(
    adata: ad.AnnData, *, resolution: float = AUTO_RESOLUTION, seed: int = 0
) -> int:
    """Estimate the number of cell types K from the data: a starting point, not a measurement.

    The number of Leiden communities (Traag et al. 2019, igraph's implementation) of the
    workflow's kNN graph (``obsp['knn']``, 50 neighbours by default) at ``resolution``
    (default 0.5), at least 2. The counts at half and twice the resolution are logged beside
    it as a warning, to show how much K depends on the granularity asked for
    (:func:`n_clusters_estimate` returns them).

    How far it is from the annotated K, and why no rule of this kind gets within 20% of it on
    every dataset: ``docs/method.md`` §7 (on the seven labelled datasets of ``../shared/data``
    it is within 20% on three; ``benchmarks/auto_k*.py`` measure it). Give ``n_clusters`` when
    it is known.

    Parameters
    ----------
    adata
        Cells with their kNN graph in ``obsp['knn']`` (n_obs × n_obs, symmetric).
    resolution
        Leiden's resolution (modularity); larger gives more communities.
    seed
        Leiden's seed.

    Returns
    -------
    K, at least 2.

    Raises
    ------
    ValueError
        ``obsp['knn']`` is missing.
    """
    return n_clusters_estimate(adata, resolution=resolution, seed=seed)["n_clusters"]


def n_clusters_estimate(
    adata: ad.AnnData, *, resolution: float = AUTO_RESOLUTION, seed: int = 0
) -> dict[str, float | int]:
    """:func:`estimate_n_clusters` with the range it is read from, for records and summaries.

    Returns
    -------
    ``{"n_clusters": K, "resolution": r, "half_resolution": r / 2, "n_at_half": …,
    "twice_resolution": 2 r, "n_at_twice": …}``: K (at least 2) and the Leiden community
    counts at half and twice the resolution (the range K depends on). Logged as a warning.

    Raises
    ------
    ValueError
        ``obsp['knn']`` is missing.
    """
    if "knn" not in adata.obsp:
        raise ValueError("estimate_n_clusters needs the kNN graph in adata.obsp['knn']")
    graph = adata.obsp["knn"]
    found = {
        r: len(np.unique(leiden_labels(graph, resolution=r, seed=seed)))
        for r in (resolution / 2, resolution, 2 * resolution)
    }
    k = max(found[resolution], 2)
    logger.warning(
        "K = %d, estimated: %d Leiden %s of the kNN graph at resolution %g%s; at %g "
        "and %g: %d and %d. The number of types depends on the granularity wanted (the estimate "
        "was within 20%% of the annotated number on 3 of 7 labelled datasets, docs/method.md "
        "§7): give n_clusters when you know it",
        k,
        found[resolution],
        "community" if found[resolution] == 1 else "communities",
        resolution,
        (
            ": the cells look like one population, and scDSEC needs at least 2 clusters, so "
            "read the 2 clusters as the population's two main states, not as two types"
        )
        if k != found[resolution]
        else "",
        resolution / 2,
        2 * resolution,
        found[resolution / 2],
        found[2 * resolution],
    )
    return {
        "n_clusters": k,
        "resolution": float(resolution),
        "half_resolution": resolution / 2,
        "n_at_half": found[resolution / 2],
        "twice_resolution": 2 * resolution,
        "n_at_twice": found[2 * resolution],
    }
