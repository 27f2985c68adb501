"""Clustering measures against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scdsec import InputError
from scdsec.metrics import (
    MISSING_LABELS,
    accuracy,
    is_missing_label,
    label_scores,
    largest_type_kept,
    matched_clusters,
    score_labelled,
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


# The spellings of "missing" that pandas and R write, as a user's labels hold them.
SPELLINGS = ["NA", "nan", "NaN", "<NA>", "None", "null", "NULL", "N/A", "n/a", "#N/A", " na ", ""]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_missing_label_spellings_are_no_labels(spelling):
    assert is_missing_label(spelling) and spelling.strip().lower() in MISSING_LABELS
    truth = np.array(["a", "b", spelling, "a", "b", "c"], dtype=object)
    scores = score_labelled(truth, [0, 1, 2, 0, 1, 2])
    assert scores["n_unlabelled"] == 1
    assert scores["nmi"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "label", ["unknown", "Unassigned", "0", "NA1", "nana", "Natural killer", "none of these"]
)
def test_words_that_name_a_category_are_labels(label):
    assert not is_missing_label(label)
    assert score_labelled(["a", label, "a"], [0, 1, 0])["n_unlabelled"] == 0


def test_all_missing_spellings_name_the_key():
    with pytest.raises(InputError, match="'cell_type'.*missing"):
        score_labelled(["NA", "nan", "<NA>"], [0, 1, 1], label_key="cell_type")


def _with_spellings(labels: pd.Series, missing) -> pd.Series:
    """``labels`` (strings) with each missing value written as one of ``SPELLINGS`` in turn."""
    out = labels.astype(object).copy()
    where = np.flatnonzero(missing)
    out.iloc[where] = [SPELLINGS[i % len(SPELLINGS)] for i in range(len(where))]
    return out


def test_labels_spelled_missing_in_a_table_are_left_out(tmp_path):
    from scdsec.io import read_counts

    rng = np.random.default_rng(0)
    counts = pd.DataFrame(
        rng.poisson(2, (60, 20)), columns=[f"gene{i}" for i in range(20)]
    ).set_axis([f"cell{i}" for i in range(60)])
    truth = pd.Series(rng.choice(["T", "B", "NK"], 60), index=counts.index)
    missing = np.arange(60) % 5 == 0
    counts.insert(0, "cell_type", _with_spellings(truth, missing))
    path = tmp_path / "cells.csv"
    counts.to_csv(path, index_label="cell", na_rep="NA")  # as R's write.csv writes NA
    adata = read_counts(path, labels="cell_type", cells_as="rows")
    pred = rng.integers(0, 3, 60)
    scores = score_labelled(adata.obs["scdsec_true_label"], pred)
    assert scores["n_unlabelled"] == missing.sum()
    assert scores["nmi"] == pytest.approx(label_scores(truth[~missing], pred[~missing])["nmi"])


def test_case_04_labels_spelled_missing_score_as_nan(shared_cases, tmp_path):
    import anndata as ad

    from scdsec.io import read_counts

    source = shared_cases / "04-labels-partly-missing" / "partly_annotated.h5ad"
    adata = ad.read_h5ad(source)
    missing = adata.obs["cell_type"].isna().to_numpy()
    assert missing.sum() == 89
    pred = np.random.default_rng(1).integers(0, 3, adata.n_obs)
    with_nan = score_labelled(
        read_counts(source, labels="cell_type").obs["scdsec_true_label"], pred
    )
    adata.obs["cell_type"] = _with_spellings(adata.obs["cell_type"].astype(object), missing)
    adata.write_h5ad(tmp_path / "spelled.h5ad")
    spelled = read_counts(tmp_path / "spelled.h5ad", labels="cell_type").obs["scdsec_true_label"]
    assert score_labelled(spelled, pred) == pytest.approx(with_nan)
    assert with_nan["n_unlabelled"] == 89
