"""Clustering quality measures: with true labels (NMI, ARI, ACC, AMI), without (silhouette),
and how well batches mix (iLISI, :func:`ilisi` / :func:`ilisi_knn`; each cluster's batch
entropy, :func:`cluster_batch_entropy` / :func:`batch_entropy`).

:func:`score_labelled` is the one place that decides which cells the label measures are
computed on (the labelled ones, :func:`labelled_cells`); ``scdsec cluster --labels`` (its
``metrics.json``) and the workflow's evaluation (``results/{dataset}/metrics.tsv``, through
:mod:`scdsec.evaluate`) both call it.
"""

from __future__ import annotations

import re

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


# ---------------------------------------------------------------------------- batch mixing

#: Neighbours of each cell and perplexity of :func:`ilisi` on an embedding: scib's LISI on an
#: embedding (Luecken et al. 2022) and harmonypy's ``compute_lisi`` (Korsunsky et al. 2019) use
#: perplexity 30 on the 3 × 30 nearest neighbours.
LISI_PERPLEXITY = 30
LISI_NEIGHBORS = 3 * LISI_PERPLEXITY
#: Binary search of each cell's Gaussian bandwidth: stop when the entropy is within this of
#: log(perplexity), or after this many halvings (scib-metrics' and harmonypy's values).
LISI_TOL = 1e-5
LISI_MAX_ITER = 50
#: Cells whose kernel weights are searched at once (memory: cells × neighbours floats a few times).
LISI_CHUNK_CELLS = 50_000


