"""Consensus of several clusterings of the same cells (scDSEC's ensemble option).

Training runs that differ only in their seed cut the data in slightly different places; the
consensus keeps what they agree on. It is computed without the cells × cells co-association
matrix: each run becomes a one-hot block of a sparse membership matrix ``H`` (cells × Σ_r K_r),
scaled so that the squared distance between two cells' rows is ``2 (1 − a_ij)``, where ``a_ij``
is the fraction of runs that put cells ``i`` and ``j`` in the same cluster. k-means on the rows
of ``H`` then finds the K clusters that best keep co-assigned cells together: the consensus
function of Topchy, Jain & Punch (2005, *Clustering ensembles: models of consensus and weak
partitions*, IEEE TPAMI 27:1866), whose co-association view is Strehl & Ghosh (2002, JMLR 3:583).
Memory and time grow linearly with the number of cells.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans


def ensemble_seeds(seed: int, n_runs: int) -> list[int]:
    """The seeds of an ensemble's runs: ``seed · n_runs + r`` for ``r = 0 … n_runs − 1``.

    Ensembles with different seeds (and the same ``n_runs``) share no run; ``n_runs = 1`` is
    the single run ``seed``.
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, numbers.Integral) or n_runs < 1:
        raise ValueError(f"n_runs must be an integer of at least 1, got {n_runs!r}")
    return [seed * n_runs + r for r in range(n_runs)]


def membership_matrix(labelings: Sequence[Sequence]) -> sp.csr_matrix:
    """Sparse one-hot memberships of ``R`` clusterings, each block scaled by ``1/√R``.

    Parameters
    ----------
    labelings
        ``R`` label vectors of the same ``N`` cells (any hashable labels).

    Returns
    -------
    CSR matrix of shape ``(N, Σ_r K_r)`` with ``N · R`` non-zeros, ``K_r`` the number of
    distinct labels of run ``r``.

    Raises
    ------
    ValueError
        No labelings, or labelings of different lengths.
    """
    return _one_hot(_codes(labelings))


def _codes(labelings: Sequence[Sequence]) -> list[np.ndarray]:
    """Each run's labels as codes 0 … K_r − 1; checks that the runs label the same cells."""
    if len(labelings) == 0:
        raise ValueError("consensus needs at least one clustering")
    lengths = {len(labels) for labels in labelings}
    if len(lengths) != 1:
        raise ValueError(f"the clusterings label different numbers of cells: {sorted(lengths)}")
    return [np.unique(np.asarray(labels), return_inverse=True)[1] for labels in labelings]


def _one_hot(codes: list[np.ndarray]) -> sp.csr_matrix:
    n_cells, n_runs = len(codes[0]), len(codes)
    columns, offset = [], 0
    for run in codes:
        columns.append(run + offset)
        offset += run.max() + 1 if n_cells else 0
    rows = np.repeat(np.arange(n_cells), n_runs)
    cols = np.stack(columns, axis=1).ravel()
    values = np.full(len(rows), 1.0 / np.sqrt(n_runs))
    return sp.csr_matrix((values, (rows, cols)), shape=(n_cells, offset))


def consensus_labels(
    labelings: Sequence[Sequence], n_clusters: int, *, seed: int = 0, n_init: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """The consensus clustering of ``R`` clusterings of the same cells, and each cell's agreement.

    Parameters
    ----------
    labelings
        ``R`` label vectors of length ``N`` (e.g. the labels of ``R`` seeds).
    n_clusters
        Number of consensus clusters ``K``.
    seed, n_init
        Seed and restarts of the k-means on the membership matrix (see the module docstring).

    Returns
    -------
    ``labels``, int array of shape ``(N,)`` in ``0 … K − 1`` (cluster 0 the largest), and
    ``agreement``, float array of shape ``(N,)``: the fraction of the runs whose cluster of the
    cell, matched one-to-one to the consensus clusters (Hungarian, on cell counts), is the
    cell's consensus cluster (1: every run agrees). Two runs cannot outvote each other: where
    they disagree, the consensus follows either.

    Raises
    ------
    ValueError
        As :func:`membership_matrix`, or ``n_clusters`` not an integer in ``1 … N``.
    """
    codes = _codes(labelings)
    memberships = _one_hot(codes)
    n_cells = memberships.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}")
    if not 1 <= n_clusters <= n_cells:
        raise ValueError(f"n_clusters must lie in 1 … {n_cells}, got {n_clusters!r}")
    raw = KMeans(n_clusters, n_init=n_init, random_state=seed).fit_predict(memberships)
    order = np.argsort(-np.bincount(raw, minlength=n_clusters), kind="stable")
    labels = np.empty(n_clusters, dtype=np.int64)
    labels[order] = np.arange(n_clusters)
    labels = labels[raw]
    agreement = np.zeros(n_cells)
    for run in codes:
        counts = np.zeros((run.max() + 1, n_clusters))
        np.add.at(counts, (run, labels), 1)
        rows, cols = linear_sum_assignment(-counts)
        matched = np.full(len(counts), -1)
        matched[rows] = cols
        agreement += matched[run] == labels
    return labels, agreement / len(codes)
