"""Figures: each writes a readable PNG with the expected panels; the workflow's plot rules."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scdsec import plotting
from scdsec._errors import InputError


def _texts(fig) -> list[str]:
    """Every piece of text drawn on the figure (titles, labels, annotations, legends)."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]


def _check_png(path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list(path.parent.glob(".*.tmp*")), "the temporary file is left behind"
    return image


@pytest.fixture
def history() -> pd.DataFrame:
    """Loss history as the model writes it: 10 pretraining and 5 clustering epochs."""
    pre = pd.DataFrame(
        {
            "stage": "pretrain",
            "epoch": np.arange(1, 11),
            "zinb": np.geomspace(100, 0.5, 10),  # spans > 20×: log scale
            "rec": np.linspace(1.0, 0.9, 10),
            "graph": np.linspace(0.7, 0.5, 10),
            "kl": np.nan,
            "total": np.linspace(3, 2, 10),
            "labels_changed": np.nan,
            "seconds": np.arange(10.0),
        }
    )
    clu = pd.DataFrame(
        {
            "stage": "cluster",
            "epoch": np.arange(1, 6),
            "zinb": 0.5,
            "rec": 0.9,
            "graph": 0.5,
            "kl": np.linspace(0.2, 0.1, 5),
            "total": 2.0,
            "labels_changed": [0.1, 0.05, 0.01, 0.0, 0.0],
            "seconds": np.arange(10.0, 15.0),
        }
    )
    return pd.concat([pre, clu], ignore_index=True)


def test_loss_curves_one_panel_per_term_and_a_line_where_clustering_starts(history, tmp_path):
    fig = plotting.loss_curves_figure(history, context="demo · scdsec · seed 0")
    assert len(fig.axes) == 6  # zinb, rec, graph, kl, total, labels changed
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("ZINB") and titles[3].startswith("Clustering loss KL")
    zinb, rec = fig.axes[0], fig.axes[1]
    assert zinb.get_yscale() == "log" and rec.get_yscale() == "linear"
    starts = [line for line in zinb.get_lines() if line.get_label() == plotting.CLUSTERING_STARTS]
    assert len(starts) == 1 and starts[0].get_xdata()[0] == pytest.approx(10.5)
    assert "demo · scdsec · seed 0" in fig.get_suptitle()
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)

    plotting.plot_loss_curves(history, tmp_path / "loss.png")
    _check_png(tmp_path / "loss.png")


def test_loss_curves_without_labels_changed_and_with_a_switched_off_term(history):
    history = history.drop(columns="labels_changed")
    history["graph"] = np.nan
    fig = plotting.loss_curves_figure(history)
    assert len(fig.axes) == 5
    assert any("switched off" in t for t in _texts(fig))


@pytest.fixture
def clustered() -> ad.AnnData:
    """90 cells of three types, log expression in X, a 4-d embedding and a clustering."""
    rng = np.random.default_rng(0)
    truth = np.repeat(["alpha", "beta", "gamma"], 30)
    centres = rng.normal(0, 3, size=(3, 20))
    x = np.abs(centres[np.repeat(np.arange(3), 30)] + rng.normal(size=(90, 20)))
    adata = ad.AnnData(
        X=sp.csr_matrix(np.log1p(x).astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(90)]),
        var=pd.DataFrame(index=[f"G{j}" for j in range(20)]),
    )
    adata.obs["scdsec_true_label"] = pd.Categorical(truth)
    pred = np.repeat(["2", "0", "1"], 30)
    pred[:3] = "3"  # a small extra cluster
    adata.obs["scdsec"] = pd.Categorical(pred, categories=["0", "1", "2", "3"])
    adata.obsm["X_scdsec"] = rng.normal(size=(90, 4)) + np.repeat(np.eye(3, 4) * 6, 30, axis=0)
    return adata


