"""Marker genes of the clusters: Wilcoxon rank-sum tests of each cluster against the rest.

:func:`rank_markers` returns a plain table (written as ``markers.tsv`` by the workflow);
:func:`plot_marker_dotplot` draws the top markers of every cluster as scanpy's dot plot.
Both work on the normalised (log1p) expression and keep the gene names of the input
(``var_names``), so the genes in the table are the ones the data came with.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from ._errors import InputError
from ._files import PathLike
from .plotting import _new_figure, _note, natural_key, save_figure

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

logger = logging.getLogger("scdsec")

MARKER_COLUMNS = (
    "cluster",
    "rank",
    "gene",
    "score",
    "logfoldchange",
    "pval_adj",
    "pct_in",
    "pct_out",
)


def _expression(adata: ad.AnnData, layer: str | None):
    """The log-normalised expression: ``layers[layer]``, else ``layers['log1p']`` or ``X``."""
    if layer is not None:
        if layer not in adata.layers:
            raise InputError(f"no layer {layer!r} in the AnnData (has {list(adata.layers)})")
        return adata.layers[layer]
    # The graph step's X is the scaled network input; its log1p expression is a layer.
    # scdsec.h5ad keeps the log1p expression as X and has no such layer.
    return adata.layers["log1p"] if "log1p" in adata.layers else adata.X


def _grouped(adata: ad.AnnData, key: str, layer: str | None) -> ad.AnnData:
    """A bare AnnData of the expression with ``obs[key]`` as a categorical of the clusters
    that have cells, so that the input is never modified."""
    import anndata as ad

    if key not in adata.obs:
        raise InputError(f"no clustering obs[{key!r}] in the AnnData (has {list(adata.obs)})")
    labels = adata.obs[key].astype(str)
    categories = sorted(labels.unique(), key=natural_key)
    obs = pd.DataFrame(
        {key: pd.Categorical(labels, categories=categories)}, index=adata.obs_names.copy()
    )
    return ad.AnnData(
        X=_expression(adata, layer), obs=obs, var=pd.DataFrame(index=adata.var_names.copy())
    )


def rank_markers(
    adata: ad.AnnData,
    key: str = "scdsec",
    n_genes: int = 10,
    *,
    layer: str | None = None,
) -> pd.DataFrame:
    """Top marker genes of every cluster (Wilcoxon rank-sum test against all other cells).

    Parameters
    ----------
    adata
        Cells with cluster labels in ``obs[key]`` and log-normalised expression in
        ``layers['log1p']`` or, without that layer, in ``X`` (as in ``scdsec.h5ad``).
    key
        The clustering to explain.
    n_genes
        Genes kept per cluster.
    layer
        Use this layer instead (must hold log1p-normalised expression).

    Returns
    -------
    One row per cluster and rank: ``cluster``, ``rank`` (1 = strongest), ``gene`` (a
    ``var_name``), ``score`` (Wilcoxon z-score), ``logfoldchange`` (log2 of the ratio of mean
    expression in the cluster to the rest), ``pval_adj`` (Benjamini–Hochberg), ``pct_in`` /
    ``pct_out`` (fraction of cells expressing the gene in the cluster / the rest). Clusters
    with a single cell cannot be tested: they are left out, with a warning in the log.
    """
    import scanpy as sc

    work = _grouped(adata, key, layer)
    sizes = work.obs[key].value_counts()
    categories = list(work.obs[key].cat.categories)
    testable = [c for c in categories if 2 <= sizes[c] < work.n_obs]
    skipped = [c for c in categories if c not in testable]
    if skipped:
        logger.warning(
            "markers: clusters %s not tested (%s)",
            ", ".join(skipped),
            ", ".join(f"{c}: {sizes[c]} cell(s)" for c in skipped),
        )
    if not testable:
        return pd.DataFrame(columns=list(MARKER_COLUMNS))
    n_genes = max(1, min(int(n_genes), work.n_vars))
    sc.tl.rank_genes_groups(
        work,
        key,
        groups=testable,
        reference="rest",
        method="wilcoxon",
        n_genes=n_genes,
        pts=True,
        use_raw=False,
        key_added="markers",
    )
    table = sc.get.rank_genes_groups_df(work, group=testable, key="markers")
    if "group" not in table:  # one group: scanpy leaves the column out
        table.insert(0, "group", testable[0])
    table = table.rename(
        columns={
            "group": "cluster",
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_in",
            "pct_nz_reference": "pct_out",
        }
    )
    table["cluster"] = table["cluster"].astype(str)
    table["rank"] = table.groupby("cluster", sort=False).cumcount() + 1
    order = {c: i for i, c in enumerate(testable)}
    table = table.sort_values(
        ["cluster", "rank"], key=lambda s: s.map(order) if s.name == "cluster" else s
    )
    return table[list(MARKER_COLUMNS)].reset_index(drop=True)


def marker_dotplot_figure(
    adata: ad.AnnData,
    markers: pd.DataFrame,
    *,
    key: str = "scdsec",
    n_genes: int = 3,
    layer: str | None = None,
    context: str | None = None,
) -> Figure:
    """The dot plot of :func:`plot_marker_dotplot`, as a figure (made with pyplot: close it).

    Every cluster of ``obs[key]`` is a row. Each gets its ``n_genes`` best-ranked markers
    not already shown under an earlier cluster (so lower-ranked ones of the table stand in
    for genes shared with an earlier cluster); a cluster left without a column of its own —
    not tested (one cell), or every marker of the table shown elsewhere — is named under
    the title and in a warning of the log, never left out silently.
    """
    import scanpy as sc

    work = _grouped(adata, key, layer)
    ranked = markers.assign(cluster=markers["cluster"].astype(str)).sort_values(
        ["cluster", "rank"], kind="stable"
    )
    var_names: dict[str, list[str]] = {}
    used: set[str] = set()
    untested: list[str] = []
    shared: list[str] = []
    for cluster in work.obs[key].cat.categories:
        own = ranked.loc[ranked["cluster"] == cluster, "gene"].astype(str)
        genes = [g for g in dict.fromkeys(own) if g not in used and g in work.var_names]
        genes = genes[:n_genes]
        used.update(genes)
        if genes:
            var_names[cluster] = genes
        elif own.empty:
            untested.append(cluster)
        else:
            shared.append(cluster)
    left_out = []
    if untested:
        sizes = work.obs[key].value_counts()
        cells = ", ".join(f"{c} ({sizes[c]} cell{'' if sizes[c] == 1 else 's'})" for c in untested)
        left_out.append(f"cluster {cells}: no markers (too few cells to test)")
    if shared:
        left_out.append(f"cluster {', '.join(shared)}: markers all shown under other clusters")
    if left_out:
        logger.warning("marker dot plot: %s", "; ".join(left_out))
    heading = "Marker genes of the clusters" + (f"\n{context}" if context else "")
    if not var_names:
        fig = _new_figure(6, 3)
        _note(fig.subplots(), "no marker genes: fewer than two clusters with two or more cells")
        fig.suptitle(heading)
        return fig
    below = "".join(f"\n{line}" for line in left_out)
    plot = sc.pl.dotplot(
        work,
        var_names,
        groupby=key,
        use_raw=False,
        standard_scale="var",
        title=f"{heading}\ntop {n_genes} per cluster (Wilcoxon vs all other cells), each gene "
        f"once{below}",
        colorbar_title="mean expression\nscaled per gene",
        size_title="fraction of cells\nexpressing (%)",
        show=False,
        return_fig=True,
    )
    plot.make_figure()
    axes = plot.get_axes()
    main = axes["mainplot_ax"]
    main.set_ylabel("cluster")
    main.set_xlabel("gene")
    return plot.fig


def plot_marker_dotplot(
    adata: ad.AnnData,
    markers: pd.DataFrame,
    path: PathLike,
    *,
    key: str = "scdsec",
    n_genes: int = 3,
    layer: str | None = None,
    context: str | None = None,
) -> None:
    """Dot plot of the top marker genes of every cluster (scanpy's ``sc.pl.dotplot``).

    Parameters
    ----------
    adata
        The cells, as for :func:`rank_markers`.
    markers
        The table of :func:`rank_markers`.
    path
        PNG to write: clusters as rows, their top ``n_genes`` markers as columns grouped by
        cluster (a gene that marks two clusters is shown once); dot size: fraction of cells
        expressing the gene, colour: mean log expression scaled per gene.
    key
        The clustering in ``obs``.
    n_genes
        Markers shown per cluster.
    layer
        As for :func:`rank_markers`.
    context
        A line under the heading saying what was run (e.g. "demo · scdsec · seed 0").
    """
    import matplotlib.pyplot as plt

    fig = marker_dotplot_figure(
        adata, markers, key=key, n_genes=n_genes, layer=layer, context=context
    )
    try:
        save_figure(fig, path)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------- workflow steps
# File to file, for the rules of workflow/rules/markers.smk.


def markers_step(
    h5ad: PathLike,
    output: PathLike,
    *,
    key: str = "scdsec",
    n_genes: int = 10,
    html: PathLike | None = None,
    title: str = "Marker genes",
) -> pd.DataFrame:
    """A run's ``scdsec.h5ad`` → :func:`rank_markers` → ``markers.tsv`` (written atomically),
    and the same table as a page for the report at ``html`` (headed ``title``;
    :func:`scdsec.evaluate.write_html_table`) unless it is None."""
    import anndata as ad

    from ._files import atomic_path

    table = rank_markers(ad.read_h5ad(h5ad), key=key, n_genes=n_genes)
    with atomic_path(output) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    if html is not None:
        from .evaluate import write_html_table

        write_html_table(table, html, title=title)
    logger.info(
        "markers: %d clusters, %d rows → %s", table["cluster"].nunique(), len(table), output
    )
    return table


def read_markers(path: PathLike) -> pd.DataFrame:
    """A ``markers.tsv``, with cluster and gene names kept as text."""
    return pd.read_csv(path, sep="\t", dtype={"cluster": str, "gene": str})


def marker_dotplot_step(
    h5ad: PathLike,
    markers: PathLike,
    output: PathLike,
    *,
    key: str = "scdsec",
    n_genes: int = 3,
    context: str | None = None,
) -> None:
    """A run's ``scdsec.h5ad`` and ``markers.tsv`` → :func:`plot_marker_dotplot`."""
    import anndata as ad

    plot_marker_dotplot(
        ad.read_h5ad(h5ad), read_markers(markers), output, key=key, n_genes=n_genes, context=context
    )
