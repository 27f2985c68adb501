"""Batch-mixing measures (iLISI, batch entropy) against hand-computed values and harmonypy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scdsec import InputError
from scdsec.metrics import (
    batch_entropy,
    cluster_batch_entropy,
    ilisi,
    ilisi_knn,
    lisi_knn,
)


def two_groups(n: int = 8):
    """Cells 0..n-1 in batch a, n..2n-1 in batch b; each cell's neighbours are the other
    cells of its own group, all at distance 1."""
    cells = np.arange(2 * n)
    group = cells // n
    neighbors = np.array([[c for c in cells if group[c] == group[i] and c != i] for i in cells])
    return neighbors, np.ones(neighbors.shape), np.where(group == 0, "a", "b")


def test_neighbours_of_one_batch_give_lisi_1_and_scaled_0():
    neighbors, distances, batches = two_groups()
    assert lisi_knn(neighbors, distances, batches) == pytest.approx(np.ones(16))
    assert ilisi_knn(neighbors, distances, batches) == pytest.approx(0.0)
    assert ilisi_knn(neighbors, distances, batches, scale=False) == pytest.approx(1.0)


def test_equal_weights_over_two_balanced_batches_give_lisi_2_and_scaled_1():
    # Batches alternate along the cells; each cell's 4 neighbours are two of each batch.
    n = 12
    batches = np.array(["a", "b"] * (n // 2))
    neighbors = np.array([[(i + s) % n for s in (1, 2, 3, 4)] for i in range(n)])
    for distances in (None, np.full((n, 4), 2.5)):
        assert lisi_knn(neighbors, distances, batches) == pytest.approx(np.full(n, 2.0))
        assert ilisi_knn(neighbors, distances, batches) == pytest.approx(1.0)
    # Three batches, one neighbour of each at equal distance: LISI 3, scaled 1.
    batches3 = np.array(["x", "y", "z"] * 4)
    nbrs3 = np.array([[(i + s) % 12 for s in (1, 2, 3)] for i in range(12)])
    assert ilisi_knn(nbrs3, None, batches3, scale=False) == pytest.approx(3.0)
    assert ilisi_knn(nbrs3, None, batches3) == pytest.approx(1.0)


def test_the_cell_itself_is_not_its_own_neighbour():
    # Cell 0 lists itself (distance 0) and one cell of each batch: only the two others count.
    neighbors = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    lisi = lisi_knn(neighbors, None, ["a", "a", "b"])
    assert lisi[0] == pytest.approx(2.0)  # neighbours a and b in equal weight
    assert lisi[1] == pytest.approx(2.0)
    assert lisi[2] == pytest.approx(1.0)  # both neighbours are a


def test_one_cell_by_hand_with_one_bisection_step():
    """Cell 0 has neighbours at distances 0, 2 ln 2 and 2 ln 2, perplexity 2√2.

    beta = 1 (the start): weights 1, 1/4, 1/4 → (2/3, 1/6, 1/6), entropy
    2/3 ln(3/2) + 1/3 ln 6 ≈ 0.868 < ln(2√2) ≈ 1.040: too sharp, so beta halves to 0.5.
    beta = 0.5: weights 1, 1/2, 1/2 → (1/2, 1/4, 1/4), entropy 1/2 ln 2 + 1/2 ln 4
    = 1.5 ln 2 = ln(2√2): found.
    Neighbour 1 is batch a, neighbours 2 and 3 are batch b: p_a = 1/2, p_b = 1/2, Simpson
    1/4 + 1/4 = 1/2, LISI 2. With neighbours a, a, b instead: p_a = 3/4, p_b = 1/4,
    Simpson 9/16 + 1/16 = 5/8, LISI 1.6.
    """
    h_start = 2 / 3 * np.log(3 / 2) + 1 / 3 * np.log(6)
    assert h_start < np.log(2 * np.sqrt(2))
    assert 0.5 * np.log(2) + 0.5 * np.log(4) == pytest.approx(np.log(2 * np.sqrt(2)))
    d = 2 * np.log(2)
    neighbors = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    distances = np.array([[0.0, d, d]] + [[1.0, 1.0, 1.0]] * 3)
    perplexity = 2 * np.sqrt(2)
    lisi = lisi_knn(neighbors, distances, ["a", "a", "b", "b"], perplexity=perplexity)
    assert lisi[0] == pytest.approx(2.0, abs=1e-9)
    lisi = lisi_knn(neighbors, distances, ["b", "a", "a", "b"], perplexity=perplexity)
    assert lisi[0] == pytest.approx(1 / (9 / 16 + 1 / 16), abs=1e-9)


def test_one_cell_by_hand_bandwidth_from_a_root_finder():
    """Distances 1, 2, 4, 7 and perplexity 2.5: the bandwidth solving entropy = ln 2.5,
    found here by Brent's method, gives the same Simpson index as the bisection."""
    from scipy.optimize import brentq

    d = np.array([1.0, 2.0, 4.0, 7.0])

    def weights(beta: float) -> np.ndarray:
        w = np.exp(-beta * d)
        return w / w.sum()

    def entropy(beta: float) -> float:
        p = weights(beta)
        return float(-(p * np.log(p)).sum())

    beta = brentq(lambda b: entropy(b) - np.log(2.5), 1e-6, 50, xtol=1e-14)
    p = weights(beta)
    # Neighbours 1, 2 in batch a; 3, 4 in batch b (the cell itself, 0, is in a).
    expected = 1 / ((p[0] + p[1]) ** 2 + (p[2] + p[3]) ** 2)
    assert 1.0 < expected < 2.0
    neighbors = np.array([[1, 2, 3, 4]] + [[0, 1, 2, 3]] * 4)
    distances = np.vstack([d, np.ones((4, 4))])
    lisi = lisi_knn(neighbors, distances, ["a", "a", "a", "b", "b"], perplexity=2.5)
    assert lisi[0] == pytest.approx(expected, rel=1e-4)
    # Shifting all distances by a constant changes neither the weights nor the LISI.
    shifted = lisi_knn(neighbors, distances + 1e4, ["a", "a", "a", "b", "b"], perplexity=2.5)
    assert shifted[0] == pytest.approx(expected, rel=1e-4)


