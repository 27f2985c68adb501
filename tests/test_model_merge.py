"""The clustering stage's merges: the criteria's invariants, a split large type merged back,
``auto`` on a case of known K, and the stage inside training (scdsec/model/_merge.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from test_model_training import TINY, make_prepared_adata

from scdsec import InputError
from scdsec.model import SCDSEC, TrainParams
from scdsec.model._merge import DISTINCT_BELOW, ClusterStatistics, merge_clusters
from scdsec.model._training import merge_epochs, starting_centers

CRITERIA = ("connectivity", "modularity", "separation")


def knn_graph(points: np.ndarray, k: int = 10) -> sp.csr_matrix:
    """Binary kNN graph symmetrised by union, as the graph step builds it."""
    neighbors = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)[1][:, 1:]
    rows = np.repeat(np.arange(len(points)), k)
    graph = sp.csr_matrix((np.ones(rows.size), (rows, neighbors.ravel())), (len(points),) * 2)
    return graph.maximum(graph.T).tocsr()


def blobs(sizes, seed=0, spread=0.6):
    """Gaussian types in 5-d whose centres lie 4 apart (far beyond their spread)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), 5))
    centres *= (
        4
        / np.linalg.norm(centres[:, None] - centres[None], axis=2)[
            np.triu_indices(len(sizes), 1)
        ].min()
    )
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return centres[truth] + rng.normal(scale=spread, size=(len(truth), 5)), truth


@pytest.fixture(scope="module")
def split_large_type():
    """One type of 600 cells beside three of 40, and k-means with 8 clusters, which cuts the
    large type into pieces (checked) while the small ones stay whole."""
    points, truth = blobs([600, 40, 40, 40])
    labels = KMeans(8, n_init=10, random_state=0).fit_predict(points)
    assert len(np.unique(labels[truth == 0])) >= 4  # the start cut the large type
    return points, truth, labels, knn_graph(points)


# ---------------------------------------------------------------- the criteria


@pytest.mark.parametrize("criterion", CRITERIA)
def test_similarity_is_symmetric_and_follows_the_clusters_not_their_numbers(criterion):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 4))
    graph = knn_graph(points)
    labels = rng.integers(0, 6, 300)
    score = ClusterStatistics.from_labels(labels, points, graph, 6).similarity(criterion)
    assert np.allclose(score, score.T)
    assert np.all(np.isneginf(np.diag(score)))
    perm = rng.permutation(6)  # cluster c is called perm[c]
    renamed = ClusterStatistics.from_labels(perm[labels], points, graph, 6).similarity(criterion)
    assert np.allclose(renamed[np.ix_(perm, perm)], score)


def test_connectivity_is_chance_level_on_random_clusters_and_zero_between_components():
    rng = np.random.default_rng(1)
    n = 2000
    graph = sp.random(n, n, density=0.01, random_state=2, data_rvs=np.ones)
    graph = (graph + graph.T).sign().tocsr()
    labels = rng.integers(0, 4, n)
    stats = ClusterStatistics.from_labels(labels, rng.normal(size=(n, 3)), graph, 4)
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(stats.similarity("connectivity")[off], 1.0, atol=0.1)
    assert np.allclose(stats.similarity("modularity")[off], 0.0, atol=0.005)
    # two cliques with no edge between them: no connectivity, merging loses modularity
    two = sp.block_diag([np.ones((20, 20)) - np.eye(20)] * 2).tocsr()
    halves = np.repeat([0, 1], 20)
    apart = ClusterStatistics.from_labels(halves, rng.normal(size=(40, 3)), two, 2)
    assert apart.similarity("connectivity")[0, 1] == 0.0
    assert apart.similarity("modularity")[0, 1] < 0


@pytest.mark.parametrize("criterion", CRITERIA)
def test_merged_sums_are_the_sums_of_the_merged_labels(split_large_type, criterion):
    points, _, labels, graph = split_large_type
    stats = ClusterStatistics.from_labels(labels, points, graph, 8)
    result = merge_clusters(stats, criterion, n_clusters=4)
    assert result.n_clusters == 4 and len(result.merges) == 4
    again = ClusterStatistics.from_labels(result.mapping[labels], points, graph, 4)
    kept = np.flatnonzero(stats.active)
    assert np.allclose(stats.sizes[kept], again.sizes)
    assert np.allclose(stats.sum_z[kept], again.sum_z)
    assert np.allclose(stats.sum_squares[kept], again.sum_squares)
    assert np.allclose(stats.edges[np.ix_(kept, kept)], again.edges)
    assert sorted(set(result.mapping)) == [0, 1, 2, 3]


def test_merge_needs_a_stopping_rule():
    stats = ClusterStatistics.from_labels(
        np.array([0, 1]), np.zeros((2, 1)), sp.csr_matrix((2, 2)), 2
    )
    with pytest.raises(ValueError, match="n_clusters or min_similarity"):
        merge_clusters(stats, "modularity")


# ---------------------------------------------------------------- merging back


@pytest.mark.parametrize("criterion", ["connectivity", "separation"])
def test_a_split_large_type_is_merged_back_and_small_types_stay_apart(split_large_type, criterion):
    points, truth, labels, graph = split_large_type
    stats = ClusterStatistics.from_labels(labels, points, graph, 8)
    merged = merge_clusters(stats, criterion, n_clusters=4).mapping[labels]
    assert adjusted_rand_score(truth, merged) == 1.0


