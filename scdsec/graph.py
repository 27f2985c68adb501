"""Cell structure graph (docs/method.md §2): PCA, Euclidean kNN, symmetrised by union."""

from __future__ import annotations

import logging
import os
from typing import Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ._checks import (
    check_batch_key,
    check_cell_count,  # noqa: F401 (scdsec.graph.check_cell_count)
)
from ._errors import InputError

logger = logging.getLogger("scdsec")

KnnMethod = Literal["auto", "exact", "approximate"]
BatchCorrection = Literal["harmony", "none"]
BATCH_CORRECTIONS: tuple[str, ...] = ("harmony", "none")
#: Harmony's rounds of clustering and correction: harmonypy's default (and R harmony's), which
#: scanpy's ``external.pp.harmony_integrate`` keeps; it stops earlier once converged.
HARMONY_MAX_ITER = 10


def pca(x: np.ndarray, n_components: int = 50, seed: int = 0) -> np.ndarray:
    """Principal components of ``x`` (cells × features), capped at the data's rank."""
    from sklearn.decomposition import PCA

    n = min(int(n_components), x.shape[0] - 1, x.shape[1])
    return PCA(n_components=n, random_state=seed).fit_transform(x).astype(np.float32)


def harmony_correct(
    x_pca: np.ndarray,
    batches,
    *,
    seed: int = 0,
    max_iter: int = HARMONY_MAX_ITER,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Harmony's batch-corrected principal components (Korsunsky et al. 2019, *Nature
    Methods* 16:1289), through harmonypy.

    Harmony alternates a soft k-means of the cells in PC space, penalised towards clusters
    that hold every batch in proportion (diversity penalty θ = 2), with a per-cluster linear
    correction that removes each batch's offset from its cells. harmonypy's defaults
    otherwise (``nclust = min(N / 30, 100)``, at least 1; σ = 0.1; λ estimated), the
    settings scanpy's ``external.pp.harmony_integrate`` runs it with.

    Parameters
    ----------
    x_pca
        PCA coordinates, cells × PCs.
    batches
        Each cell's batch, length ``n_cells`` (:func:`scdsec._checks.check_batch_key`'s
        categorical, or any array of labels), at least 2 distinct.
    seed
        harmonypy's ``random_state`` (its k-means initialisation).
    max_iter
        harmonypy's ``max_iter_harmony``.
    n_jobs
        Threads of harmonypy's backend; ``None``: ``OMP_NUM_THREADS`` when set (as
        :func:`scdsec.settings.limit_threads` sets it for a workflow step), else harmonypy's
        own choice (one per physical core). The result does not depend on it.

    Returns
    -------
    The corrected coordinates, float32, same shape as ``x_pca`` (cells × PCs).
    """
    import harmonypy
    import pandas as pd

    x = np.asarray(x_pca, dtype=np.float64)
    n_cells = x.shape[0]
    labels = np.asarray(batches).astype(str)
    if labels.shape != (n_cells,):
        raise ValueError(f"{labels.shape[0]} batch labels for {n_cells} cells")
    threads = n_jobs if n_jobs and n_jobs > 0 else _env_threads()
    result = harmonypy.run_harmony(
        # PCs × cells: harmonypy reads either orientation from which side matches the cells,
        # and takes this one when both do (as many PCs as cells).
        x.T,
        pd.DataFrame({"batch": labels}),
        "batch",
        nclust=max(1, min(round(n_cells / 30), 100)),
        max_iter_harmony=int(max_iter),
        random_state=int(seed),
        verbose=False,
        ncores=threads or 0,
    )
    z = np.asarray(result.Z_corr)
    if z.shape != x.shape:  # older harmonypy releases returned PCs × cells
        z = z.T
    return np.ascontiguousarray(z, dtype=np.float32)


def _env_threads() -> int | None:
    try:
        return int(os.environ.get("OMP_NUM_THREADS", "")) or None
    except ValueError:
        return None


def knn_indices(
    x: np.ndarray,
    n_neighbors: int,
    *,
    method: KnnMethod = "auto",
    exact_max_cells: int = 50_000,
    seed: int = 0,
    n_jobs: int | None = None,
) -> np.ndarray:
    """Indices of each cell's ``n_neighbors`` nearest other cells (Euclidean).

    ``exact`` is scikit-learn's search; ``approximate`` is pynndescent's index (Dong et al.
    2011); ``auto`` is exact up to ``exact_max_cells`` cells and, above, the exact search on a
    GPU when torch sees one (:func:`knn_indices_torch`, chunked distances and top-k), else
    pynndescent.
    """
    n = x.shape[0]
    check_cell_count(n, n_neighbors=n_neighbors)
    backend = knn_backend(n, method, exact_max_cells)
    if backend == "exact":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=n_neighbors + 1, n_jobs=n_jobs).fit(x)
        idx = nn.kneighbors(x, return_distance=False)
    elif backend == "exact_gpu":
        idx = knn_indices_torch(x, n_neighbors + 1, device="cuda")
    else:
        from pynndescent import NNDescent

        index = NNDescent(
            x,
            n_neighbors=n_neighbors + 1,
            metric="euclidean",
            random_state=seed,
            n_jobs=n_jobs or -1,
        )
        idx, _ = index.neighbor_graph
    return _without_self(np.asarray(idx, dtype=np.int64), n_neighbors)


def knn_backend(n_cells: int, method: KnnMethod, exact_max_cells: int) -> str:
    """Which search ``method`` runs on ``n_cells`` cells: exact, exact_gpu or approximate."""
    if method == "exact" or (method == "auto" and n_cells <= exact_max_cells):
        return "exact"
    if method == "auto" and _cuda_available():
        return "exact_gpu"
    return "approximate"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # the graph step's own env has no torch: pynndescent above the limit
        return False
    return torch.cuda.is_available()


def knn_indices_torch(
    x: np.ndarray, n_neighbors: int, *, device: str = "cuda", max_chunk_entries: int = 2**28
) -> np.ndarray:
    """Exact Euclidean ``n_neighbors`` nearest cells of every cell by chunked matrix products.

    Distances ``‖a‖² − 2 a·b + ‖b‖²`` of a chunk of cells to all cells, then top-k; a chunk
    holds at most ``max_chunk_entries`` distances (1 GiB in float32), so memory stays
    O(N · features + chunk · N). The result includes each cell itself (usually first).

    Returns
    -------
    ``(N, n_neighbors)`` int64 indices, nearest first.
    """
    import torch

    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    squared = (data * data).sum(dim=1)
    n = data.shape[0]
    chunk = max(1, min(n, max_chunk_entries // n))
    out = np.empty((n, n_neighbors), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, n, chunk):
            rows = data[start : start + chunk]
            distance = squared[start : start + chunk, None] - 2.0 * rows @ data.T + squared[None]
            nearest = torch.topk(distance, n_neighbors, dim=1, largest=False, sorted=True).indices
            out[start : start + len(rows)] = nearest.cpu().numpy()
    return out


def _without_self(idx: np.ndarray, n_neighbors: int, cells: np.ndarray | None = None) -> np.ndarray:
    """Drop each cell from its own list (usually column 0, but a duplicate may come first);
    rows that do not hold the cell lose their last entry. Row ``i`` is the list of cell
    ``cells[i]`` (default: cell ``i``)."""
    own = np.arange(idx.shape[0]) if cells is None else np.asarray(cells)
    keep = idx != own[:, None]
    no_self = keep.all(axis=1)
    keep[no_self, -1] = False
    return idx[keep].reshape(idx.shape[0], n_neighbors)


def knn_recall(
    x: np.ndarray, neighbors: np.ndarray, *, n_sample: int = 1000, seed: int = 0
) -> float:
    """Recall of neighbour lists against the exact search, on a seeded sample of cells.

    Parameters
    ----------
    x
        The coordinates the neighbours were found in (cells × features).
    neighbors
        Each cell's ``k`` neighbour indices (cells × k), e.g. from an approximate index.
    n_sample
        Cells whose exact neighbours are computed (all cells if fewer).

    Returns
    -------
    The mean over the sampled cells of the fraction of their exact ``k`` nearest other cells
    that ``neighbors`` holds (1.0 = exact).
    """
    from sklearn.neighbors import NearestNeighbors

    n, k = neighbors.shape
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n_sample, n), replace=False))
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x)
    exact = _without_self(nn.kneighbors(x[sample], return_distance=False), k, sample)
    hits = [len(np.intersect1d(a, b)) for a, b in zip(neighbors[sample], exact, strict=True)]
    return float(np.mean(hits) / k)


def knn_adjacency(neighbors: np.ndarray) -> sp.csr_matrix:
    """Binary adjacency A from neighbour lists, symmetrised by union, without self loops."""
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(n * k, dtype=np.float32), (rows, neighbors.ravel())), shape=(n, n))
    a = a.maximum(a.T).tocsr()
    a.setdiag(0)
    a.eliminate_zeros()
    a.data[:] = 1.0
    a.sort_indices()
    return a


def build_knn_graph(
    adata: ad.AnnData,
    *,
    n_neighbors: int = 50,
    n_pcs: int = 50,
    method: KnnMethod = "auto",
    exact_max_cells: int = 50_000,
    seed: int = 0,
    n_jobs: int | None = None,
    batch_key: str | None = None,
    batch_correction: BatchCorrection = "harmony",
) -> ad.AnnData:
    """PCA of ``adata.X`` and the symmetrised Euclidean kNN graph on it.

    Parameters
    ----------
    adata
        The network input (cells × genes), e.g. from :func:`scdsec.preprocessing.normalize`.
    n_neighbors, n_pcs
        K of the kNN graph; principal components (capped at the data's rank).
    method, exact_max_cells, n_jobs
        The neighbour search (:func:`knn_indices`); ``n_jobs`` also Harmony's threads.
    seed
        The PCA's, the approximate index's and Harmony's random state.
    batch_key
        A column of ``obs`` naming each cell's batch, or ``None``
        (:func:`scdsec._checks.check_batch_key`).
    batch_correction
        With ``batch_key``: ``"harmony"`` corrects the PCs for the batches
        (:func:`harmony_correct`) and the graph is built on the corrected PCs (scanpy's
        integrated pipeline: ``harmony_integrate``, then ``neighbors(use_rep=
        'X_pca_harmony')``); ``"none"`` builds it on the plain PCs (the batches are only
        recorded). Ignored without a batch key.

    Returns
    -------
    A copy with ``obsm['X_pca']`` (the plain PCA, cells × PCs, float32), with Harmony also
    ``obsm['X_pca_harmony']`` (same shape, float32), ``obsp['knn']`` (binary, symmetric,
    sparse, no self loops; self loops are added when the GCN propagates) and
    ``uns['scdsec_graph']``: settings, edge count, ``use_rep`` (the ``obsm`` key the graph
    was built on: ``'X_pca'`` or ``'X_pca_harmony'``), with a batch key ``batch_key`` and
    ``batch_correction``, and with the approximate index ``recall`` (:func:`knn_recall` on
    1,000 cells).

    Raises
    ------
    InputError
        Fewer than ``n_neighbors + 1`` cells (:func:`check_cell_count`); a batch key whose
        column is missing, has missing values or one value; an unknown ``batch_correction``.
    """
    check_cell_count(adata.n_obs, n_neighbors=n_neighbors)
    batches = None
    if batch_key is not None:
        if batch_correction not in BATCH_CORRECTIONS:
            raise InputError(
                f"graph.batch_correction = {batch_correction!r}; expected one of "
                f"{', '.join(map(repr, BATCH_CORRECTIONS))}"
            )
        batches = check_batch_key(adata.obs, batch_key)
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    x_pca = pca(x, n_pcs, seed=seed)
    use_rep, x_graph = "X_pca", x_pca
    if batches is not None and batch_correction == "harmony":
        use_rep = "X_pca_harmony"
        x_graph = harmony_correct(x_pca, batches, seed=seed, n_jobs=n_jobs)
        logger.info(
            "Graph: Harmony on %d PCs across the %d batches of obs['%s']",
            x_pca.shape[1],
            len(batches.categories),
            batch_key,
        )
    neighbors = knn_indices(
        x_graph,
        n_neighbors,
        method=method,
        exact_max_cells=exact_max_cells,
        seed=seed,
        n_jobs=n_jobs,
    )
    a = knn_adjacency(neighbors)
    backend = knn_backend(x.shape[0], method, exact_max_cells)
    exact = backend != "approximate"
    out = adata.copy()
    out.obsm["X_pca"] = x_pca
    if use_rep != "X_pca":
        out.obsm[use_rep] = x_graph
    out.obsp["knn"] = a
    out.uns["scdsec_graph"] = {
        "n_neighbors": int(n_neighbors),
        "n_pcs": int(x_pca.shape[1]),
        "method": backend,
        "n_edges": int(a.nnz // 2),
        "seed": int(seed),
        "use_rep": use_rep,
    }
    if batch_key is not None:
        out.uns["scdsec_graph"].update(batch_key=batch_key, batch_correction=batch_correction)
    if not exact:
        recall = knn_recall(x_graph, neighbors, seed=seed)
        out.uns["scdsec_graph"]["recall"] = recall
        logger.info("Graph: approximate kNN, recall %.4f against exact search", recall)
    logger.info(
        "Graph: %d cells, K=%d, %d undirected edges (%.1f per cell)",
        a.shape[0],
        n_neighbors,
        a.nnz // 2,
        a.nnz / a.shape[0],
    )
    return out