def test_default_perplexity_is_a_third_of_the_neighbours():
    rng = np.random.default_rng(1)
    neighbors = np.array([rng.permutation([j for j in range(40) if j != i])[:9] for i in range(40)])
    distances = rng.uniform(0, 3, neighbors.shape)
    batches = rng.integers(0, 2, 40)
    default = lisi_knn(neighbors, distances, batches)
    assert default == pytest.approx(lisi_knn(neighbors, distances, batches, perplexity=3))
    assert not np.allclose(default, lisi_knn(neighbors, distances, batches, perplexity=6))


def test_matches_harmonypy_compute_lisi_cell_by_cell():
    harmonypy = pytest.importorskip("harmonypy")
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    n = 400
    batches = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 5))
    x[:, 0] += 1.5 * batches  # partly separated batches: LISI between 1 and 3
    theirs = harmonypy.compute_lisi(x, pd.DataFrame({"b": batches.astype(str)}), ["b"])[:, 0]
    distances, neighbors = NearestNeighbors(n_neighbors=91).fit(x).kneighbors(x)
    ours = lisi_knn(neighbors[:, 1:], distances[:, 1:], batches, perplexity=30)
    assert 1.2 < np.median(theirs) < 2.8
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ilisi(x, batches) == pytest.approx((np.median(theirs) - 1) / 2, rel=1e-6)
    assert ilisi(x, batches, scale=False) == pytest.approx(np.median(theirs), rel=1e-6)


