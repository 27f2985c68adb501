"""Clustering quality measures: with true labels (NMI, ARI, ACC, AMI) and without (silhouette).

:func:`score_labelled` is the one place that decides which cells the label measures are
computed on (the labelled ones, :func:`labelled_cells`); ``scdsec cluster --labels`` (its
``metrics.json``) and the workflow's evaluation (``results/{dataset}/metrics.tsv``, through
:mod:`scdsec.evaluate`) both call it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from ._errors import InputError

#: The label measures of :func:`label_scores` and :func:`score_labelled`, in this order.
LABEL_MEASURES = ("nmi", "ari", "acc", "ami")

#: Strings that mean a missing label, compared after stripping white space and ignoring case:
#: pandas' ``read_csv`` default ``na_values`` — what R's ``write.csv`` writes for a missing
#: value (``NA``), what pandas and Python print for one (``nan``, ``<NA>``, ``None``), the
#: spreadsheet and database spellings (``#N/A``, ``NULL``) — and ``NaT``. Words that name a
#: category, such as ``unknown`` or ``unassigned``, stay labels: a study may call cells that.
MISSING_LABELS = frozenset(
    s.lower()
    for s in (
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "NaT",
    )
)  # fmt: skip


def is_missing_label(value: object) -> bool:
    """Whether one label value means "no label": a missing value (NaN, None, ``pd.NA``,
    NaT) or a string in :data:`MISSING_LABELS` (empty or white space, ``NA``, ``nan``,
    ``<NA>``, ``None``, ``null``, ``N/A`` …, any case)."""
    if isinstance(value, str):
        return value.strip().lower() in MISSING_LABELS
    if isinstance(value, bytes):
        return is_missing_label(value.decode(errors="replace"))
    return bool(pd.isna(value)) if np.ndim(value) == 0 else False


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
    """NMI, ARI, ACC and AMI of ``pred`` against ``truth``, on every cell given.

    Missing labels are not left out here (NaN would become the type ``"nan"``): to score
    partly labelled cells use :func:`score_labelled`.
    """
    truth = np.asarray(truth).astype(str)
    pred = np.asarray(pred).astype(str)
    return {
        "nmi": float(skm.normalized_mutual_info_score(truth, pred)),
        "ari": float(skm.adjusted_rand_score(truth, pred)),
        "acc": accuracy(truth, pred),
        "ami": float(skm.adjusted_mutual_info_score(truth, pred)),
    }


def labelled_cells(truth, *, label_key: str = "label") -> np.ndarray:
    """Which cells carry a true label.

    A cell is unlabelled when its label is missing (NaN, None, ``pd.NA``, NaT) or a string
    that spells a missing value as pandas and R write one (:data:`MISSING_LABELS`: empty or
    white space, ``NA``, ``NaN``, ``nan``, ``<NA>``, ``None``, ``null``, ``N/A`` …, any case;
    :func:`is_missing_label`); every other value, ``unknown`` included, is a label.

    Parameters
    ----------
    truth
        The true label of each cell: any 1-D array-like of length ``n_cells`` (a pandas
        Series or Categorical, a NumPy array, a list).
    label_key
        The name of the labels where the user gave them (``--labels``, the dataset's
        ``labels``); only used in the error message.

    Returns
    -------
    Boolean array of shape ``(n_cells,)``, True for the labelled cells.

    Raises
    ------
    InputError
        When no cell is labelled (also when there are no cells).
    """
    values = np.asarray(pd.Series(truth).astype(object), dtype=object).ravel()
    labelled = np.fromiter((not is_missing_label(v) for v in values), dtype=bool, count=len(values))
    if not labelled.any():
        raise InputError(
            f"no cell has a true label in {label_key!r}: all {len(values)} are missing "
            "(NaN, None, empty, NA, nan, null …), so there is nothing to score against"
        )
    return labelled


def score_labelled(truth, pred, *, label_key: str = "label") -> dict[str, float | int]:
    """The label measures of ``pred`` against ``truth`` on the labelled cells only.

    The one function that decides which cells are scored: the cells that
    :func:`labelled_cells` calls labelled. Unlabelled cells keep their clusters; they are
    only left out of these measures, and counted. (Label-free measures such as
    :func:`silhouette` are not computed here; the workflow computes them on every cell.)

    Parameters
    ----------
    truth
        True label of each cell, 1-D array-like of length ``n_cells``; missing values and
        the strings of :data:`MISSING_LABELS` (empty, ``NA``, ``nan``, ``None``, ``<NA>``,
        ``null`` …) mark unlabelled cells (:func:`labelled_cells`).
    pred
        Cluster of each cell, 1-D array-like of the same length and order.
    label_key
        Name of the labels as the user gave them, for the error message.

    Returns
    -------
    ``{"nmi", "ari", "acc", "ami"}`` (floats; NMI, ARI and AMI from scikit-learn, ACC after
    Hungarian matching, :func:`accuracy`) computed on the labelled cells, and
    ``"n_unlabelled"`` (int): the number of cells left out, 0 when every cell is labelled.

    Raises
    ------
    ValueError
        When ``truth`` and ``pred`` differ in length.
    InputError
        When no cell is labelled; the message names ``label_key``.
    """
    pred = np.asarray(pred).ravel()
    labelled = labelled_cells(truth, label_key=label_key)
    if len(labelled) != len(pred):
        raise ValueError(f"{len(labelled)} true labels but {len(pred)} clusters")
    truth = np.asarray(pd.Series(truth).astype(object), dtype=object).ravel()
    scores: dict[str, float | int] = dict(label_scores(truth[labelled], pred[labelled]))
    scores["n_unlabelled"] = int((~labelled).sum())
    return scores


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
