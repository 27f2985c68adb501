"""Clustering outside the deep model: the number of clusters when it is ``auto``, and the
classical methods the model is compared with (Leiden, k-means)."""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp

logger = logging.getLogger("scdsec")

AUTO_RESOLUTION = 0.5  # measured on ../shared/data and the simulator: see estimate_n_clusters


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

    The number of Leiden communities of the workflow's kNN graph (``obsp['knn']``, K = 50
    neighbours) at ``resolution`` 0.5, at least 2. On the seven labelled datasets of
    ``../shared/data`` (true → found, mean of 5 seeds) it is within 20% on three: CellBench
    5 → 5, kidney 11 → 12, PBMC 8 → 8; it under-counts bladder 16 → 7.8, paul15 19 → 4,
    Zheng sorted PBMC 9 → 6 and over-counts worm neurons 10 → 15. Resolution 1.0 does better
    on the simulator (6 of 13 datasets with six simulated regimes, against 3) but not on the
    real data: the same three within 20%, and a larger mean error (0.41 against 0.32 of the
    true K; worm 10 → 21), so it did not replace 0.5 (``benchmarks/auto_k.py``,
    ``benchmarks/results/2026-12-01-auto-k*``). No graph-only rule tried (resolutions,
    graphs, stability and plateau sweeps, k-means silhouette, the Laplacian eigengap) met
    "within 20%" on most datasets. Give ``n_clusters`` when it is known.
    """
    if "knn" not in adata.obsp:
        raise ValueError("estimate_n_clusters needs the kNN graph in adata.obsp['knn']")
    found = len(np.unique(leiden_labels(adata.obsp["knn"], resolution=resolution, seed=seed)))
    k = max(found, 2)
    logger.info(
        "K = %d, estimated: %d Leiden communities of the kNN graph at resolution %.2f%s",
        k,
        found,
        resolution,
        " (at least 2)" if k != found else "",
    )
    return k
