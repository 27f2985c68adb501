"""Clustering quality measures: with true labels (NMI, ARI, ACC, AMI) and without (silhouette)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm


def contingency(truth, pred) -> pd.DataFrame:
    """Cells per (true type, cluster)."""
    return pd.crosstab(
        pd.Series(np.asarray(truth), name="truth"), pd.Series(np.asarray(pred), name="cluster")
    )


def matched_clusters(truth, pred) -> dict:
    """Hungarian one-to-one matching of clusters to true types maximising agreement.

    Returns ``{cluster: true type}``; clusters left over (more clusters than types) are
    not in the dict.
    """
    table = contingency(truth, pred)
    rows, cols = linear_sum_assignment(-table.to_numpy())
    return {table.columns[c]: table.index[r] for r, c in zip(rows, cols, strict=True)}


def accuracy(truth, pred) -> float:
    """Clustering accuracy: the fraction of cells whose cluster matches its type after matching."""
    truth = np.asarray(truth)
    mapping = matched_clusters(truth, pred)
    mapped = np.array([mapping.get(p, None) for p in np.asarray(pred)], dtype=object)
    return float(np.mean(mapped == truth.astype(object)))


def label_scores(truth, pred) -> dict[str, float]:
    """NMI, ARI, ACC and AMI of ``pred`` against ``truth``."""
    truth = np.asarray(truth).astype(str)
    pred = np.asarray(pred).astype(str)
    return {
        "nmi": float(skm.normalized_mutual_info_score(truth, pred)),
        "ari": float(skm.adjusted_rand_score(truth, pred)),
        "acc": accuracy(truth, pred),
        "ami": float(skm.adjusted_mutual_info_score(truth, pred)),
    }


def largest_type_kept(truth, pred) -> float:
    """The fraction of the largest true type's cells that lie in its most common cluster.

    1 when the largest type is one cluster (or inside one); 0.5 when it is cut in two halves.
    A guard against objectives that favour clusters of equal size.
    """
    table = contingency(truth, pred)
    largest = table.sum(axis=1).idxmax()
    return float(table.loc[largest].max() / table.loc[largest].sum())


def silhouette(embedding: np.ndarray, pred, *, sample_size: int = 5000, seed: int = 0) -> float:
    """Silhouette of ``pred`` in ``embedding`` (on a seeded sample of cells when large).

    NaN when there is a single cluster.
    """
    pred = np.asarray(pred)
    if len(np.unique(pred)) < 2:
        return float("nan")
    n = min(sample_size, len(pred))
    return float(skm.silhouette_score(embedding, pred, sample_size=n, random_state=seed))