def test_modularity_keeps_a_large_type_cut_beside_small_disjoint_ones(split_large_type):
    """Modularity's resolution limit (Fortunato & Barthélemy 2007), as docs/method.md §5 says:
    joining three small types with no edge between them costs less modularity than joining
    the pieces of a type that holds most of the graph."""
    points, truth, labels, graph = split_large_type
    stats = ClusterStatistics.from_labels(labels, points, graph, 8)
    merged = merge_clusters(stats, "modularity", n_clusters=4).mapping[labels]
    assert len(np.unique(merged[truth == 0])) > 1
    assert len(np.unique(merged[truth > 0])) == 1


def test_auto_stops_where_the_clusters_left_are_distinct(split_large_type):
    """No K given: merging while centres lie within a spread of each other finds the types."""
    points, truth, labels, graph = split_large_type
    stats = ClusterStatistics.from_labels(labels, points, graph, 8)
    result = merge_clusters(stats, "separation", min_similarity=DISTINCT_BELOW["separation"])
    assert result.n_clusters == 4
    assert adjusted_rand_score(truth, result.mapping[labels]) == 1.0
    # and a threshold above every pair's similarity merges nothing
    fresh = ClusterStatistics.from_labels(labels, points, graph, 8)
    assert merge_clusters(fresh, "separation", min_similarity=0.0).n_clusters == 8


# ---------------------------------------------------------------- inside training


def test_merge_schedule_fits_the_joint_stage():
    tp = TrainParams(merge_rounds=4, merge_interval=5)
    assert merge_epochs(tp, 50, merging=True) == [5, 10, 15, 20]
    assert merge_epochs(tp, 50, merging=False) == []
    assert merge_epochs(tp, 6, merging=True) == [1, 2, 4, 5]  # spread over the 6 epochs
    assert starting_centers(8, 2.5, 10_000) == 20
    assert starting_centers(8, 2.5, 12) == 12  # at most one centre per cell


def test_overcluster_must_be_at_least_one():
    with pytest.raises(InputError, match="overcluster"):
        TrainParams(overcluster=0.5)
    with pytest.raises(InputError, match="merge_threshold"):
        TrainParams(merge_threshold="high")


@pytest.mark.parametrize("epochs", [12, 0])
def test_training_that_overclusters_ends_with_k_clusters(epochs):
    torch.set_num_threads(1)
    adata = make_prepared_adata(n_cells=150, n_types=3, seed=3)
    model = SCDSEC(adata, 3, seed=0, **TINY)
    model.train(device="cpu", pretrain_epochs=30, epochs=epochs, pretrain_lr=1e-2, overcluster=3)
    assert model.module.assignment.centers.shape == (3, TINY["dims"][-1])
    assert model.n_clusters == 3
    labels = model.predict()
    assert set(labels) <= {0, 1, 2}
    assert adjusted_rand_score(adata.obs["scdsec_true_label"], labels) > 0.8


def test_auto_with_merges_finds_the_types_of_a_clear_case():
    """Three well separated types, started from 3× the Leiden estimate: merges find 3."""
    torch.set_num_threads(1)
    adata = make_prepared_adata(n_cells=240, n_types=3, seed=4)
    model = SCDSEC(adata, "auto", seed=0, **TINY)
    model.train(device="cpu", pretrain_epochs=40, epochs=20, pretrain_lr=1e-2, overcluster=3)
    assert model.n_clusters == 3
    assert adjusted_rand_score(adata.obs["scdsec_true_label"], model.predict()) > 0.9


def test_masked_pretraining_hides_genes_from_the_input_only(monkeypatch):
    """With mask_fraction, pretraining steps see a masked X, the reconstruction term is scored
    against the whole X, and the joint stage sees X unmasked."""
    from scdsec.model import _losses, _training

    adata = make_prepared_adata(n_cells=90, n_types=3, seed=5)
    seen, scored = [], []
    real_forward = SCDSEC(adata, 3, seed=0, **TINY).module.__class__.forward
    real_rec = _losses.reconstruction_mse

    def forward(self, x, adj, size_factors, batch=None):
        seen.append(float((x == 0).float().mean()))
        return real_forward(self, x, adj, size_factors, batch)

    def rec(reconstruction, x):
        scored.append(float((x == 0).float().mean()))
        return real_rec(reconstruction, x)

    monkeypatch.setattr(_training.SCDSECModule, "forward", forward)
    monkeypatch.setattr(_losses, "reconstruction_mse", rec)
    model = SCDSEC(adata, 3, seed=0, **TINY)
    model.train(device="cpu", pretrain_epochs=3, epochs=2, mask_fraction=0.3)
    baseline = float((model._data.x == 0).mean())
    assert all(abs(f - baseline - 0.3) < 0.05 for f in seen[:3])  # pretraining: ~30% hidden
    assert all(abs(f - baseline) < 1e-6 for f in scored)  # scored against all of X
    assert abs(seen[-1] - baseline) < 1e-6  # the joint stage's input is whole


def test_contrastive_term_is_recorded_only_when_on():
    adata = make_prepared_adata(n_cells=90, n_types=3, seed=5)
    on = SCDSEC(adata, 3, seed=0, **TINY).train(
        device="cpu", pretrain_epochs=2, epochs=2, contrastive_weight=0.5, contrastive_pairs=32
    )
    assert on.history["contrastive"].notna().all()
    off = SCDSEC(adata, 3, seed=0, **TINY).train(device="cpu", pretrain_epochs=2, epochs=2)
    assert off.history["contrastive"].isna().all()
