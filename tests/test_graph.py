"""Properties of the cell structure graph (docs/method.md §2)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from scdsec import InputError
from scdsec.graph import (
    build_knn_graph,
    check_cell_count,
    knn_adjacency,
    knn_indices,
    knn_recall,
)
from scdsec.preprocessing import normalize, qc_filter


@pytest.fixture
def normalized(small_counts):
    return normalize(qc_filter(small_counts), n_top_genes=200)


def test_graph_is_symmetric_sparse_binary_without_self_loops(normalized):
    k = 15
    out = build_knn_graph(normalized, n_neighbors=k, n_pcs=20)
    a = out.obsp["knn"]
    assert sp.issparse(a) and a.shape == (normalized.n_obs,) * 2
    assert (a != a.T).nnz == 0
    assert a.diagonal().sum() == 0
    assert set(np.unique(a.data)) == {1.0}
    a.sum_duplicates()
    degree = np.diff(a.indptr)
    assert degree.min() >= k
    assert a.nnz == np.asarray(a.sum()).item()  # no duplicated entries hiding in the data
    assert out.obsm["X_pca"].shape == (normalized.n_obs, 20)
    assert out.uns["scdsec_graph"]["n_edges"] == a.nnz // 2
    assert "knn" not in normalized.obsp, "the input must not be modified"


def test_neighbours_are_the_nearest_cells():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    idx = knn_indices(x, 7, method="exact")
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    for i in range(0, 120, 17):
        np.testing.assert_array_equal(np.sort(idx[i]), np.sort(np.argsort(d[i])[:7]))


def test_duplicate_cells_do_not_become_self_loops():
    x = np.zeros((10, 3), dtype=np.float32)  # all cells identical
    idx = knn_indices(x, 4, method="exact")
    assert all(i not in row for i, row in enumerate(idx))
    a = knn_adjacency(idx)
    assert a.diagonal().sum() == 0


@pytest.mark.slow
def test_approximate_index_agrees_with_exact_mostly(normalized):
    x = build_knn_graph(normalized, n_neighbors=10, n_pcs=20).obsm["X_pca"]
    exact = knn_indices(x, 10, method="exact")
    approx = knn_indices(x, 10, method="approximate", seed=0)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx, strict=True)])
    assert overlap > 0.9
    # knn_recall measures the same on a sample, and 1.0 for the exact lists
    assert knn_recall(x, exact, n_sample=50) == 1.0
    assert abs(knn_recall(x, approx, n_sample=len(x)) - overlap) < 1e-9
    assert abs(knn_recall(x, approx, n_sample=100) - overlap) < 0.05
    # the graph step records the recall when it uses the approximate index
    graph = build_knn_graph(normalized, n_neighbors=10, n_pcs=20, method="approximate")
    assert graph.uns["scdsec_graph"]["recall"] > 0.9
    assert "recall" not in build_knn_graph(normalized, n_neighbors=10).uns["scdsec_graph"]


def test_too_few_cells_for_k_is_an_error():
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_indices(np.zeros((5, 2)), 5)


def test_cells_must_number_k_plus_one_and_n_clusters():
    """The one check of the command line and the workflow (case 05): K + 1 cells, K clusters."""
    check_cell_count(51, n_neighbors=50, n_clusters=51)
    check_cell_count(3, n_neighbors=None, n_clusters="auto")
    named = {"where": "dataset tiny", "cells": "cells after QC"}
    with pytest.raises(InputError) as err:
        check_cell_count(40, n_neighbors=50, neighbors_key="graph.n_neighbors", **named)
    line = str(err.value)
    assert line.startswith("dataset tiny: 40 cells after QC") and "\n" not in line
    assert "graph.n_neighbors = 50" in line and "at most 39" in line
    with pytest.raises(InputError, match=r"datasets\.tiny\.n_clusters = 41.*at most 40"):
        check_cell_count(40, n_clusters=41, clusters_key="datasets.tiny.n_clusters", **named)
    with pytest.raises(InputError, match="n_neighbors = 50"):
        build_knn_graph(ad.AnnData(np.zeros((50, 4), dtype=np.float32)), n_neighbors=50)


@pytest.mark.slow
def test_more_than_10000_cells_graph_and_scanpy_neighbors():
    """Guards the pins: scanpy 1.11.5 with pynndescent 0.7 crashed in sc.pp.neighbors
    above ~8,600 cells."""
    import scanpy as sc

    from scdsec.simulate import simulate_counts

    adata = normalize(qc_filter(simulate_counts(12_000, 400, 5, seed=3)), n_top_genes=200)
    out = build_knn_graph(adata, n_neighbors=30, n_pcs=20)
    a = out.obsp["knn"]
    assert a.shape == (12_000, 12_000) and (a != a.T).nnz == 0
    assert np.diff(a.indptr).min() >= 30
    sc.pp.neighbors(out, n_neighbors=15, use_rep="X_pca")
    assert out.obsp["connectivities"].shape == (12_000, 12_000)


def test_chunked_torch_search_equals_the_exact_search():
    from scdsec.graph import knn_backend, knn_indices_torch

    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    exact = knn_indices(x, 7, method="exact")
    # 17 rows a chunk: several chunks and a short last one
    found = knn_indices_torch(x, 8, device="cpu", max_chunk_entries=17 * 300)
    assert (found[:, 0] == np.arange(300)).all()  # each cell is its own nearest
    assert np.array_equal(found[:, 1:], exact)
    assert knn_backend(300, "auto", 1000) == "exact"
    assert knn_backend(300, "approximate", 1000) == "approximate"
    assert knn_backend(3000, "auto", 1000) in ("exact_gpu", "approximate")  # GPU or not