def test_ilisi_of_an_embedding_separates_mixed_from_split_batches():
    rng = np.random.default_rng(0)
    n = 300
    batches = np.repeat(["donor1", "donor2"], n // 2)
    mixed = rng.normal(size=(n, 4))
    split = mixed + np.where(batches == "donor1", 0.0, 20.0)[:, None]
    assert ilisi(mixed, batches) > 0.85
    assert ilisi(split, batches) == pytest.approx(0.0, abs=1e-9)
    # Fewer cells than neighbours: every other cell is one.
    assert 0.0 <= ilisi(mixed[:30], batches[::10]) <= 1.0


def test_bad_inputs_are_refused_with_a_clear_message():
    neighbors, distances, batches = two_groups(4)
    with pytest.raises(InputError, match="at least 2 batches"):
        ilisi_knn(neighbors, distances, ["a"] * 8)
    with pytest.raises(InputError, match="no batch"):
        ilisi_knn(neighbors, distances, ["a", None] * 4)
    with pytest.raises(InputError, match="shape"):
        ilisi_knn(neighbors[:, :2], distances, batches)
    with pytest.raises(InputError, match="finite"):
        ilisi_knn(neighbors, -distances, batches)
    with pytest.raises(InputError, match="indices"):
        ilisi_knn(neighbors + 8, distances, batches)
    with pytest.raises(InputError, match="5 values for 8 cells"):
        ilisi(np.zeros((8, 2)), ["a", "b", "a", "b", "a"])
    with pytest.raises(InputError, match="NaN"):
        ilisi(np.full((8, 2), np.nan), batches)


def test_cluster_batch_entropy_by_hand():
    # Cluster 0: 4 cells, 2 of a and 2 of b → entropy ln 2 / ln 2 = 1.
    # Cluster 1: 3 cells, all b → 0.
    # Cluster 10: 4 cells, 3 of a, 1 of b → −(¾ ln ¾ + ¼ ln ¼) / ln 2 ≈ 0.8113.
    labels = [0, 0, 0, 0, 1, 1, 1, 10, 10, 10, 10]
    batches = ["a", "b", "a", "b", "b", "b", "b", "a", "a", "a", "b"]
    table = cluster_batch_entropy(labels, batches)
    assert list(table.index) == ["0", "1", "10"]
    assert list(table.columns) == ["n_cells", "a", "b", "entropy"]
    assert table["n_cells"].tolist() == [4, 3, 4]
    assert table["a"].tolist() == pytest.approx([0.5, 0.0, 0.75])
    h10 = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)
    assert table["entropy"].tolist() == pytest.approx([1.0, 0.0, h10])
    assert not np.signbit(table.loc["1", "entropy"])  # 0, not -0
    assert batch_entropy(labels, batches) == pytest.approx((4 * 1.0 + 3 * 0.0 + 4 * h10) / 11)


def test_cluster_batch_entropy_divides_by_every_batch_of_the_data():
    # Three batches in the data; a cluster of equal parts of two of them: ln 2 / ln 3.
    labels = ["c1", "c1", "c2", "c2", "c2"]
    batches = ["p1", "p2", "p3", "p3", "p3"]
    table = cluster_batch_entropy(labels, batches)
    assert list(table.columns) == ["n_cells", "p1", "p2", "p3", "entropy"]
    assert table.loc["c1", "entropy"] == pytest.approx(np.log(2) / np.log(3))
    assert table.loc["c2", "entropy"] == 0.0
    assert table.loc["c1", ["p1", "p2", "p3"]].tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_batch_entropy_refuses_one_batch_and_mismatched_lengths():
    with pytest.raises(InputError, match="at least 2 batches"):
        batch_entropy([0, 1, 1], ["a", "a", "a"])
    with pytest.raises(InputError, match="2 values for 3 cells"):
        batch_entropy([0, 1, 1], ["a", "b"])
    with pytest.raises(InputError, match="named"):
        cluster_batch_entropy([0, 1], ["entropy", "b"])
