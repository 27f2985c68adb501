"""The demo simulator: seeded, realistic sparsity, not trivially separable, set proportions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from scdsec.simulate import simulate_counts, type_sizes

RARE = [0.5, 0.2, 0.1, 0.07, 0.05, 0.05, 0.01, 0.01, 0.01]


def sizes_of(adata) -> list[int]:
    """Cells per type, type1 first."""
    counts = adata.obs["cell_type"].value_counts()
    return [int(counts[f"type{k + 1}"]) for k in range(adata.uns["simulation"]["n_types"])]


def digest(adata) -> str:
    """sha256 of the counts (CSR data, indices, indptr), the cell types and the names."""
    h = hashlib.sha256()
    x = adata.X.tocsr()
    for arr in (x.data, x.indices, x.indptr):
        h.update(np.ascontiguousarray(arr).tobytes())
    for names in (adata.obs["cell_type"].astype(str), adata.obs_names, adata.var_names):
        h.update("\n".join(names).encode())
    return h.hexdigest()


def test_same_seed_same_counts_other_seed_other_counts():
    a = simulate_counts(300, 200, 3, seed=5)
    b = simulate_counts(300, 200, 3, seed=5)
    c = simulate_counts(300, 200, 3, seed=6)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0
    assert list(a.obs["cell_type"]) == list(b.obs["cell_type"])


def test_counts_look_like_droplet_data():
    a = simulate_counts(2000, 2000, 5, seed=0)
    x = a.X.toarray()
    assert (x >= 0).all() and np.array_equal(x, np.round(x))
    assert 0.8 < (x == 0).mean() < 0.97
    totals = x.sum(axis=1)
    assert 300 < np.median(totals) < 3000
    assert totals.std() / totals.mean() > 0.3  # library sizes vary
    sizes = a.obs["cell_type"].value_counts()
    assert len(sizes) == 5 and sizes.max() > 1.3 * sizes.min()
    assert a.var_names[0].startswith("MT-")


@pytest.mark.slow
def test_default_is_not_trivially_separable_but_separation_helps():
    """scanpy's standard Leiden lands well below ARI 1 on the default, and near 1 when easy."""
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    def leiden_ari(separation: float) -> float:
        a = simulate_counts(3000, 2000, 6, seed=0, separation=separation)
        sc.pp.filter_genes(a, min_cells=30)
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.highly_variable_genes(a, n_top_genes=1000)
        a = a[:, a.var["highly_variable"]].copy()
        sc.pp.scale(a, max_value=10)
        sc.pp.pca(a, n_comps=50)
        sc.pp.neighbors(a)
        sc.tl.leiden(a, resolution=1.0, flavor="igraph", n_iterations=2, random_state=0)
        return adjusted_rand_score(a.obs["cell_type"], a.obs["leiden"])

    default = leiden_ari(0.45)
    assert 0.3 < default < 0.9
    assert leiden_ari(1.0) > 0.95


def test_default_demo_data_are_unchanged():
    """The values of the default (the embedded demo) before ``proportions`` existed."""
    a = simulate_counts(seed=0)
    assert a.X.dtype == np.float32 and a.X.nnz == 736_622 and a.X.sum() == 1_862_673
    assert sizes_of(a) == [238, 565, 911, 484, 411, 391]
    assert digest(a) == "e4913903846856560f2d0777e44c3287320a4824aae025e93612df38e9d1368e"
    assert a.uns["simulation"]["proportions"] == "none"
    weights = a.uns["simulation"]["weights"]
    assert len(weights) == 6 and np.isclose(sum(weights), 1.0)
    b = simulate_counts(300, 200, 3, seed=5, proportions=None)
    assert digest(b) == "629892bd9dd99e0508d055af09daacf7279d99573156d121226a59cedf786c56"


def test_proportions_set_the_type_sizes_exactly():
    a = simulate_counts(2000, 100, 9, seed=0, proportions=RARE)
    assert sizes_of(a) == [1000, 400, 200, 140, 100, 100, 20, 20, 20]
    assert a.uns["simulation"]["proportions"] == RARE
    assert np.allclose(a.uns["simulation"]["weights"], RARE)
    # Weights are normalised; an array works like a list.
    b = simulate_counts(2000, 100, 9, seed=0, proportions=np.array(RARE) * 7)
    assert sizes_of(b) == sizes_of(a) and (a.X != b.X).nnz == 0
    assert np.allclose(b.uns["simulation"]["weights"], RARE)


def test_rounding_is_largest_remainder_with_one_cell_per_type():
    assert type_sizes([1 / 3, 1 / 3, 1 / 3], 100).tolist() == [34, 33, 33]
    assert type_sizes([0.25, 0.35, 0.4], 10).tolist() == [3, 3, 4]  # 2.5, 3.5, 4.0
    # Quotas 4/3, 4/3, 22/3: a tie that goes to the first type, not to the floating-point
    # noise of 0.55 / 0.75 * 10 = 7.333333333333334.
    assert sizes_of(simulate_counts(10, 20, 3, proportions=[0.1, 0.1, 0.55])) == [2, 1, 7]
    # 9.8, 0.1, 0.1 → 10, 0, 0 → the empty types each take a cell from the first.
    assert type_sizes([0.98, 0.01, 0.01], 10).tolist() == [8, 1, 1]
    a = simulate_counts(100, 50, 3, seed=1, proportions=[1, 0, 0])
    assert sizes_of(a) == [98, 1, 1]
    assert a.uns["simulation"]["weights"] == [1.0, 0.0, 0.0]
    assert sizes_of(simulate_counts(3, 50, 3, proportions=[0.999, 0.0005, 0.0005])) == [1, 1, 1]
    for n_cells in (9, 10, 101, 2001):
        assert type_sizes(np.array(RARE), n_cells).sum() == n_cells


