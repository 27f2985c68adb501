"""Clustering measures against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from scdsec.metrics import (
    accuracy,
    label_scores,
    largest_type_kept,
    matched_clusters,
    silhouette,
)


def test_permuted_labels_score_perfectly():
    truth = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    pred = np.array([2] * 5 + [0] * 3 + [1] * 2)
    scores = label_scores(truth, pred)
    assert scores == pytest.approx({"nmi": 1.0, "ari": 1.0, "acc": 1.0, "ami": 1.0})
    assert matched_clusters(truth, pred) == {2: "a", 0: "b", 1: "c"}


def test_accuracy_by_hand():
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 2, 2, 1])
    # best matching: 1→0 (3 cells), 0→1 (3 cells), 2→2 (2 cells) = 8/10
    assert accuracy(truth, pred) == pytest.approx(0.8)


def test_more_clusters_than_types_caps_accuracy():
    truth = np.array([0] * 6 + [1] * 4)
    pred = np.arange(10) % 5
    assert accuracy(truth, pred) <= 0.5


def test_silhouette_separates_good_from_bad_clusters():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(10, 1, (50, 2))])
    good = np.repeat([0, 1], 50)
    bad = rng.integers(0, 2, 100)
    assert silhouette(x, good) > 0.8 > silhouette(x, bad)
    assert np.isnan(silhouette(x, np.zeros(100)))


def test_largest_type_kept():
    truth = ["a"] * 6 + ["b"] * 2
    assert largest_type_kept(truth, [0] * 8) == 1.0
    assert largest_type_kept(truth, [0, 0, 0, 1, 1, 1, 2, 2]) == 0.5
    assert largest_type_kept(truth, [0, 0, 0, 0, 1, 2, 2, 2]) == pytest.approx(4 / 6)
