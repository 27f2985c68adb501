"""Figures of one run and of the experiments, as PNG files a biologist can read.

Every ``plot_*`` function takes plain data (a DataFrame, arrays or an AnnData) and a path,
writes one PNG atomically and returns nothing. The figure itself is made by the matching
``*_figure`` function, which returns the :class:`matplotlib.figure.Figure` (for notebooks and
tests). Figures use matplotlib's object API, not pyplot's global state, so they render with the
Agg backend on any machine, display or not.

Conventions: one title per figure, labelled axes, legends outside the axes, a categorical
palette that stays distinct up to 20 groups (``tab20`` reordered dark hues first), 150 dpi.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._errors import InputError
from ._files import PathLike, atomic_path

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger("scdsec")

DPI = 150

#: Loss terms of ``loss.tsv`` (:attr:`scdsec.model.SCDSEC.history`) and what each measures.
LOSS_TERMS: dict[str, str] = {
    "zinb": "ZINB negative log-likelihood",
    "rec": "Expression reconstruction (MSE)",
    "graph": "Graph reconstruction (BCE)",
    "kl": "Clustering loss KL(P ‖ Q)",
    "contrastive": "Neighbourhood contrastive (InfoNCE)",
    "total": "Total (weighted sum minimised)",
}
#: Terms outside the paper's objective: drawn only when the run used them (the others are
#: drawn even when switched off, and say so).
OPTIONAL_TERMS = frozenset({"contrastive"})

#: Axis labels of the sensitivity parameters (the paper's Figs. 3–5).
PARAMETER_LABELS: dict[str, str] = {
    "t": "t, highly variable genes",
    "k": "K, neighbours per cell in the kNN graph",
    "alpha": "α, weight of the autoencoder stream",
}
PARAMETER_SYMBOLS: dict[str, str] = {"t": "t", "k": "K", "alpha": "α"}
LOG_PARAMETERS = frozenset({"t", "k"})

METRIC_LABELS: dict[str, str] = {"nmi": "NMI", "ari": "ARI", "acc": "ACC", "ami": "AMI"}


# ---------------------------------------------------------------------------- helpers


def natural_key(value) -> list:
    """Sort key that puts "2" before "10" and "type2" before "type10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value))]


def _ordered_categories(values) -> list[str]:
    """The distinct values of ``values`` as strings: an ordered categorical's order, else
    natural order ("type2" before "type10")."""
    series = pd.Series(values)
    present = set(series.dropna().astype(str))
    if isinstance(series.dtype, pd.CategoricalDtype) and series.cat.ordered:
        return [str(c) for c in series.cat.categories if str(c) in present]
    return sorted(present, key=natural_key)


def categorical_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: tab10 up to 10, tab20 (dark hues first) up to 20, then more.

    Beyond 60 groups the colours repeat (no palette keeps that many apart).
    """
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    tab20 = [colormaps["tab20"](i) for i in range(20)]
    colors = tab20[0::2] + tab20[1::2]
    if n > 20:
        colors += [colormaps["tab20b"](i) for i in range(20)]
        colors += [colormaps["tab20c"](i) for i in range(20)]
    return [colors[i % len(colors)] for i in range(n)]


def _new_figure(width: float, height: float, **kwargs) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def save_figure(fig: Figure, path: PathLike, *, dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (white background, tight bounding box)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")


def _legend_outside(ax: Axes, handles=None, labels=None, title: str | None = None, **kwargs):
    """A legend to the right of ``ax``, in two columns when there are many entries."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    ncol = 1 if len(handles) <= 14 else 2
    return ax.legend(
        handles,
        labels,
        title=title,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
        ncol=ncol,
        fontsize="small",
        title_fontsize="small",
        **kwargs,
    )


def _heading(main: str, context: str | None) -> str:
    return f"{main}\n{context}" if context else main