def test_embeddings_grid_with_and_without_true_labels(clustered, tmp_path, monkeypatch):
    # The real UMAP once, for the file; the layout checks with a quick stand-in.
    plotting.plot_embeddings(clustered, tmp_path / "embeddings.png")
    _check_png(tmp_path / "embeddings.png")
    monkeypatch.setattr(plotting, "_umap", lambda data, seed: data[:, :2])

    fig = plotting.embeddings_figure(clustered, seed=0)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert "Normalised expression" in titles[0] and "scDSEC embedding" in titles[1]
    assert "true cell type" in titles[0] and "cluster" in titles[2]
    assert all(ax.get_xlabel() == "UMAP 1" for ax in fig.axes)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2
    # The cluster legend names the matched type of every cluster and the one left over.
    cluster_entries = [t.get_text() for t in legends[1].get_texts()]
    assert cluster_entries == ["0 → beta", "1 → gamma", "2 → alpha", "3 (unmatched)"]

    partly = clustered.copy()
    partly.obs["scdsec_true_label"] = (
        partly.obs["scdsec_true_label"].astype(object).where(np.arange(90) > 5, None)
    )
    fig = plotting.embeddings_figure(partly, seed=0)
    assert "unlabelled" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]

    unlabelled = clustered.copy()
    del unlabelled.obs["scdsec_true_label"]
    fig = plotting.embeddings_figure(unlabelled, seed=0, max_cells=60)
    assert len(fig.axes) == 2
    assert "60 of 90 cells" in fig.get_suptitle()


def test_umap_keeps_groups_apart_and_a_seed_gives_the_same_map():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 150)
    data = rng.normal(size=(600, 10)) + 8 * np.eye(4, 10)[groups]
    xy = plotting._umap(data, seed=3)
    assert xy.shape == (600, 2) and np.isfinite(xy).all()
    # each cell's nearest cells on the map are of its group
    knn = KNeighborsClassifier(n_neighbors=6).fit(xy, groups)
    assert (knn.predict(xy) == groups).mean() > 0.98
    assert np.array_equal(plotting._umap(data, seed=3), xy)
    assert not np.allclose(plotting._umap(data, seed=4), xy)
    assert plotting._umap(data[:3], seed=0).shape == (3, 2)


def test_embeddings_need_the_clustering(clustered):
    with pytest.raises(InputError, match="X_other"):
        plotting.embeddings_figure(clustered, key="other")


def test_confusion_after_matching_has_the_matched_counts_on_its_diagonal(tmp_path):
    # type a: 4 cells in cluster "2", 1 in "0"; b: 3 in "0"; c: 2 in "1", 1 in "3" (left over).
    truth = ["a"] * 5 + ["b"] * 3 + ["c"] * 3
    pred = ["2", "2", "2", "2", "0"] + ["0"] * 3 + ["1", "1", "3"]
    table = plotting.matched_confusion(truth, pred)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == ["2", "0", "1", "3"]  # matched order, unmatched last
    assert list(np.diag(table.to_numpy())) == [4, 3, 2]
    assert table.to_numpy().sum() == 11

    fig = plotting.confusion_figure(truth, pred)
    assert len(fig.axes) == 2  # the matrix and its colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "0", "1", "3"]
    annotations = {t.get_text() for t in ax.texts}
    assert {"4", "3", "2", "1"} <= annotations
    image = ax.get_images()[0].get_array()
    assert np.allclose(image.sum(axis=1), 1.0)  # row-normalised colours
    assert "ACC 0.818" in ax.get_title()  # 9 of 11 cells on the diagonal

    plotting.plot_confusion(truth, pred, tmp_path / "confusion.png")
    _check_png(tmp_path / "confusion.png")


def test_confusion_more_types_than_clusters():
    table = plotting.matched_confusion(["a", "a", "b", "c"], ["0", "0", "0", "1"])
    assert table.shape == (3, 2)
    assert list(np.diag(table.to_numpy())) == [2, 1]


def test_confusion_step_without_true_labels_says_so(clustered, tmp_path):
    del clustered.obs["scdsec_true_label"]
    clustered.write_h5ad(tmp_path / "scdsec.h5ad")
    with pytest.raises(InputError, match="no true labels"):
        plotting.confusion_plot_step(tmp_path / "scdsec.h5ad", tmp_path / "confusion.png")
    assert not (tmp_path / "confusion.png").exists()


