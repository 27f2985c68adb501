"""The ensemble option: the sparse consensus of several clusterings, and tl.cluster(n_runs=...)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from scdsec import pp, tl
from scdsec.consensus import consensus_labels, ensemble_seeds, membership_matrix

FAST = {"model": {"dims": [32, 8]}, "train": {"pretrain_epochs": 10, "epochs": 10}}


def test_membership_matrix_is_sparse_and_its_distances_count_disagreements():
    runs = [np.array([0, 0, 1, 1]), np.array(["a", "b", "b", "b"])]
    h = membership_matrix(runs)
    assert h.shape == (4, 4) and h.nnz == 8
    dense = h.toarray()
    squared = ((dense[:, None, :] - dense[None, :, :]) ** 2).sum(axis=2)
    together = np.mean([r[:, None] == r[None, :] for r in runs], axis=0)
    np.testing.assert_allclose(squared, 2 * (1 - together))


def test_consensus_recovers_the_partition_that_noisy_runs_share():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), [500, 200, 50, 10])  # one large type, one rare
    runs = []
    for _ in range(7):  # each run relabels and moves 15% of the cells to a random cluster
        noisy = rng.permutation(4)[truth]
        moved = rng.random(len(truth)) < 0.15
        noisy[moved] = rng.integers(0, 4, moved.sum())
        runs.append(noisy)
    labels, agreement = consensus_labels(runs, 4, seed=0)
    assert adjusted_rand_score(truth, labels) > 0.99
    assert max(adjusted_rand_score(truth, run) for run in runs) < 0.8
    assert np.bincount(labels)[0] == np.bincount(labels).max()  # cluster 0 is the largest
    assert agreement.shape == (len(truth),) and 0.8 < agreement.mean() < 0.95
    again, _ = consensus_labels(runs, 4, seed=0)
    np.testing.assert_array_equal(labels, again)


def test_consensus_of_identical_runs_is_the_run_with_full_agreement():
    run = np.array([2, 2, 0, 0, 1, 1, 1])
    labels, agreement = consensus_labels([run, run, run], 3)
    assert adjusted_rand_score(run, labels) == 1.0
    np.testing.assert_array_equal(agreement, 1.0)


@pytest.mark.parametrize(
    ("runs", "k", "message"),
    [
        ([], 2, "at least one"),
        ([[0, 1, 1], [0, 1]], 2, "different numbers of cells"),
        ([[0, 1, 1]], 4, "n_clusters must lie"),
    ],
)
def test_consensus_rejects_bad_input(runs, k, message):
    with pytest.raises(ValueError, match=message):
        consensus_labels(runs, k)


def test_ensemble_seeds_do_not_overlap_between_ensembles():
    assert ensemble_seeds(0, 1) == [0] and ensemble_seeds(4, 1) == [4]
    assert ensemble_seeds(2, 3) == [6, 7, 8]
    assert not set(ensemble_seeds(0, 3)) & set(ensemble_seeds(1, 3))
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="integer of at least 1"):
            ensemble_seeds(0, bad)


def test_tl_cluster_with_an_ensemble_stores_runs_and_consensus(small_counts):
    adata = pp.prepare(
        small_counts, normalize_params={"n_top_genes": 150}, graph={"n_neighbors": 10, "n_pcs": 20}
    )
    tl.cluster(adata, 4, params=FAST, seed=1, n_runs=3, device="cpu", threads=1)
    for r, run_seed in enumerate([3, 4, 5]):
        assert adata.uns[f"scdsec_run{r}"]["seed"] == run_seed
    record = adata.uns["scdsec"]
    assert record["n_runs"] == 3 and record["run_seeds"] == [3, 4, 5] and record["seed"] == 1
    assert record["consensus_of"] == ["scdsec_run0", "scdsec_run1", "scdsec_run2"]
    assert "torch" in record["provenance"]["versions"]
    labels = adata.obs["scdsec"]
    assert list(labels.cat.categories) == ["0", "1", "2", "3"]
    assert adata.obs["scdsec_agreement"].between(0, 1).all()
    truth = adata.obs["scdsec_true_label"].to_numpy()
    runs = [adjusted_rand_score(truth, adata.obs[f"scdsec_run{r}"]) for r in range(3)]
    assert adjusted_rand_score(truth, labels) >= min(runs)
    np.testing.assert_array_equal(adata.obsm["X_scdsec"], adata.obsm["X_scdsec_run0"])
    assert record["device"] == "cpu" and record["threads"] == 1
    with pytest.raises(KeyError, match="nope"):
        tl.consensus(adata, ["scdsec_run0", "nope"], 4)
    with pytest.raises(TypeError, match="list of obs columns"):
        tl.consensus(adata, "scdsec_run0", 4)
    with pytest.raises(ValueError, match="integer"):
        tl.consensus(adata, ["scdsec_run0", "scdsec_run1"], "auto")
    with pytest.raises(ValueError, match="cannot outvote"):
        tl.cluster(adata, 4, params=FAST, n_runs=2)
    # a single run afterwards leaves nothing of the ensemble behind
    tl.cluster(adata, 4, params=FAST, seed=1, device="cpu", threads=1)
    left = [*adata.obs, *adata.obsm, *adata.uns]
    assert not [name for name in left if "_run" in name or name == "scdsec_agreement"]
    assert "consensus_of" not in adata.uns["scdsec"] and adata.uns["scdsec"]["seed"] == 1
