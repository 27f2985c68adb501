"""Over-cluster, then merge: how the clustering stage joins clusters (docs/method.md §5).

DEC's target divides by the cluster's frequency and so favours clusters of equal size (Xie et
al. 2016): started with K centres, it cuts a large cell type into pieces while small types
share one. The clustering stage can instead start from more centres than clusters wanted
(``TrainParams.overcluster``) and join them step by step between epochs of joint training,
always the pair that a criterion calls the most alike, until K are left (or, under
``n_clusters="auto"``, until no pair is alike enough). A type that the start cut into pieces
is joined back, because its pieces are each other's closest pair; rare types stay apart.

Criteria, each a similarity between two clusters a and b (larger: more alike, merged first):

``connectivity``
    kNN edges between a and b over the number a random graph with the same degrees would
    put there, ``w_ab / (d_a d_b / 2m)`` — ``w_ab`` the edges between the clusters, ``d_a``
    the sum of the degrees of a's cells, ``2m`` of all cells. This is the observed-over-expected
    ratio of PAGA's connectivity (Wolf et al. 2019, Genome Biol.) under the configuration
    null model of modularity (Newman 2006): 1 is as connected as chance, 0 not connected.
``modularity``
    The modularity gained by merging, ``2 (w_ab / 2m − d_a d_b / (2m)²)`` — the step of
    greedy modularity agglomeration (Clauset, Newman & Moore 2004): the same observed-minus-
    expected edges, not divided by the expectation, so pieces of a large type (many edges
    between them) merge before a small distinct type; positive while merging raises
    modularity.
``separation``
    Minus the distance between the centres in the learned embedding over the sum of the
    clusters' spreads (root-mean-square distance of their cells to their centre), the
    centre-over-spread rule of scAce's merging (Bioinformatics 2023): −1 is two clusters whose
    centres lie one spread apart.

Everything here works on per-cluster sums (sizes, Σz, Σ‖z‖², the cluster × cluster edge
counts), computed in one pass over the cells and the sparse graph, so a merge costs O(M²)
for M clusters and nothing is cells × cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

MergeCriterion = Literal["connectivity", "modularity", "separation"]

#: The similarity below which two clusters count as distinct, per criterion (``n_clusters``
#: auto stops merging there): as connected as chance, no modularity gained, centres one
#: spread apart.
DISTINCT_BELOW = {"connectivity": 1.0, "modularity": 0.0, "separation": -1.0}


@dataclass
class ClusterStatistics:
    """Sums over each cluster's cells that the merge criteria read; merging adds them up.

    Attributes
    ----------
    sizes
        Cells per cluster, (M,).
    sum_z
        Sum of the cells' embeddings, (M, latent).
    sum_squares
        Sum of the cells' squared norms ``‖z‖²``, (M,).
    edges
        kNN edges between clusters, (M, M), symmetric; ``edges[a, a]`` counts each edge
        inside a twice, so a row sums to the degrees of the cluster's cells.
    active
        Clusters still present (a merged cluster is emptied, not removed), (M,) bool.
    """

    sizes: np.ndarray
    sum_z: np.ndarray
    sum_squares: np.ndarray
    edges: np.ndarray
    active: np.ndarray

    @classmethod
    def from_labels(
        cls, labels: np.ndarray, z: np.ndarray, adjacency: sp.spmatrix, n_clusters: int
    ) -> ClusterStatistics:
        """The sums of clusters 0 … ``n_clusters`` − 1.

        Parameters
        ----------
        labels
            Cluster of each cell, (N,) integers in 0 … n_clusters − 1.
        z
            Embedding, (N, latent).
        adjacency
            The cells' kNN graph, (N, N) sparse, symmetric (weights count as edges).
        n_clusters
            M; clusters without cells are inactive.
        """
        labels = np.asarray(labels)
        n = len(labels)
        z = np.asarray(z, dtype=np.float64)
        if z.shape[0] != n or adjacency.shape != (n, n):
            raise ValueError(
                f"labels ({n}), z ({z.shape[0]}) and adjacency {adjacency.shape} disagree"
            )
        membership = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, n_clusters))
        sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        sum_z = np.asarray(membership.T @ z)
        sum_squares = np.bincount(labels, weights=(z**2).sum(axis=1), minlength=n_clusters)
        edges = (membership.T @ sp.csr_matrix(adjacency) @ membership).toarray()
        return cls(sizes, sum_z, sum_squares, edges, sizes > 0)

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def centers(self) -> np.ndarray:
        """Mean embedding of each cluster, (M, latent); zeros for inactive clusters."""
        return self.sum_z / np.maximum(self.sizes, 1)[:, None]

    def similarity(self, criterion: MergeCriterion) -> np.ndarray:
        """(M, M) similarity of every pair (see the module's docstring); ``-inf`` on the
        diagonal and for inactive clusters."""
        if criterion == "connectivity":
            degrees = self.edges.sum(axis=1)
            expected = np.outer(degrees, degrees) / max(degrees.sum(), 1e-12)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = np.where(expected > 0, self.edges / expected, 0.0)
        elif criterion == "modularity":
            degrees = self.edges.sum(axis=1)
            total = max(degrees.sum(), 1e-12)
            score = 2 * (self.edges / total - np.outer(degrees, degrees) / total**2)
        elif criterion == "separation":
            centers = self.centers()
            mean_square = self.sum_squares / np.maximum(self.sizes, 1)
            spread = np.sqrt(np.maximum(mean_square - (centers**2).sum(axis=1), 0.0))
            distance = np.sqrt(((centers[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
            score = -distance / np.maximum(spread[:, None] + spread[None, :], 1e-12)
        else:
            raise ValueError(f"unknown merge criterion {criterion!r}")
        score = score.astype(np.float64, copy=True)
        np.fill_diagonal(score, -np.inf)
        score[~self.active, :] = -np.inf
        score[:, ~self.active] = -np.inf
        return score

    def merge(self, keep: int, gone: int) -> None:
        """Join cluster ``gone`` into ``keep`` (every sum added; ``gone`` becomes inactive)."""
        if keep == gone or not (self.active[keep] and self.active[gone]):
            raise ValueError(f"cannot merge cluster {gone} into {keep}")
        self.sizes[keep] += self.sizes[gone]
        self.sum_z[keep] += self.sum_z[gone]
        self.sum_squares[keep] += self.sum_squares[gone]
        self.edges[keep, :] += self.edges[gone, :]
        self.edges[:, keep] += self.edges[:, gone]
        self.edges[gone, :] = 0.0
        self.edges[:, gone] = 0.0
        self.sizes[gone] = 0.0
        self.sum_z[gone] = 0.0
        self.sum_squares[gone] = 0.0
        self.active[gone] = False


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_clusters` did.

    Attributes
    ----------
    mapping
        New cluster of each old one, (M,) integers 0 … K' − 1 (the kept clusters in their old
        order); an old cluster without cells maps to the cluster it would have joined, or -1.
    merges
        The merges in order: (kept, joined, similarity) with the old cluster ids.
    n_clusters
        K', the clusters left.
    """

    mapping: np.ndarray
    merges: tuple[tuple[int, int, float], ...]
    n_clusters: int


def merge_clusters(
    stats: ClusterStatistics,
    criterion: MergeCriterion,
    *,
    n_clusters: int | None = None,
    min_similarity: float | None = None,
) -> MergeResult:
    """Join the most alike pair of clusters, step by step, until a stopping rule holds.

    Stops when ``n_clusters`` clusters are left, or when the most alike pair's similarity is
    below ``min_similarity`` (whichever comes first; at least one of the two must be given).
    The larger cluster of a pair keeps its id (ties: the smaller id). ``stats`` is changed in
    place to the sums after the merges.

    Parameters
    ----------
    stats
        The clusters' sums (:meth:`ClusterStatistics.from_labels`).
    criterion
        ``"modularity"``, ``"connectivity"`` or ``"separation"`` (the module's docstring).
    n_clusters
        Clusters to keep; ``None``: no count limit.
    min_similarity
        Stop before merging a pair less alike than this; ``None``: no threshold.

    Raises
    ------
    ValueError
        Neither stopping rule given, or ``n_clusters`` < 1.
    """
    if n_clusters is None and min_similarity is None:
        raise ValueError("merge_clusters needs n_clusters or min_similarity")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    merges: list[tuple[int, int, float]] = []
    while stats.n_active > 1 and (n_clusters is None or stats.n_active > n_clusters):
        score = stats.similarity(criterion)
        a, b = np.unravel_index(int(np.argmax(score)), score.shape)
        best = float(score[a, b])
        if not np.isfinite(best) or (min_similarity is not None and best < min_similarity):
            break
        keep, gone = sorted((int(a), int(b)), key=lambda c: (-stats.sizes[c], c))
        stats.merge(keep, gone)
        merges.append((keep, gone, best))
    return MergeResult(_mapping(stats.active, merges), tuple(merges), stats.n_active)


def _mapping(active: np.ndarray, merges: list[tuple[int, int, float]]) -> np.ndarray:
    """Old cluster → new id: follow each joined cluster to the one that kept it."""
    parent = np.arange(len(active))
    for keep, gone, _ in merges:
        parent[gone] = keep
    for c in range(len(parent)):  # path to the root (chains are short)
        root = c
        while parent[root] != root:
            root = parent[root]
        parent[c] = root
    new_id = np.full(len(active), -1)
    new_id[np.flatnonzero(active)] = np.arange(int(active.sum()))
    return new_id[parent]