def _benchmark_scores() -> pd.DataFrame:
    rows = []
    for dataset in ("muraro", "demo"):
        for method in ("leiden", "scdsec", "scvi_leiden"):
            for seed in (0, 1, 2):
                missing = method == "scvi_leiden" and dataset == "muraro"
                value = np.nan if missing else 0.5 + 0.1 * seed
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "nmi": value,
                        "ari": value,
                        "acc": value,
                        "ami": value,
                        "n_clusters": 4,
                        "silhouette_own": 0.2,
                        "seconds": 1.0,
                        "max_rss_mb": 100.0,
                        "status": "missing" if missing else "ok",
                        "note": "scvi-tools is not installed" if missing else "",
                    }
                )
    return pd.DataFrame(rows)


def test_benchmark_shows_missing_methods_as_labelled_gaps(tmp_path):
    scores = _benchmark_scores()
    fig = plotting.benchmark_figure(scores)
    assert len(fig.axes) == 2
    nmi, ari = fig.axes
    assert nmi.get_ylabel() == "NMI" and ari.get_ylabel() == "ARI"
    assert [t.get_text() for t in ari.get_xticklabels()] == ["muraro", "demo"]
    assert sum(t.get_text() == "missing" for t in nmi.texts) == 1
    # 2 datasets × 3 methods, one missing → 5 bars per panel, heights the means over seeds.
    bars = [p for p in nmi.patches if p.get_height() > 0]
    assert len(bars) == 5
    assert all(b.get_height() == pytest.approx(0.6) for b in bars)
    legend = [t.get_text() for t in nmi.get_legend().get_texts()]
    assert legend == ["scdsec", "leiden", "scvi_leiden"]  # the model first, none dropped
    assert "3 seeds" in fig.get_suptitle()

    path = tmp_path / "results" / "benchmark" / "scores.tsv"
    path.parent.mkdir(parents=True)
    scores.to_csv(path, sep="\t", index=False)
    plotting.experiment_plot_step("benchmark", path, path.with_name("benchmark.png"))
    _check_png(path.with_name("benchmark.png"))


def test_ablation_puts_the_full_model_first(tmp_path):
    rows = [
        {"dataset": d, "variant": v, "seed": s, "nmi": 0.5, "ari": 0.4, "acc": 0.6}
        for d in ("muraro", "demo")
        for v in ("wo_re", "wo_gcn", "full", "no_kl")
        for s in (0, 1)
    ]
    for row in rows:  # one variant could not run on one dataset
        row["status"] = "missing" if (row["variant"], row["dataset"]) == ("no_kl", "demo") else "ok"
    fig = plotting.ablation_figure(pd.DataFrame(rows))
    assert len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[0].texts] == ["missing"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["NMI", "ARI", "ACC"]
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert labels == ["full", "wo_re", "wo_gcn", "no_kl"]
    plotting.plot_ablation(pd.DataFrame(rows), tmp_path / "ablation.png")
    _check_png(tmp_path / "ablation.png")


def test_sensitivity_one_column_per_parameter_log_x_for_t_and_k(tmp_path):
    sweeps = {"alpha": [0, 0.5, 1], "t": [300, 1000, 5000], "k": [5, 50, 200]}
    rows = [
        {"dataset": d, "parameter": p, "value": v, "seed": s, "nmi": 0.5, "ari": 0.4, "acc": 0.6}
        for d in ("muraro", "demo")
        for p, values in sweeps.items()
        for v in values
        for s in (0, 1)
    ]
    fig = plotting.sensitivity_figure(pd.DataFrame(rows), defaults={"t": 1000, "k": 50})
    assert len(fig.axes) == 6  # NMI and ARI × t, k, alpha
    top = fig.axes[:3]
    assert [ax.get_title() for ax in top] == [
        "Sensitivity to t",
        "Sensitivity to K",
        "Sensitivity to α",
    ]
    assert [ax.get_xscale() for ax in top] == ["log", "log", "linear"]
    assert fig.axes[0].get_ylabel() == "NMI" and fig.axes[3].get_ylabel() == "ARI"
    plotting.plot_sensitivity(pd.DataFrame(rows), tmp_path / "sensitivity.png")
    _check_png(tmp_path / "sensitivity.png")


def test_palette_stays_distinct_up_to_twenty_groups():
    colors = plotting.categorical_colors(20)
    assert len(set(colors)) == 20
    assert plotting.natural_key("type10") > plotting.natural_key("type2")