def _note(ax: Axes, text: str) -> None:
    """Grey centred text on an empty panel, saying why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{what}: missing columns {missing} (has {list(table.columns)})")


# ---------------------------------------------------------------------------- loss curves


#: The legend of the line where joint training starts; the total steps up there because the
#: weighted KL clustering loss is added to it.
CLUSTERING_STARTS = "clustering starts: the KL term joins the total"


def loss_curves_figure(history: pd.DataFrame, *, context: str | None = None) -> Figure:
    """Per-term training loss curves (see :func:`plot_loss_curves`)."""
    _require_columns(history, ["stage", "epoch"], "loss history")
    history = history.reset_index(drop=True)
    stage = history["stage"].astype(str)
    pre = stage == "pretrain"
    n_pre = int(history.loc[pre, "epoch"].max()) if pre.any() else 0
    # One epoch axis across both stages: clustering epoch e is overall epoch n_pre + e.
    x = history["epoch"].astype(float) + np.where(pre, 0, n_pre)
    terms = [
        t
        for t in LOSS_TERMS
        if t in history.columns and (t not in OPTIONAL_TERMS or history[t].notna().any())
    ]
    panels: list[tuple[str, str]] = [(t, LOSS_TERMS[t]) for t in terms]
    if "labels_changed" in history.columns and history["labels_changed"].notna().any():
        panels.append(("labels_changed", "Labels changed at each target update"))
    n_cols = 3 if len(panels) > 4 else 2
    n_rows = max(1, int(np.ceil(len(panels) / n_cols)))
    fig = _new_figure(4.2 * n_cols, 3.1 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    colors = {"pretrain": "tab:blue", "cluster": "tab:orange"}
    names = {"pretrain": "pretraining", "cluster": "clustering"}
    for ax, (column, label) in zip(axes, panels, strict=False):
        values = pd.to_numeric(history[column], errors="coerce")
        finite = np.isfinite(values)
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("epoch")
        if not finite.any():
            _note(ax, "not computed\n(term switched off)")
            continue
        for name in ("pretrain", "cluster"):
            mask = (stage == name) & finite
            if not mask.any():
                continue
            if column == "labels_changed":
                ax.plot(x[mask], 100 * values[mask], "o-", ms=3, color=colors[name])
            else:
                ax.plot(x[mask], values[mask], "-", lw=1.4, color=colors[name], label=names[name])
        if column == "labels_changed":
            ax.set_ylabel("% of cells")
        else:
            ax.set_ylabel("loss")
            positive = values[finite]
            if (positive > 0).all() and positive.max() / positive.min() > 20:
                ax.set_yscale("log")
                ax.set_ylabel("loss (log scale)")
        if n_pre and (stage == "cluster").any():
            ax.axvline(n_pre + 0.5, color="0.35", ls="--", lw=1, label=CLUSTERING_STARTS)
        ax.set_xlim(0, float(x.max()) + 1)  # every panel on the same epoch axis
        ax.grid(alpha=0.3)
    if len(history) == 0:
        _note(axes[0], "no epochs recorded")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(_heading("Training loss per term", context))
    return fig


def plot_loss_curves(history: pd.DataFrame, path: PathLike, *, context: str | None = None) -> None:
    """Plot the per-term training loss curves of one run.

    Parameters
    ----------
    history
        The model's loss history (``loss.tsv``; :attr:`scdsec.model.SCDSEC.history`): columns
        ``stage`` ("pretrain" / "cluster"), ``epoch`` (1-based within its stage) and the terms
        ``zinb``, ``rec``, ``graph``, ``kl``, ``total``; ``labels_changed`` adds a panel.
    path
        PNG to write. One panel per term on one epoch axis across both stages, a dashed line
        where clustering starts, log scale when a term spans more than a factor of 20.
    context
        A line under the heading saying what was run (e.g. "demo · scdsec · seed 0").
    """
    save_figure(loss_curves_figure(history, context=context), path)


# ---------------------------------------------------------------------------- embeddings


#: Neighbours of each cell in the figure's kNN graphs (umap-learn's default), and epochs of the
#: layout, whose time grows with cells × epochs: 100 (umap-learn takes 200 above 10,000
#: cells) drew the demo's groups as 200 did in 60 % of the time (docs/scale.md).
UMAP_NEIGHBORS = 15
UMAP_EPOCHS = 100


def _umap(data: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP (McInnes et al. 2018) of ``data`` (cells × dimensions), shape (cells, 2).

    igraph's ``Graph.layout_umap`` (compiled C: no JIT compile in each figure job, unlike
    umap-learn's numba, which cost ~12 s a job) on the exact Euclidean kNN graph of
    :data:`UMAP_NEIGHBORS` neighbours (scikit-learn) with its distances, ``min_dist`` 0.5 (as
    ``sc.tl.umap``), :data:`UMAP_EPOCHS` epochs, started from the first two principal
    components; igraph draws from ``random.Random(seed)``, so a seed gives the same map. A few
    cells are placed on a line.
    """
    import random

    import igraph
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    data = np.asarray(data, dtype=np.float32)
    n = data.shape[0]
    if n < 4:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    k = min(UMAP_NEIGHBORS, n - 1)
    distances, neighbors = NearestNeighbors(n_neighbors=k + 1).fit(data).kneighbors(data)
    distances, neighbors = distances[:, 1:], neighbors[:, 1:]  # not the cell itself
    graph = igraph.Graph(
        n=n, edges=np.column_stack([np.repeat(np.arange(n), k), neighbors.ravel()]), directed=True
    )
    start = PCA(n_components=2, random_state=seed).fit_transform(data)
    start *= 10 / max(float(np.abs(start).max()), 1e-12)
    igraph.set_random_number_generator(random.Random(seed))
    try:
        layout = graph.layout_umap(
            dist=distances.ravel().tolist(),
            min_dist=0.5,
            epochs=UMAP_EPOCHS,
            seed=start.tolist(),
        )
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(layout.coords, dtype=float)


def _expression_pcs(adata: ad.AnnData, seed: int, n_pcs: int = 50) -> tuple[np.ndarray, str]:
    """``obsm['X_pca']`` when present, else a PCA of ``X`` (the log-normalised expression)."""
    if "X_pca" in adata.obsm:
        pcs = np.asarray(adata.obsm["X_pca"])
        return pcs, f"{pcs.shape[1]} PCs"
    import scipy.sparse as sp
    from sklearn.decomposition import PCA

    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    n = max(1, min(n_pcs, x.shape[0] - 1, x.shape[1]))
    return PCA(n_components=n, random_state=seed).fit_transform(x), f"{n} PCs"


def _match_colors(
    types: list[str], clusters: list[str], truth, pred
) -> tuple[dict[str, tuple], dict[str, str]]:
    """Colour each cluster like the type it is matched to; unmatched clusters get new colours.

    Returns ``{cluster: colour}`` and ``{cluster: legend label}``.
    """
    from .metrics import matched_clusters

    palette = categorical_colors(len(types) + len(clusters))
    type_color = {t: palette[i] for i, t in enumerate(types)}
    mapping = {str(c): str(t) for c, t in matched_clusters(truth, pred).items()}
    spare = iter(palette[len(types) :])
    colors, labels = {}, {}
    for c in clusters:
        if c in mapping:
            colors[c], labels[c] = type_color[mapping[c]], f"{c} → {mapping[c]}"
        else:
            colors[c], labels[c] = next(spare), f"{c} (unmatched)"
    return colors, labels