def _natural_key(value) -> list:
    """Sort key that puts "batch2" before "batch10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value))]


def _batch_codes(
    batches, n_cells: int | None = None, *, what: str = "batches"
) -> tuple[np.ndarray, list[str]]:
    """Integer codes ``(n_cells,)`` and names (natural order) of ``batches``.

    Refuses missing values and, when ``n_cells`` is given, another length (InputError).
    """
    array = np.asarray(batches) if not isinstance(batches, pd.Series | pd.Categorical) else None
    if array is not None and array.ndim == 1 and np.issubdtype(array.dtype, np.integer):
        if n_cells is not None and len(array) != n_cells:
            raise InputError(f"{what}: {len(array)} values for {n_cells} cells")
        values, codes = np.unique(array, return_inverse=True)  # integers: nothing is missing
        return codes.astype(np.int64).ravel(), [str(v) for v in values]
    series = pd.Series(np.asarray(pd.Series(batches).astype(object), dtype=object).ravel())
    missing = np.fromiter((is_missing_label(v) for v in series), dtype=bool, count=len(series))
    if missing.any():
        raise InputError(
            f"{what}: {int(missing.sum())} of {len(series)} cells have no batch (NaN, None, "
            "empty, NA …); every cell needs one"
        )
    if n_cells is not None and len(series) != n_cells:
        raise InputError(f"{what}: {len(series)} values for {n_cells} cells")
    text = series.astype(str)
    names = sorted(set(text), key=_natural_key)
    codes = pd.Categorical(text, categories=names).codes
    return np.asarray(codes, dtype=np.int64), names


def lisi_knn(
    neighbors: np.ndarray,
    distances: np.ndarray | None,
    labels,
    *,
    perplexity: float | None = None,
) -> np.ndarray:
    """Local inverse Simpson index (LISI) of each cell on a kNN graph (Korsunsky et al. 2019).

    For each cell, Gaussian kernel weights ``exp(-beta * d)`` on its neighbour distances ``d``
    (the distances as given, not squared, as harmonypy and scib-metrics do), with ``beta`` found
    by binary search (start 1; double or halve until bracketed, then bisect; at most
    :data:`LISI_MAX_ITER` steps, tolerance :data:`LISI_TOL`) so that the entropy of the weights
    is log(``perplexity``) — the weights then spread over about ``perplexity`` neighbours. With
    ``p_b`` the weight of the neighbours of label ``b``, the LISI is ``1 / sum_b p_b²``: the
    effective number of labels around the cell, from 1 (one label) to the number of labels.
    This is scib-metrics' ``lisi_knn`` (Luecken et al. 2022), in vectorised NumPy.

    A neighbour that is the cell itself gets weight 0 (as in scib-metrics). The distances are
    shifted by each cell's smallest one before the exponential, which leaves the weights and
    the entropy unchanged but cannot underflow (scib-metrics gives such cells −1).

    Parameters
    ----------
    neighbors
        Integer array ``(n_cells, k)``: the indices (0 … n_cells − 1) of each cell's neighbours.
    distances
        Float array ``(n_cells, k)`` of the matching distances (finite, ≥ 0), or None for equal
        weights on every neighbour (the plain Simpson index of the neighbours' labels).
    labels
        Label of each cell (batch for iLISI, cell type for cLISI), 1-D of length ``n_cells``.
    perplexity
        Effective neighbourhood size; None for ``floor(k / 3)`` (scib-metrics' default), at
        least 1. A perplexity above the usable neighbours gives (nearly) equal weights.

    Returns
    -------
    Float array ``(n_cells,)``; NaN for a cell without any neighbour but itself.

    Raises
    ------
    InputError
        Shapes that do not match, indices out of range, negative or non-finite distances,
        missing labels, a perplexity that is not > 0.
    """
    neighbors = np.asarray(neighbors)
    codes, names = _batch_codes(labels, what="labels")
    n_cells = len(codes)
    if neighbors.ndim != 2 or neighbors.shape[0] != n_cells:
        raise InputError(
            f"neighbors: expected shape ({n_cells}, k) for {n_cells} cells, got {neighbors.shape}"
        )
    if not np.issubdtype(neighbors.dtype, np.integer):
        raise InputError(f"neighbors: expected integer indices, got dtype {neighbors.dtype}")
    k = neighbors.shape[1]
    if k and (neighbors.min() < 0 or neighbors.max() >= n_cells):
        raise InputError(f"neighbors: indices must lie in 0 … {n_cells - 1}")
    if distances is not None:
        distances = np.asarray(distances, dtype=np.float64)
        if distances.shape != neighbors.shape:
            raise InputError(
                f"distances: shape {distances.shape} differs from neighbors' {neighbors.shape}"
            )
        if not (np.isfinite(distances).all() and (distances >= 0).all()):
            raise InputError("distances: must be finite and >= 0")
    if perplexity is None:
        perplexity = max(np.floor(k / 3), 1.0)
    if not (np.isfinite(perplexity) and perplexity > 0):
        raise InputError(f"perplexity: must be > 0, got {perplexity!r}")
    out = np.empty(n_cells)
    for start in range(0, n_cells, LISI_CHUNK_CELLS):
        rows = slice(start, start + LISI_CHUNK_CELLS)
        nbrs = neighbors[rows]
        usable = nbrs != np.arange(start, start + len(nbrs))[:, None]
        if distances is None:
            weights = usable.astype(np.float64)
        else:
            weights = _perplexity_weights(distances[rows], usable, float(perplexity))
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = weights / total[:, None]
        # Weight of each label among the neighbours: scatter-add into (cells, labels).
        per_label = np.zeros((len(nbrs), len(names)))
        np.add.at(per_label, (np.arange(len(nbrs))[:, None], codes[nbrs]), weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(total > 0, 1.0 / (per_label**2).sum(axis=1), np.nan)
    return out


def _perplexity_weights(distances: np.ndarray, usable: np.ndarray, perplexity: float) -> np.ndarray:
    """Unnormalised kernel weights ``exp(-beta (d - d_min))`` per row, ``beta`` bisected so that
    their entropy is log(perplexity); 0 where ``usable`` is False. All rows are searched at
    once, each stopping on its own (the search of :func:`lisi_knn`)."""
    n = distances.shape[0]
    # Shifting by the row's smallest distance changes neither the normalised weights nor the
    # entropy, and keeps exp() from underflowing to a zero sum.
    shifted = np.where(usable, distances, np.inf)
    lowest = shifted.min(axis=1, keepdims=True)
    shifted = np.where(usable, distances - np.where(np.isfinite(lowest), lowest, 0.0), 0.0)
    target = np.log(perplexity)
    beta = np.ones(n)
    low = np.full(n, -np.inf)
    high = np.full(n, np.inf)

    def entropy(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(usable, np.exp(-shifted * b[:, None]), 0.0)
        total = p.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.log(total) + b * (shifted * p).sum(axis=1) / total
        return np.where(total > 0, h, 0.0), p

    h, p = entropy(beta)
    active = np.abs(h - target) >= LISI_TOL
    for _ in range(LISI_MAX_ITER):
        if not active.any():
            break
        too_flat = active & (h > target)  # entropy too high: narrow the kernel
        too_sharp = active & ~too_flat
        low = np.where(too_flat, beta, low)
        high = np.where(too_sharp, beta, high)
        beta = np.where(
            too_flat,
            np.where(np.isinf(high), beta * 2, (beta + high) / 2),
            np.where(too_sharp, np.where(np.isinf(low), beta / 2, (beta + low) / 2), beta),
        )
        h_new, p_new = entropy(beta)
        h = np.where(active, h_new, h)
        p = np.where(active[:, None], p_new, p)
        active = active & (np.abs(h - target) >= LISI_TOL)
    return p


def ilisi_knn(
    neighbors: np.ndarray,
    distances: np.ndarray | None,
    batches,
    *,
    perplexity: float | None = None,
    scale: bool = True,
) -> float:
    """Integration LISI (iLISI) of a kNN graph: how well the batches mix around each cell.

    The median over cells of each cell's LISI of the batch labels (:func:`lisi_knn`), scaled
    as in scib-metrics' ``ilisi_knn`` (Luecken et al. 2022) to ``(median − 1) / (n_batches −
    1)``: 0 when every cell's neighbours are of its own batch, 1 when every neighbourhood
    holds all batches in equal weight. Batches of unequal size mix perfectly below 1 (two
    batches of 80 % and 20 % of the cells: LISI 1/(0.8² + 0.2²) ≈ 1.47, scaled 0.47).

    Parameters
    ----------
    neighbors, distances
        The kNN graph: neighbour indices and distances, both ``(n_cells, k)``; ``distances``
        None weighs neighbours equally. See :func:`lisi_knn`.
    batches
        Batch of each cell, 1-D of length ``n_cells`` (any values; no missing ones).
    perplexity
        None for ``floor(k / 3)`` (scib-metrics' default).
    scale
        Scale to [0, 1] as above (default); False returns the median LISI, in [1, n_batches].

    Returns
    -------
    The iLISI, a float.

    Raises
    ------
    InputError
        Fewer than two batches, missing batches, or a malformed graph (:func:`lisi_knn`).
    """
    codes, names = _batch_codes(batches)
    if len(names) < 2:
        raise InputError(
            f"batches: iLISI needs at least 2 batches, got {len(names)} ({names}): "
            "batch mixing is undefined for one batch"
        )
    lisi = lisi_knn(neighbors, distances, codes, perplexity=perplexity)
    median = float(np.nanmedian(lisi))
    return (median - 1) / (len(names) - 1) if scale else median


def ilisi(
    x: np.ndarray,
    batches,
    *,
    n_neighbors: int = LISI_NEIGHBORS,
    perplexity: float = LISI_PERPLEXITY,
    scale: bool = True,
) -> float:
    """iLISI of an embedding: :func:`ilisi_knn` on its exact Euclidean kNN graph.

    Each cell's ``n_neighbors`` nearest other cells (scikit-learn ``NearestNeighbors``; the
    cell itself left out, as harmonypy and scib's LISI do) with their Euclidean distances,
    perplexity 30 on 90 neighbours by default (scib's and harmonypy's ``compute_lisi``). With
    fewer than ``n_neighbors + 1`` cells, every other cell is a neighbour and the perplexity
    is at most a third of them.

    Parameters
    ----------
    x
        Embedding, ``(n_cells, n_dims)`` (e.g. ``obsm['X_scdsec']`` or ``obsm['X_pca_harmony']``).
    batches
        Batch of each cell, 1-D of length ``n_cells``.
    n_neighbors, perplexity
        Neighbours per cell and effective neighbourhood size.
    scale
        Scale to [0, 1] (default), see :func:`ilisi_knn`.

    Returns
    -------
    The iLISI, a float.

    Raises
    ------
    InputError
        ``x`` not 2-D or not finite, fewer than 2 cells, ``batches`` of another length than
        the cells, missing batches, or fewer than two batches.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"x: expected an embedding of shape (n_cells ≥ 2, n_dims), got {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("x: the embedding has NaN or infinite values")
    codes, _ = _batch_codes(batches, x.shape[0])
    k = min(int(n_neighbors), x.shape[0] - 1)
    if k < 1:
        raise InputError(f"n_neighbors: must be >= 1, got {n_neighbors}")
    if k < n_neighbors:
        perplexity = min(perplexity, max(k // 3, 1))
    distances, neighbors = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # Drop each cell itself: its own row, wherever duplicates put it, else the farthest.
    is_self = neighbors == np.arange(len(x))[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(len(x)), drop] = False
    neighbors = neighbors[keep].reshape(len(x), k)
    distances = distances[keep].reshape(len(x), k)
    return ilisi_knn(neighbors, distances, codes, perplexity=perplexity, scale=scale)


def cluster_batch_entropy(labels, batches) -> pd.DataFrame:
    """Each cluster's batch composition and how evenly it mixes the batches.

    Parameters
    ----------
    labels
        Cluster of each cell, 1-D of length ``n_cells``.
    batches
        Batch of each cell, 1-D of the same length (no missing values).

    Returns
    -------
    One row per cluster (index ``cluster``, natural order: "2" before "10"), columns
    ``n_cells``, then one per batch (named by the batch, in sorted order) holding the fraction
    of the cluster's cells from that batch (rows sum to 1), then ``entropy``: the Shannon
    entropy of that composition divided by log(number of batches in the data), in [0, 1] —
    0 for a cluster of one batch, 1 for equal parts of every batch. With batches of unequal
    size a well-mixed cluster (one with the overall composition) lies below 1.

    Raises
    ------
    InputError
        Lengths that differ, missing batches, fewer than two batches, or a batch named
        ``n_cells`` or ``entropy``.
    """
    labels = np.asarray(pd.Series(labels).astype(object), dtype=object).ravel()
    codes, names = _batch_codes(batches, len(labels))
    if len(names) < 2:
        raise InputError(
            f"batches: the batch entropy needs at least 2 batches, got {len(names)} ({names})"
        )
    clash = {"n_cells", "entropy"} & set(names)
    if clash:
        raise InputError(f"batches: a batch may not be named {sorted(clash)}")
    clusters = pd.Series(labels).astype(str)
    counts = pd.crosstab(clusters, pd.Categorical.from_codes(codes, names), dropna=False)
    order = sorted(counts.index, key=_natural_key)
    counts = counts.loc[order]
    n = counts.sum(axis=1).to_numpy(dtype=float)
    frac = counts.to_numpy(dtype=float) / n[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(frac > 0, frac * np.log(frac), 0.0)
    entropy = -plogp.sum(axis=1) / np.log(len(names))
    table = pd.DataFrame(frac, index=pd.Index(order, name="cluster"), columns=names)
    table.insert(0, "n_cells", n.astype(np.int64))
    table["entropy"] = np.clip(entropy, 0.0, 1.0) + 0.0  # + 0.0: no "-0.00" for one batch
    return table


def batch_entropy(labels, batches) -> float:
    """The cell-weighted mean of the clusters' normalised batch entropies.

    The ``entropy`` of :func:`cluster_batch_entropy`, averaged over clusters weighted by their
    cells: 0 when every cluster holds one batch, 1 when every cluster holds equal parts of
    every batch. Raises what :func:`cluster_batch_entropy` raises.
    """
    table = cluster_batch_entropy(labels, batches)
    return float(np.average(table["entropy"], weights=table["n_cells"]))