@pytest.mark.parametrize(
    ("proportions", "message"),
    [
        ([0.5, 0.5], "one value per type"),
        ([0.5, 0.3, 0.2, 0.0], "one value per type"),
        ([0.5, -0.1, 0.6], ">= 0"),
        ([0, 0, 0], "all be zero"),
        ([0.5, float("nan"), 0.5], "finite"),
        ([0.5, float("inf"), 0.5], "finite"),
        ([[0.5, 0.3, 0.2]], "flat"),
        (["a", "b", "c"], "numbers"),
        (0.0, "concentration"),
        (-1.0, "concentration"),
        (float("inf"), "concentration"),
        ("0.5,0.3,0.2", "proportions"),
        (True, "proportions"),
    ],
)
def test_bad_proportions_raise_naming_the_argument(proportions, message):
    with pytest.raises(ValueError, match="proportions") as err:
        simulate_counts(60, 20, 3, proportions=proportions)
    assert message in str(err.value)


def test_dirichlet_proportions_are_seeded_and_small_a_is_imbalanced():
    a = simulate_counts(2000, 100, 10, seed=4, proportions=0.1)
    b = simulate_counts(2000, 100, 10, seed=4, proportions=0.1)
    c = simulate_counts(2000, 100, 10, seed=5, proportions=0.1)
    assert (a.X != b.X).nnz == 0 and list(a.obs["cell_type"]) == list(b.obs["cell_type"])
    assert a.uns["simulation"]["weights"] == b.uns["simulation"]["weights"]
    assert a.uns["simulation"]["weights"] != c.uns["simulation"]["weights"]
    assert a.uns["simulation"]["proportions"] == 0.1
    # Sizes follow the drawn weights exactly; every type keeps a cell.
    sizes = sizes_of(a)
    assert sizes == type_sizes(a.uns["simulation"]["weights"], 2000).tolist()
    assert min(sizes) >= 1 and max(sizes) > 1000
    even = sizes_of(simulate_counts(2000, 100, 10, seed=4, proportions=1000.0))
    assert max(even) < 240 and min(even) > 160


def test_counts_are_drawn_in_chunks_of_cells(monkeypatch):
    """Above CHUNK_CELLS cells the draws come block by block; each block is like the others."""
    import scdsec.simulate as simulate

    whole = simulate.simulate_counts(600, 100, 3, seed=5)
    monkeypatch.setattr(simulate, "CHUNK_CELLS", 250)  # three blocks: 250, 250, 100
    chunked = simulate.simulate_counts(600, 100, 3, seed=5)
    assert chunked.shape == whole.shape and list(chunked.obs_names) == list(whole.obs_names)
    sizes = chunked.obs["cell_type"].value_counts().sort_index()
    assert sizes.equals(whole.obs["cell_type"].value_counts().sort_index())  # drawn before counts
    per_cell = np.asarray(chunked.X.sum(axis=1)).ravel()
    expected = np.asarray(whole.X.sum(axis=1)).ravel()
    assert abs(np.median(per_cell) / np.median(expected) - 1) < 0.1  # same distribution
    assert abs(chunked.X.nnz / whole.X.nnz - 1) < 0.05
    # one thread or several: the same counts (each block has its own child generator)
    monkeypatch.setattr(simulate.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    alone = simulate.simulate_counts(600, 100, 3, seed=5)
    assert (alone.X != chunked.X).nnz == 0


def test_imbalanced_subset_gives_half_to_the_largest_type_and_little_to_three_rare_ones():
    from scdsec.simulate import imbalanced_subset

    labels = np.repeat(list("abcdefg"), [500, 420, 380, 300, 250, 200, 150])
    chosen = imbalanced_subset(labels, seed=3)
    assert np.all(np.diff(chosen) > 0) and len(np.unique(chosen)) == len(chosen)
    types, counts = np.unique(labels[chosen], return_counts=True)
    sizes = dict(zip(types, counts, strict=True))
    assert sizes["a"] == 500 and len(chosen) == 1000  # every cell of the largest, half of all
    rare = [t for t, n in sizes.items() if n <= 0.02 * len(chosen)]
    assert len(rare) == 3 and all(sizes[t] == 20 for t in rare)
    assert set(types) == set("abcdefg")  # the other types share the rest
    again = imbalanced_subset(labels, seed=3)
    assert np.array_equal(chosen, again)  # one draw per seed
    assert not np.array_equal(chosen, imbalanced_subset(labels, seed=4))
    with pytest.raises(ValueError, match="too few to make 3 rare"):
        imbalanced_subset(list("aabbc"))