def _scatter(ax: Axes, xy: np.ndarray, values: np.ndarray, colors, size: float, seed: int):
    # Plot in a random order so that no group hides behind the one drawn last.
    perm = np.random.default_rng(seed).permutation(len(values))
    color_of = np.array([colors[v] for v in values[perm]]) if len(values) else np.zeros((0, 4))
    ax.scatter(xy[perm, 0], xy[perm, 1], c=color_of, s=size, linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")


def _legend_handles(order: list[str], colors, labels=None):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", ms=6, mfc=colors[v], mec="none") for v in order]
    return handles, [labels[v] if labels else v for v in order]


def embeddings_figure(
    adata: ad.AnnData,
    *,
    key: str = "scdsec",
    seed: int = 0,
    max_cells: int = 20000,
    context: str | None = None,
) -> Figure:
    """UMAP of the expression and of the scDSEC embedding (see :func:`plot_embeddings`)."""
    from .metrics import silhouette

    emb_key = f"X_{key}"
    if key not in adata.obs or emb_key not in adata.obsm:
        raise InputError(
            f"the AnnData has no clustering result: needs obs[{key!r}] and obsm[{emb_key!r}]"
        )
    n_total = adata.n_obs
    if n_total > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(n_total, max_cells, replace=False))
        adata = adata[keep]
    pred = np.asarray(adata.obs[key]).astype(str)
    clusters = _ordered_categories(adata.obs[key])
    has_labels = "scdsec_true_label" in adata.obs and adata.obs["scdsec_true_label"].notna().any()
    expr, expr_desc = _expression_pcs(adata, seed)
    emb = np.asarray(adata.obsm[emb_key], dtype=np.float64)
    spaces = [
        (f"Normalised expression\n(UMAP of {expr_desc})", expr, _umap(expr, seed)),
        (f"scDSEC embedding\n(UMAP of {emb.shape[1]} dimensions)", emb, _umap(emb, seed)),
    ]
    rows: list[tuple[str, np.ndarray, list[str], dict, dict | None]] = []
    if has_labels:
        known = adata.obs["scdsec_true_label"].notna().to_numpy()
        truth = np.where(
            known, np.asarray(adata.obs["scdsec_true_label"]).astype(str), "unlabelled"
        )
        types = _ordered_categories(adata.obs["scdsec_true_label"]) + (
            [] if known.all() else ["unlabelled"]
        )
        type_colors = dict(zip(types, categorical_colors(len(types)), strict=False))
        colors, labels = _match_colors(types, clusters, truth, pred)
        rows.append(("true cell type", truth, types, type_colors, None))
        rows.append(("scDSEC cluster", pred, clusters, colors, labels))
    else:
        rows.append(
            (
                "scDSEC cluster",
                pred,
                clusters,
                dict(zip(clusters, categorical_colors(len(clusters)), strict=False)),
                None,
            )
        )
    n = adata.n_obs
    size = float(np.clip(12000 / max(n, 1), 1.0, 25.0))
    fig = _new_figure(11.5, 4.6 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for r, (what, values, order, colors, labels) in enumerate(rows):
        for c, (space, coords_in, xy) in enumerate(spaces):
            ax = axes[r, c]
            _scatter(ax, xy, values, colors, size, seed)
            score = silhouette(coords_in, values, seed=seed)
            sil = "" if np.isnan(score) else f"; silhouette {score:.2f}"
            ax.set_title(f"{space}\ncoloured by {what}{sil}", fontsize="medium")
        handles, texts = _legend_handles(order, colors, labels)
        legend_title = "true type" if what == "true cell type" else "cluster"
        if labels:
            legend_title += " → matched type"
        _legend_outside(axes[r, 1], handles, texts, title=legend_title)
    cells = f"{n:,} of {n_total:,} cells (random sample)" if n < n_total else f"{n:,} cells"
    heading = "Cells in expression space and in the scDSEC embedding"
    fig.suptitle(_heading(heading, f"{context} · {cells}" if context else cells))
    return fig


def plot_embeddings(
    adata: ad.AnnData,
    path: PathLike,
    *,
    key: str = "scdsec",
    seed: int = 0,
    max_cells: int = 20000,
    context: str | None = None,
) -> None:
    """The paper's Fig. 6, with UMAP for its t-SNE: the normalised expression vs the scDSEC
    embedding.

    A 2 × 2 grid — columns: UMAP (McInnes et al. 2018, by igraph on the 15-neighbour kNN
    graph of each space, :func:`_umap`; ``benchmarks/embedding_figure.py`` measures it against
    scanpy's UMAP and scikit-learn's t-SNE) of the expression (``obsm['X_pca']`` when present,
    else a PCA of ``X``, the log-normalised expression) and of the embedding ``obsm['X_' + key]``;
    rows: cells coloured by true type (``obs['scdsec_true_label']``) and by cluster
    (``obs[key]``). Without true labels only the cluster row (1 × 2). Each cluster is drawn in
    the colour of the true type it is matched to (Hungarian matching), so agreement reads as
    equal colours; each panel title gives the silhouette of its colouring in that space.

    Parameters
    ----------
    adata
        The run's ``scdsec.h5ad`` (or any AnnData annotated by :func:`scdsec.tl.cluster`).
    path
        PNG to write.
    key
        Name the results are stored under.
    seed
        Seed of the kNN graphs and UMAP (and of the subsample).
    max_cells
        Above this many cells, a seeded random sample is drawn.
    context
        A line under the heading saying what was run (e.g. "demo · scdsec · seed 0").
    """
    fig = embeddings_figure(adata, key=key, seed=seed, max_cells=max_cells, context=context)
    save_figure(fig, path)


# ---------------------------------------------------------------------------- batches


def batch_colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` colours for batches, unlike the clusters' (tab10): Dark2 up to 8, else
    :func:`categorical_colors`."""
    from matplotlib import colormaps

    if n <= 8:
        return [colormaps["Dark2"](i) for i in range(n)]
    return categorical_colors(n)


def _check_batch_inputs(
    embedding, clusters, batches
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """The embedding as floats, the clusters as text, each cell's batch and the batch names
    (natural order), after checking that they describe the same cells and that there are two
    batches or more."""
    from .metrics import _batch_codes

    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[0] == 0:
        raise InputError(
            f"plot_batches: the embedding must be cells × dimensions, got shape {embedding.shape}"
        )
    clusters = np.asarray(pd.Series(clusters).astype(str)).ravel()
    n = embedding.shape[0]
    if len(clusters) != n:
        raise InputError(f"plot_batches: {len(clusters)} clusters for {n} cells in the embedding")
    codes, names = _batch_codes(batches, n, what="plot_batches: batches")
    if len(names) < 2:
        raise InputError(
            f"plot_batches: needs at least 2 batches, got {len(names)} ({names}): there is "
            "no mixing to show"
        )
    return embedding, clusters, [names[c] for c in codes], names


def batches_figure(
    embedding,
    clusters,
    batches,
    *,
    seed: int = 0,
    max_cells: int = 20000,
    space: str = "scDSEC embedding",
    context: str | None = None,
) -> Figure:
    """Clusters and batches on one map, and each cluster's batch composition (see
    :func:`plot_batches`)."""
    from .metrics import cluster_batch_entropy, ilisi

    embedding, clusters, batch_of, batch_names = _check_batch_inputs(embedding, clusters, batches)
    batch_of = np.asarray(batch_of, dtype=object).astype(str)
    table = cluster_batch_entropy(clusters, batch_of)  # every cell, not the sample
    overall = pd.Series(batch_of).value_counts(normalize=True).reindex(batch_names).to_numpy()
    n_total = len(clusters)
    shown = np.arange(n_total)
    if n_total > max_cells:
        shown = np.sort(np.random.default_rng(seed).choice(n_total, max_cells, replace=False))
    emb, pred, batch = embedding[shown], clusters[shown], batch_of[shown]
    cluster_order = [str(c) for c in table.index]
    cluster_colors = dict(zip(cluster_order, categorical_colors(len(cluster_order)), strict=True))
    colors_of_batch = dict(zip(batch_names, batch_colors(len(batch_names)), strict=True))
    xy = _umap(emb, seed)
    mixing = ilisi(emb, batch) if len(set(batch)) > 1 else float("nan")
    n_rows = len(cluster_order) + 1
    fig = _new_figure(17.0, max(4.8, 1.8 + 0.27 * n_rows))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.0, 0.9])
    ax_cluster, ax_batch, ax_bars = (fig.add_subplot(grid[0, i]) for i in range(3))
    size = float(np.clip(12000 / max(len(shown), 1), 1.0, 25.0))
    dims = f"UMAP of {emb.shape[1]} dimensions"
    _scatter(ax_cluster, xy, pred, cluster_colors, size, seed)
    ax_cluster.set_title(f"{space} ({dims})\ncoloured by cluster", fontsize="medium")
    _legend_outside(ax_cluster, *_legend_handles(cluster_order, cluster_colors), title="cluster")
    _scatter(ax_batch, xy, batch, colors_of_batch, size, seed)
    lisi = "" if np.isnan(mixing) else f"; iLISI {mixing:.2f} (0 apart, 1 mixed)"
    ax_batch.set_title(f"{space} ({dims})\ncoloured by batch{lisi}", fontsize="medium")
    _legend_outside(ax_batch, *_legend_handles(batch_names, colors_of_batch), title="batch")

    # Bars from the top: all cells first (the composition a well-mixed cluster has), then the
    # clusters in order.
    labels = ["all cells", *cluster_order]
    fractions = np.vstack([overall, table[batch_names].to_numpy(dtype=float)])
    sizes = [n_total, *table["n_cells"].tolist()]
    entropies = [float("nan"), *table["entropy"].tolist()]
    y = np.arange(n_rows)[::-1].astype(float)
    y[1:] -= 0.5  # a gap under the overall bar
    left = np.zeros(n_rows)
    for j, name in enumerate(batch_names):
        ax_bars.barh(y, fractions[:, j], left=left, height=0.8, color=colors_of_batch[name])
        left += fractions[:, j]
    for edge in np.cumsum(overall)[:-1]:  # the overall composition, to read each bar against
        ax_bars.axvline(edge, color="0.25", ls=":", lw=0.9)
    for yy, n, h in zip(y, sizes, entropies, strict=True):
        text = f"{n:,}" if np.isnan(h) else f"{n:,} · {h:.2f}"
        ax_bars.text(1.02, yy, text, va="center", fontsize="x-small", clip_on=False)
    ax_bars.set_yticks(y, labels, fontsize="small" if n_rows <= 30 else "x-small")
    ax_bars.set_xlim(0, 1)
    ax_bars.set_ylim(y.min() - 0.6, y.max() + 0.6)
    ax_bars.set_xlabel("fraction of the cluster's cells from each batch")
    ax_bars.set_ylabel("cluster")
    ax_bars.spines[["top", "right"]].set_visible(False)
    mean_entropy = float(np.average(table["entropy"], weights=table["n_cells"]))
    ax_bars.set_title(
        "Batch composition of each cluster (dotted: all cells)\n"
        f"right: cells · batch entropy (0 one batch, 1 even); mean {mean_entropy:.2f}",
        fontsize="medium",
    )
    n = len(shown)
    cells = (
        f"{n:,} of {n_total:,} cells on the maps (random sample), all in the bars"
        if n < n_total
        else f"{n:,} cells"
    )
    heading = "Clusters and batches"
    fig.suptitle(_heading(heading, f"{context} · {cells}" if context else cells))
    return fig


def plot_batches(
    embedding,
    clusters,
    batches,
    path: PathLike,
    *,
    seed: int = 0,
    max_cells: int = 20000,
    space: str = "scDSEC embedding",
    context: str | None = None,
) -> None:
    """The paper's Fig. 8: cells by cluster and by batch on one map, and each cluster's batch
    composition.

    Three panels — a UMAP of the embedding (:func:`_umap`, as in :func:`plot_embeddings`)
    coloured by cluster, the same map coloured by batch (its title gives the scaled iLISI of
    the embedding, :func:`scdsec.metrics.ilisi`, on the cells shown), and one stacked bar per
    cluster with the fraction of its cells from each batch (:func:`scdsec.metrics.
    cluster_batch_entropy`, on every cell), under a bar of all cells; dotted lines mark the
    overall composition, and each bar is labelled with its cells and its normalised batch
    entropy.

    Parameters
    ----------
    embedding
        The clustered space, ``(n_cells, n_dims)`` (``obsm['X_scdsec']``, or corrected PCs).
    clusters, batches
        Cluster and batch of each cell, 1-D of length ``n_cells``.
    path
        PNG to write.
    seed
        Seed of the kNN graph, the UMAP and the subsample.
    max_cells
        Above this many cells the maps (and the iLISI) use a seeded random sample; the bars
        always count every cell.
    space
        What the embedding is, for the panel titles.
    context
        A line under the heading saying what was run (e.g. "pancreas · scdsec · seed 0").

    Raises
    ------
    InputError
        Clusters or batches of another length than the embedding's cells, missing batches,
        or fewer than two batches.
    """
    fig = batches_figure(
        embedding, clusters, batches, seed=seed, max_cells=max_cells, space=space, context=context
    )
    save_figure(fig, path)


# ---------------------------------------------------------------------------- confusion


def matched_confusion(truth, pred) -> pd.DataFrame:
    """Cells per true type (rows) and cluster (columns), columns in matched order.

    Rows are the true types in natural order; column ``i`` is the cluster matched to row ``i``
    by the Hungarian matching (:func:`scdsec.metrics.matched_clusters`), so the diagonal holds
    the matched counts. Types that no cluster is matched to come last among the rows, clusters
    that match no type come last among the columns.
    """
    from .metrics import contingency, matched_clusters

    truth = np.asarray(truth).astype(str)
    pred = np.asarray(pred).astype(str)
    table = contingency(truth, pred)
    mapping = matched_clusters(truth, pred)  # cluster -> type
    by_type = {t: c for c, t in mapping.items()}
    types = sorted(table.index, key=natural_key)
    rows = [t for t in types if t in by_type] + [t for t in types if t not in by_type]
    cols = [by_type[t] for t in rows if t in by_type]
    cols += sorted((c for c in table.columns if c not in mapping), key=natural_key)
    out = table.loc[rows, cols]
    out.index.name, out.columns.name = "true type", "cluster"
    return out


def confusion_figure(truth, pred, *, context: str | None = None) -> Figure:
    """Confusion matrix after matching (see :func:`plot_confusion`)."""
    from matplotlib.patches import Rectangle

    table = matched_confusion(truth, pred)
    counts = table.to_numpy()
    n_rows, n_cols = counts.shape
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    n_matched = min(n_rows, n_cols)
    correct = int(np.trace(counts[:n_matched, :n_matched]))
    acc = correct / max(int(counts.sum()), 1)
    fig = _new_figure(max(4.5, 1.2 + 0.5 * n_cols + 1.5), max(3.5, 1.2 + 0.42 * n_rows))
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fontsize = 8 if max(n_rows, n_cols) <= 12 else 6
    for i in range(n_rows):
        for j in range(n_cols):
            if counts[i, j]:
                dark = fractions[i, j] > 0.55
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:,}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark else "black",
                )
    for d in range(n_matched):  # outline the matched pairs
        ax.add_patch(Rectangle((d - 0.5, d - 0.5), 1, 1, fill=False, ec="tab:red", lw=1.2))
    ax.set_xticks(range(n_cols), [str(c) for c in table.columns])
    ax.set_yticks(range(n_rows), [str(t) for t in table.index])
    ax.set_xlabel("cluster (ordered by matched type; unmatched last)")
    ax.set_ylabel("true cell type")
    ax.tick_params(axis="x", labelrotation=0 if n_cols <= 20 else 90)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("fraction of the type's cells")
    ax.set_title(
        _heading(
            "True type vs cluster after Hungarian matching (red boxes)",
            f"{context + ' · ' if context else ''}ACC {acc:.3f}, {int(counts.sum()):,} cells",
        ),
        fontsize="medium",
    )
    return fig


def plot_confusion(truth, pred, path: PathLike, *, context: str | None = None) -> None:
    """Confusion matrix of true type vs cluster after Hungarian matching.

    Rows: true types; columns: clusters, the one matched to each row's type first (so the
    diagonal, outlined, holds the matched cells), clusters that match no type last. Colours are
    row-normalised (fraction of each type's cells), cells are annotated with counts; the title
    gives the accuracy after matching.

    Parameters
    ----------
    truth, pred
        True types and cluster labels, one per cell.
    path
        PNG to write.
    context
        A line under the heading saying what was run (e.g. "demo · scdsec · seed 0").
    """
    truth = np.asarray(truth)
    if len(truth) == 0 or pd.isna(truth).all():
        raise InputError("plot_confusion needs true labels: none were given")
    save_figure(confusion_figure(truth, pred, context=context), path)


# ---------------------------------------------------------------------------- experiments


def _summarise(scores: pd.DataFrame, by: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, sd and count over seeds of each metric, per group of ``by`` (NaN ignored).

    Columns are ``(metric, "mean" | "std" | "count")``; the index is ``by``.
    """
    numeric = scores[by].copy()
    for m in metrics:
        numeric[m] = pd.to_numeric(scores[m], errors="coerce")
    return numeric.groupby(by, sort=False)[list(metrics)].agg(["mean", "std", "count"])


def _order(values: Sequence, first: Sequence[str] = ()) -> list[str]:
    """Distinct values in order of appearance, with the ``first`` ones (when present) first."""
    seen = list(dict.fromkeys(str(v) for v in values))
    return [f for f in first if f in seen] + [v for v in seen if v not in first]


def _grouped_bars(
    ax: Axes,
    summary: pd.DataFrame,
    metric: str,
    x_order: list[str],
    hue_order: list[str],
    colors: Mapping[str, tuple],
    gap_labels: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Bars of ``summary[(metric, 'mean')]`` ± sd, grouped by the first index level.

    A (group, hue) pair without a value is left as a gap with a vertical label (its entry in
    ``gap_labels``, default "missing"), never dropped.
    """
    gap_labels = gap_labels or {}
    n_hue = max(len(hue_order), 1)
    width = 0.8 / n_hue
    lows = [0.0]
    for i, x_val in enumerate(x_order):
        for j, hue in enumerate(hue_order):
            pos = i - 0.4 + width * (j + 0.5)
            key = (x_val, hue)
            mean = summary[(metric, "mean")].get(key, np.nan)
            sd = summary[(metric, "std")].get(key, np.nan)
            if pd.isna(mean):
                ax.text(
                    pos,
                    0.02,
                    gap_labels.get(key, "missing"),
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                    color="0.35",
                    transform=ax.get_xaxis_transform(),
                )
                continue
            ax.bar(
                pos,
                mean,
                width=width * 0.92,
                color=colors[hue],
                label=hue,
                yerr=None if pd.isna(sd) else sd,
                capsize=2,
                error_kw={"elinewidth": 0.9, "ecolor": "0.2"},
            )
            lows.append(mean - (0 if pd.isna(sd) else sd))
    ax.set_xticks(range(len(x_order)), x_order)
    ax.set_xlim(-0.6, len(x_order) - 0.4)
    ax.set_ylim(min(0.0, min(lows) - 0.05), 1.05)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(axis="y", alpha=0.3)


def _gap_labels(scores: pd.DataFrame, x_col: str, hue_col: str) -> dict:
    """``{(x, hue): label}`` of the gaps: the runs' status where they did not run ("missing",
    from ``status`` "missing: why"), "no labels" where the dataset has no true labels, "no
    score" otherwise. Pairs not listed are labelled "missing"."""
    labels = {}
    for (x_val, hue), group in scores.groupby([x_col, hue_col], sort=False):
        status = group["status"].astype(str) if "status" in group else pd.Series(["ok"])
        failed = status[~status.str.startswith("ok")]
        if len(failed):
            label = failed.iloc[0].split(":", 1)[0].strip() or "missing"
        elif "labels" in group and (group["labels"].astype(str) == "none").all():
            label = "no labels"
        else:
            label = "no score"
        labels[(str(x_val), str(hue))] = label
    return labels


def _blank_failed(scores: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``scores`` with the measures of runs whose ``status`` is not "ok" set to NaN."""
    scores = scores.copy()
    if "status" in scores:
        failed = ~scores["status"].astype(str).str.startswith("ok")
        scores.loc[failed, list(metrics)] = np.nan
    return scores


def _as_str(scores: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    scores = scores.copy()
    for c in columns:
        scores[c] = scores[c].astype(str)
    return scores


def benchmark_figure(
    scores: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("nmi", "ari"),
    reference: str = "scdsec",
    context: str | None = None,
) -> Figure:
    """Grouped bars of the benchmark (see :func:`plot_benchmark`)."""
    _require_columns(scores, ["dataset", "method", "seed", *metrics], "benchmark scores")
    scores = _blank_failed(_as_str(scores, ["dataset", "method"]), metrics)
    datasets = _order(scores["dataset"])
    methods = _order(scores["method"], first=[reference])
    colors = dict(zip(methods, categorical_colors(len(methods)), strict=False))
    summary = _summarise(scores, ["dataset", "method"], metrics)
    width = max(6.0, 1.2 + 0.28 * len(methods) * len(datasets) + 0.4 * len(datasets))
    fig = _new_figure(width, 2.9 * len(metrics))
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        gaps = _gap_labels(scores, "dataset", "method")
        _grouped_bars(ax, summary, metric, datasets, methods, colors, gaps)
    axes[-1].set_xlabel("dataset")
    axes[-1].tick_params(axis="x", labelrotation=20 if len(datasets) > 3 else 0)
    handles = [_bar_handle(colors[m]) for m in methods]
    _legend_outside(axes[0], handles, methods, title="method")
    n_seeds = scores["seed"].nunique()
    fig.suptitle(
        _heading("Clustering agreement with the true cell types", _seeds(n_seeds, context))
    )
    return fig


def _seeds(n_seeds: int, context: str | None) -> str:
    text = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "one seed (no error bars)"
    return f"{context} · {text}" if context else text


def _bar_handle(color):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, edgecolor="none")


def plot_benchmark(
    scores: pd.DataFrame,
    path: PathLike,
    *,
    reference: str = "scdsec",
    context: str | None = None,
) -> None:
    """Mean NMI and ARI per dataset and method, with sd error bars (the paper's Table 2).

    Parameters
    ----------
    scores
        ``results/benchmark/scores.tsv``: one row per dataset, method and seed with columns
        ``dataset method seed nmi ari …`` and ``status`` ("ok", or "missing: why" with NaN
        scores). A method without a score on a dataset is shown as a labelled gap
        ("missing"), not dropped.
    path
        PNG to write: one panel per measure, datasets along x, one bar per method.
    reference
        Method drawn first (our model).
    context
        A line under the heading (e.g. which config made the scores).
    """
    save_figure(benchmark_figure(scores, reference=reference, context=context), path)


def ablation_figure(
    scores: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("nmi", "ari", "acc"),
    reference: str = "full",
    context: str | None = None,
) -> Figure:
    """Bars per ablation variant (see :func:`plot_ablation`)."""
    _require_columns(scores, ["dataset", "variant", "seed", *metrics], "ablation scores")
    scores = _blank_failed(_as_str(scores, ["dataset", "variant"]), metrics)
    variants = _order(scores["variant"], first=[reference])
    datasets = _order(scores["dataset"])
    colors = dict(zip(datasets, categorical_colors(len(datasets)), strict=False))
    summary = _summarise(scores, ["variant", "dataset"], metrics)
    width = max(6.0, 1.5 + 0.3 * len(variants) * max(len(datasets), 2))
    fig = _new_figure(width, 2.7 * len(metrics))
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        gaps = _gap_labels(scores, "variant", "dataset")
        _grouped_bars(ax, summary, metric, variants, datasets, colors, gaps)
        for d in datasets:  # the reference's level, to read each variant against
            ref = summary[(metric, "mean")].get((reference, d), np.nan)
            if not pd.isna(ref):
                ax.axhline(ref, color=colors[d], ls=":", lw=1)
    axes[-1].set_xlabel(f"variant ({reference!r} is the model as configured; dotted: its level)")
    if len(variants) > 4:
        for label in axes[-1].get_xticklabels():
            label.set(rotation=30, ha="right", rotation_mode="anchor")
    handles = [_bar_handle(colors[d]) for d in datasets]
    _legend_outside(axes[0], handles, datasets, title="dataset")
    n_seeds = scores["seed"].nunique()
    heading = "Ablations: what each part of scDSEC contributes"
    fig.suptitle(_heading(heading, _seeds(n_seeds, context)))
    return fig


def plot_ablation(
    scores: pd.DataFrame,
    path: PathLike,
    *,
    reference: str = "full",
    context: str | None = None,
) -> None:
    """Bars with sd error bars per ablation variant (the paper's Fig. 2 / Table 3).

    Parameters
    ----------
    scores
        Columns ``dataset variant seed nmi ari acc``, one row per run.
    path
        PNG to write: one panel per measure (NMI, ARI, ACC), variants along x (``reference``
        first), one bar per dataset, a dotted line at the reference's mean.
    reference
        The unablated model's variant name.
    context
        A line under the heading (e.g. which config made the scores).
    """
    save_figure(ablation_figure(scores, reference=reference, context=context), path)


def sensitivity_figure(
    scores: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("nmi", "ari"),
    defaults: Mapping[str, float] | None = None,
    context: str | None = None,
) -> Figure:
    """Score against parameter value (see :func:`plot_sensitivity`)."""
    _require_columns(scores, ["dataset", "parameter", "value", "seed", *metrics], "sensitivity")
    scores = _blank_failed(_as_str(scores, ["dataset", "parameter"]), metrics)
    scores["value"] = pd.to_numeric(scores["value"], errors="coerce")
    parameters = _order(scores["parameter"], first=["t", "k", "alpha"])
    datasets = _order(scores["dataset"])
    colors = dict(zip(datasets, categorical_colors(len(datasets)), strict=False))
    summary = _summarise(scores, ["parameter", "dataset", "value"], metrics)
    fig = _new_figure(4.0 * len(parameters) + 1.5, 3.0 * len(metrics))
    axes = fig.subplots(len(metrics), len(parameters), squeeze=False, sharey="row")
    for c, param in enumerate(parameters):
        values = np.sort(scores.loc[scores["parameter"] == param, "value"].dropna().unique())
        log = param in LOG_PARAMETERS and len(values) > 0 and bool((values > 0).all())
        span = float(values.max() - values.min()) if len(values) > 1 else 1.0
        decades = float(np.log10(values.max() / values.min())) if log else 0.0
        for r, metric in enumerate(metrics):
            ax = axes[r, c]
            for i, d in enumerate(datasets):
                part = summary.xs((param, d), level=["parameter", "dataset"], drop_level=True)
                part = part[part[(metric, "count")] > 0].sort_index()
                if part.empty:
                    continue
                # Datasets side by side, a little apart, so that their error bars do not hide
                # each other.
                shift = (i - (len(datasets) - 1) / 2) * 0.012  # fraction of the axis
                x = part.index.to_numpy(dtype=float)
                x = x * 10 ** (shift * decades) if log else x + shift * span
                ax.errorbar(
                    x,
                    part[(metric, "mean")],
                    yerr=part[(metric, "std")].fillna(0),
                    marker="o",
                    ms=4,
                    capsize=2,
                    lw=1.4,
                    color=colors[d],
                    label=d,
                )
            if defaults and defaults.get(param) is not None:
                ax.axvline(defaults[param], color="0.4", ls=":", lw=1, label="default value")
            if log:
                ax.set_xscale("log")
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.minorticks_off()
            elif len(values):
                ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.set_xlabel(PARAMETER_LABELS.get(param, param))
            ax.set_ylabel(METRIC_LABELS.get(metric, metric) if c == 0 else "")
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(f"Sensitivity to {PARAMETER_SYMBOLS.get(param, param)}")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda j: labels[j] not in datasets)
    _legend_outside(
        axes[0, -1], [handles[j] for j in order], [labels[j] for j in order], title="dataset"
    )
    n_seeds = scores["seed"].nunique()
    fig.suptitle(_heading("Sensitivity to the hyper-parameters", _seeds(n_seeds, context)))
    return fig


def plot_sensitivity(
    scores: pd.DataFrame,
    path: PathLike,
    *,
    defaults: Mapping[str, float] | None = None,
    context: str | None = None,
) -> None:
    """Score against hyper-parameter value (the paper's Figs. 3–5).

    Parameters
    ----------
    scores
        Columns ``dataset parameter value seed nmi ari acc``; ``parameter`` is one of ``t``,
        ``k``, ``alpha`` (others are plotted too, on a linear axis).
    path
        PNG to write: one column of panels per parameter, one row per measure (NMI, ARI),
        mean ± sd over seeds against the value, one line per dataset; log x for t and K.
    defaults
        ``{parameter: value}`` marked with a dotted line (the values a normal run uses).
    context
        A line under the heading (e.g. which config made the scores).
    """
    save_figure(sensitivity_figure(scores, defaults=defaults, context=context), path)


def scalability_figure(scores: pd.DataFrame, *, context: str | None = None) -> Figure:
    """Time and peak memory of each method's whole run against the cells, log axes.

    ``scores`` is :func:`scdsec.scalability.scalability_table`'s first table; its ``total``
    rows are drawn, one line per method (the paper's Fig. 7).
    """
    _require_columns(scores, ["cells", "method", "step", "seconds", "max_rss_mb"], "scores")
    totals = scores[scores["step"] == "total"]
    fig = _new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    methods = _order(totals["method"].unique(), first=["scdsec"])
    colors = dict(zip(methods, categorical_colors(len(methods)), strict=True))
    for ax, column, label in (
        (axes[0], "seconds", "wall time of the whole run (s)"),
        (axes[1], "max_rss_mb", "peak memory of its largest step (MB)"),
    ):
        for method in methods:
            rows = totals[totals["method"] == method].sort_values("cells")
            ran = rows[column].notna().any()
            label = method if ran else f"{method} (did not run)"
            ax.plot(rows["cells"], rows[column], "o-", color=colors[method], label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    _legend_outside(axes[1], title="method")
    fig.suptitle(_heading("Time and memory against the number of cells", context))
    return fig


def plot_scalability(scores: pd.DataFrame, path: PathLike, *, context: str | None = None) -> None:
    """Save :func:`scalability_figure`."""
    save_figure(scalability_figure(scores, context=context), path)


# ---------------------------------------------------------------------------- workflow steps
# File to file, for the rules of workflow/rules/plot.smk.


def read_scores(path: PathLike) -> pd.DataFrame:
    """A scores TSV of the experiments, with the names (dataset, method, …) kept as text."""
    text_columns = ("dataset", "method", "variant", "parameter", "status")
    return pd.read_csv(path, sep="\t", dtype={c: str for c in text_columns})


def loss_plot_step(loss: PathLike, output: PathLike, *, context: str | None = None) -> None:
    """``loss.tsv`` → :func:`plot_loss_curves`."""
    plot_loss_curves(pd.read_csv(loss, sep="\t"), output, context=context)


def embeddings_plot_step(
    h5ad: PathLike,
    output: PathLike,
    *,
    key: str = "scdsec",
    seed: int = 0,
    max_cells: int = 20000,
    context: str | None = None,
) -> None:
    """A run's ``scdsec.h5ad`` → :func:`plot_embeddings`."""
    import anndata as ad

    plot_embeddings(
        ad.read_h5ad(h5ad),
        output,
        key=key,
        seed=seed,
        max_cells=max_cells,
        context=context,
    )


def batches_plot_step(
    h5ad: PathLike,
    output: PathLike,
    *,
    batch_key: str,
    key: str = "scdsec",
    seed: int = 0,
    max_cells: int = 20000,
    context: str | None = None,
) -> None:
    """A run's ``scdsec.h5ad`` → :func:`plot_batches` of ``obsm['X_' + key]``, ``obs[key]``
    and ``obs[batch_key]``."""
    import anndata as ad

    adata = ad.read_h5ad(h5ad)
    if batch_key not in adata.obs:
        raise InputError(
            f"{h5ad} has no batch column obs[{batch_key!r}] (the dataset's batch_key); "
            f"its columns: {list(adata.obs.columns)}"
        )
    emb_key = f"X_{key}"
    if key not in adata.obs or emb_key not in adata.obsm:
        raise InputError(
            f"{h5ad} has no clustering result: needs obs[{key!r}] and obsm[{emb_key!r}]"
        )
    plot_batches(
        adata.obsm[emb_key],
        adata.obs[key],
        adata.obs[batch_key],
        output,
        seed=seed,
        max_cells=max_cells,
        context=context,
    )


def confusion_plot_step(
    h5ad: PathLike, output: PathLike, *, key: str = "scdsec", context: str | None = None
) -> None:
    """A run's ``scdsec.h5ad`` → :func:`plot_confusion` of ``obs['scdsec_true_label']`` vs
    ``obs[key]``."""
    import anndata as ad

    obs = ad.read_h5ad(h5ad).obs
    if "scdsec_true_label" not in obs or obs["scdsec_true_label"].isna().all():
        raise InputError(
            f"{h5ad} has no true labels (obs['scdsec_true_label']): name them with the "
            "dataset's `labels` "
            "in config.yaml, or do not ask for confusion.png"
        )
    known = obs["scdsec_true_label"].notna().to_numpy()
    plot_confusion(obs["scdsec_true_label"][known], obs[key][known], output, context=context)


def experiment_plot_step(kind: str, scores: PathLike, output: PathLike, **kwargs) -> None:
    """An experiment's ``scores.tsv`` → its figure; ``kind`` is benchmark, ablation,
    sensitivity or scalability (:func:`plot_benchmark`, :func:`plot_ablation`,
    :func:`plot_sensitivity`, :func:`scalability_figure`)."""
    plots = {
        "benchmark": plot_benchmark,
        "ablation": plot_ablation,
        "sensitivity": plot_sensitivity,
        "scalability": plot_scalability,
    }
    if kind not in plots:
        raise InputError(f"unknown experiment {kind!r} (known: {sorted(plots)})")
    plots[kind](read_scores(scores), output, **kwargs)
