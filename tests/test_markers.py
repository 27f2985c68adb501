"""Marker genes: planted markers are found, gene names are kept, tiny clusters do not crash."""

from __future__ import annotations

import logging

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scdsec import markers as mk


@pytest.fixture
def planted() -> ad.AnnData:
    """3 clusters × 40 cells, 50 genes of Poisson noise; CD3E up in cluster 0, MS4A1 in 1.

    ``X`` is the log1p-normalised expression, as in a run's ``scdsec.h5ad``; one gene has a
    name that looks like a number, to check that names stay text.
    """
    rng = np.random.default_rng(0)
    genes = [f"GENE{j}" for j in range(47)] + ["CD3E", "MS4A1", "0007"]
    counts = rng.poisson(2.0, size=(120, 50)).astype(float)
    counts[:40, genes.index("CD3E")] += rng.poisson(30, size=40)
    counts[40:80, genes.index("MS4A1")] += rng.poisson(30, size=40)
    norm = counts / counts.sum(axis=1, keepdims=True) * 1e4
    adata = ad.AnnData(
        X=sp.csr_matrix(np.log1p(norm).astype(np.float32)),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(120)]),
        var=pd.DataFrame(index=genes),
    )
    adata.obs["scdsec"] = pd.Categorical(np.repeat(["0", "1", "2"], 40))
    return adata


def test_planted_markers_are_found(planted):
    table = mk.rank_markers(planted, n_genes=5)
    assert list(table.columns) == list(mk.MARKER_COLUMNS)
    assert list(table["cluster"].unique()) == ["0", "1", "2"]
    assert table.groupby("cluster").size().tolist() == [5, 5, 5]
    assert list(table.loc[table["cluster"] == "0", "rank"]) == [1, 2, 3, 4, 5]
    top = table[table["rank"] == 1].set_index("cluster")["gene"]
    assert top["0"] == "CD3E" and top["1"] == "MS4A1"
    row = table[(table["cluster"] == "0") & (table["gene"] == "CD3E")].iloc[0]
    assert row["logfoldchange"] > 2 and row["pval_adj"] < 1e-10
    assert row["pct_in"] == pytest.approx(1.0) and row["pct_out"] < 1.0
    assert set(table["gene"]) <= set(planted.var_names)
    # The input is left as it was.
    assert "markers" not in planted.uns and "rank_genes_groups" not in planted.uns


def test_the_log1p_layer_is_preferred_over_a_scaled_x(planted):
    """The graph step's files hold the scaled network input in X and log1p in a layer."""
    planted.layers["log1p"] = planted.X.copy()
    planted.X = np.random.default_rng(1).normal(size=planted.shape).astype(np.float32)
    top = mk.rank_markers(planted, n_genes=1).set_index("cluster")["gene"]
    assert top["0"] == "CD3E" and top["1"] == "MS4A1"


def test_single_cell_and_empty_clusters_do_not_crash(planted, caplog, tmp_path):
    labels = planted.obs["scdsec"].astype(str).to_numpy().copy()
    labels[0] = "9"  # a cluster of one cell
    planted.obs["scdsec"] = pd.Categorical(labels, categories=["0", "1", "2", "5", "9"])
    with caplog.at_level(logging.WARNING, logger="scdsec"):
        table = mk.rank_markers(planted, n_genes=3)
    assert set(table["cluster"]) == {"0", "1", "2"}
    assert "9: 1 cell" in caplog.text
    mk.plot_marker_dotplot(planted, table, tmp_path / "dotplot.png")
    assert mpimg.imread(tmp_path / "dotplot.png").shape[0] > 100


def test_one_cluster_gives_an_empty_table_and_a_figure_that_says_so(planted, tmp_path):
    planted.obs["scdsec"] = pd.Categorical(["0"] * planted.n_obs)
    table = mk.rank_markers(planted)
    assert table.empty and list(table.columns) == list(mk.MARKER_COLUMNS)
    fig = mk.marker_dotplot_figure(planted, table)
    assert any("no marker genes" in t.get_text() for ax in fig.axes for t in ax.texts)
    mk.plot_marker_dotplot(planted, table, tmp_path / "dotplot.png")
    assert (tmp_path / "dotplot.png").stat().st_size > 1000


def test_dotplot_shows_each_gene_once_under_its_cluster(planted):
    import matplotlib.pyplot as plt

    table = mk.rank_markers(planted, n_genes=3)
    fig = mk.marker_dotplot_figure(planted, table, n_genes=2, context="demo · scdsec · seed 0")
    try:
        texts = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
        shown = [t for t in texts if t in set(planted.var_names)]
        assert len(shown) == len(set(shown)) and {"CD3E", "MS4A1"} <= set(shown)
        titles = " ".join(ax.get_title() for ax in fig.axes) + (
            fig._suptitle.get_text() if fig._suptitle else ""
        )
        assert "demo · scdsec · seed 0" in titles
    finally:
        plt.close(fig)


def test_markers_step_writes_a_table_with_the_gene_names_as_text(planted, tmp_path):
    planted.write_h5ad(tmp_path / "scdsec.h5ad")
    mk.markers_step(tmp_path / "scdsec.h5ad", tmp_path / "markers.tsv", n_genes=50)
    table = mk.read_markers(tmp_path / "markers.tsv")
    assert "0007" in set(table["gene"])  # not read back as the number 7
    assert len(table) == 150
    mk.marker_dotplot_step(
        tmp_path / "scdsec.h5ad", tmp_path / "markers.tsv", tmp_path / "plots" / "dot.png"
    )
    assert (tmp_path / "plots" / "dot.png").stat().st_size > 1000


def _figure_text(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes] + [
        t.get_text() for ax in fig.axes for t in ax.texts
    ]
    return " ".join(texts) + (fig._suptitle.get_text() if fig._suptitle else "")


def test_dotplot_names_a_cluster_it_cannot_show_markers_for(planted, caplog):
    """A cluster of one cell has no markers: the plot's heading and the log name it."""
    import matplotlib.pyplot as plt

    labels = planted.obs["scdsec"].astype(str).to_numpy().copy()
    labels[0] = "3"
    planted.obs["scdsec"] = pd.Categorical(labels)
    table = mk.rank_markers(planted, n_genes=3)
    with caplog.at_level(logging.WARNING, logger="scdsec"):
        fig = mk.marker_dotplot_figure(planted, table, n_genes=2)
    try:
        assert "cluster 3 (1 cell): no markers" in _figure_text(fig)
        assert "cluster 3 (1 cell)" in caplog.text
    finally:
        plt.close(fig)


def test_dotplot_shows_the_next_markers_of_a_cluster_whose_top_ones_mark_another(planted):
    """Two clusters whose top markers are the same genes: the second gets its next-ranked
    genes, so every tested cluster has columns of its own; one with none left is named."""
    import matplotlib.pyplot as plt

    table = pd.DataFrame(
        {
            "cluster": ["0", "0", "1", "1", "1", "2", "2"],
            "rank": [1, 2, 1, 2, 3, 1, 2],
            "gene": ["CD3E", "MS4A1", "MS4A1", "CD3E", "GENE5", "CD3E", "MS4A1"],
        }
    )
    fig = mk.marker_dotplot_figure(planted, table, n_genes=2)
    try:
        ticks = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
        assert "GENE5" in ticks  # cluster 1's third marker stands in for the two shown under 0
        assert "cluster 2: markers all shown under other clusters" in _figure_text(fig)
    finally:
        plt.close(fig)
