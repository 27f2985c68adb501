"""The evaluation tables: metrics per method × seed, missing methods, label-free datasets, the
benchmark's Markdown table and the experiments' scores."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
)

from scdsec import evaluate
from scdsec._errors import InputError
from scdsec.metrics import accuracy, label_scores, score_labelled

N_CELLS = 120


def _graph(path, *, labels: bool = True, unlabelled=()):
    """A graph file: 3 well-separated types in a 5-D PCA space.

    The cells at positions ``unlabelled`` get a missing label (NaN in ``obs['scdsec_true_label']``).
    """
    rng = np.random.default_rng(0)
    truth = np.repeat(["a", "b", "c"], N_CELLS // 3)
    centres = {"a": 0.0, "b": 6.0, "c": 12.0}
    pca = np.stack([rng.normal(centres[t], 1.0, 5) for t in truth]).astype(np.float32)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(N_CELLS)])
    if labels:
        stored = truth.astype(object)
        stored[list(unlabelled)] = np.nan
        obs["scdsec_true_label"] = pd.Categorical(stored, categories=["a", "b", "c"])
    adata = ad.AnnData(X=np.zeros((N_CELLS, 2), dtype=np.float32), obs=obs)
    adata.obsm["X_pca"] = pca
    adata.write_h5ad(path)
    return truth, pca, obs.index


def _result(path, key, cells, labels=None, embedding=None, uns=None):
    adata = ad.AnnData(obs=pd.DataFrame(index=cells))
    if labels is not None:
        adata.obs[key] = pd.Categorical(np.asarray(labels).astype(str))
        adata.obsm[f"X_{key}"] = embedding
    adata.uns[key] = uns or {}
    adata.write_h5ad(path)
    return str(path)


def _benchmark(path, seconds, rss):
    path.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t0\t1\n"
    )
    return str(path)


@pytest.fixture
def runs(tmp_path):
    """A perfect deep method, a noisy baseline and a missing one, over two seeds."""
    truth, pca, cells = _graph(tmp_path / "graph.h5ad")
    rng = np.random.default_rng(1)
    out = []
    for seed in (0, 1):
        perfect = _result(
            tmp_path / f"scdsec{seed}.h5ad",
            "scdsec",
            cells,
            labels=pd.factorize(truth)[0],
            embedding=pca[:, :2],
            uns={"n_clusters": 3, "seed": seed},
        )
        noisy = _result(
            tmp_path / f"leiden{seed}.h5ad",
            "leiden",
            cells,
            labels=rng.integers(0, 4, N_CELLS),
            embedding=pca,
            uns={"status": "ok", "reason": ""},
        )
        missing = _result(
            tmp_path / f"scvi{seed}.h5ad",
            "scvi_leiden",
            cells,
            uns={"status": "missing", "reason": "scvi-tools cannot be imported"},
        )
        out += [
            {
                "method": "scdsec",
                "seed": seed,
                "key": "scdsec",
                "h5ad": perfect,
                "benchmark": _benchmark(tmp_path / f"b_scdsec{seed}.tsv", 12.5, 800.0),
                "preprocess_benchmarks": [
                    _benchmark(tmp_path / "norm.tsv", 2.0, 300.0),
                    _benchmark(tmp_path / "graph.tsv", 3.0, 500.0),
                ],
            },
            {
                "method": "leiden",
                "seed": seed,
                "key": "leiden",
                "h5ad": noisy,
                "benchmark": str(tmp_path / "absent.tsv"),
            },
            {
                "method": "scvi_leiden",
                "seed": seed,
                "key": "scvi_leiden",
                "h5ad": missing,
                "benchmark": _benchmark(tmp_path / f"b_scvi{seed}.tsv", 1.0, 90.0),
            },
        ]
    return out


def test_one_row_per_method_and_seed_with_the_measures(tmp_path, runs):
    table = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", n_clusters=3)
    assert list(table.columns) == evaluate.METRIC_COLUMNS
    assert len(table) == 6
    assert set(zip(table["method"], table["seed"], strict=True)) == {
        (m, s) for m in ("scdsec", "leiden", "scvi_leiden") for s in (0, 1)
    }
    perfect = table[table["method"] == "scdsec"].iloc[0]
    for measure in ("nmi", "ari", "acc", "ami"):
        assert perfect[measure] == pytest.approx(1.0)
    assert perfect["n_clusters"] == 3 and perfect["n_clusters_given"] == 3
    assert perfect["silhouette_own"] > 0.5 and perfect["kmeans_ari"] == pytest.approx(1.0)
    assert perfect["pca_kmeans_ari"] == pytest.approx(1.0)
    assert perfect["seconds"] == 12.5 and perfect["max_rss_mb"] == 800.0
    assert perfect["preprocess_seconds"] == 5.0 and perfect["preprocess_max_rss_mb"] == 500.0
    assert perfect["labels"] == "true" and perfect["status"] == "ok"
    assert perfect["n_unlabelled"] == 0  # every cell labelled
    noisy = table[table["method"] == "leiden"].iloc[0]
    assert noisy["ari"] < 0.2 and noisy["n_clusters"] == 4
    assert math.isnan(noisy["seconds"])  # no benchmark file: NaN, not an error
    assert math.isnan(noisy["n_clusters_given"])


def test_a_missing_method_keeps_its_rows_with_nan_and_status(tmp_path, runs):
    table = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", n_clusters=3)
    missing = table[table["method"] == "scvi_leiden"]
    assert len(missing) == 2
    assert (missing["status"] == "missing").all()
    assert missing["note"].str.contains("scvi-tools").all()
    measures = ("nmi", "ari", "acc", "ami", "n_clusters", "silhouette_own", "silhouette_pca")
    for measure in (*measures, "kmeans_ari"):
        assert missing[measure].isna().all(), measure
    assert (missing["seconds"] == 1.0).all()  # it did run, and took a second to say so
    # the dataset's reference (k-means in the PCA space) is there for every row
    assert missing["pca_kmeans_ari"].notna().all()

    out = tmp_path / "metrics.tsv"
    evaluate.write_table(table, out)
    again = evaluate.read_table(out)
    assert len(again) == 6 and again.loc[again["method"] == "scvi_leiden", "nmi"].isna().all()
    assert (again.loc[again["method"] == "scdsec", "note"] == "").all()


def test_a_dataset_without_labels_gets_label_free_measures_only(tmp_path, runs, caplog):
    _graph(tmp_path / "graph.h5ad", labels=False)
    with caplog.at_level("INFO", logger="scdsec"):
        table = evaluate.evaluate_dataset(
            "nolabels", runs, tmp_path / "graph.h5ad", n_clusters="auto"
        )
    lines = [r.getMessage() for r in caplog.records if "nolabels" in r.getMessage()]
    assert len(lines) == len(runs) and "nan" not in " ".join(lines).lower()
    assert "nolabels scdsec seed 0: ok, 3 clusters, unlabelled dataset: no label scores" in lines
    assert "nolabels scvi_leiden seed 0: missing, no clusters" in lines
    assert (table["labels"] == "none").all()
    for measure in ("nmi", "ari", "acc", "ami", "n_unlabelled", "kmeans_ari", "pca_kmeans_ari"):
        assert table[measure].isna().all(), measure
    ran = table[table["status"] == "ok"]
    assert ran["silhouette_pca"].notna().all() and ran["n_clusters"].notna().all()
    assert ran["kmeans_silhouette"].notna().all()  # k-means with the number each method found


def test_score_labelled_leaves_out_the_unlabelled_cells_and_counts_them():
    rng = np.random.default_rng(3)
    truth = rng.choice(["a", "b", "c"], 90).astype(object)
    pred = np.where(rng.random(90) < 0.7, pd.factorize(truth)[0], rng.integers(0, 3, 90))
    truth[::4] = np.nan
    truth[[1, 2, 3]] = [None, "", "  "]  # None and empty strings are no labels either
    known = np.array([not (pd.isna(t) or not str(t).strip()) for t in truth])
    t, p = truth[known].astype(str), pred[known]

    scores = score_labelled(truth, pred, label_key="cell_type")
    assert scores["n_unlabelled"] == int((~known).sum()) == 26
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(t, p))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(t, p))
    assert scores["ami"] == pytest.approx(adjusted_mutual_info_score(t, p))
    assert scores["acc"] == pytest.approx(accuracy(t, p))
    # the same from a categorical with NaN (as read from an .h5ad), and from a Series
    as_categorical = pd.Categorical(np.where(known, truth, None).tolist())
    assert score_labelled(as_categorical, pred) == pytest.approx(scores)
    assert score_labelled(pd.Series(truth, index=np.arange(90) + 7), pred) == pytest.approx(scores)
    # every cell labelled: the plain scores and 0 left out
    everyone = rng.choice(["x", "y"], 90)
    assert score_labelled(everyone, pred) == pytest.approx(
        {**label_scores(everyone, pred), "n_unlabelled": 0}
    )


def test_score_labelled_without_any_label_names_the_key():
    with pytest.raises(InputError, match="'cell_type'") as err:
        score_labelled([np.nan, None, ""], [0, 1, 1], label_key="cell_type")
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(ValueError, match="3 true labels but 2 clusters"):
        score_labelled(["a", "b", "a"], [0, 1])


def test_workflow_evaluation_scores_the_labelled_cells_only(tmp_path, runs, caplog):
    """``evaluate_step`` (workflow/scripts/evaluate.py) scores with :func:`score_labelled`."""
    unlabelled = np.arange(0, N_CELLS, 3)  # 40 cells, of every type
    truth, _, _ = _graph(tmp_path / "graph.h5ad", unlabelled=unlabelled)
    out = tmp_path / "metrics.tsv"
    with caplog.at_level("INFO", logger="scdsec"):
        evaluate.evaluate_step(
            tmp_path / "graph.h5ad", out, dataset="toy", runs=runs, n_clusters=3, label_key="ct"
        )
    assert (
        "toy scdsec seed 0: ok, 3 clusters, NMI 1.000, ARI 1.000 (on the labelled cells; "
        "40 unlabelled cells left out)" in [r.getMessage() for r in caplog.records]
    )
    table = evaluate.read_table(out)
    assert list(table.columns) == evaluate.METRIC_COLUMNS
    ran = table[table["status"] == "ok"]
    assert (ran["n_unlabelled"] == len(unlabelled)).all() and (ran["labels"] != "none").all()
    assert table.loc[table["status"] == "missing", "n_unlabelled"].isna().all()
    perfect = ran[ran["method"] == "scdsec"].iloc[0]
    for measure in ("nmi", "ari", "acc", "ami", "kmeans_ari", "pca_kmeans_ari"):
        assert perfect[measure] == pytest.approx(1.0), measure  # NaN is no extra type
    known = np.ones(N_CELLS, dtype=bool)
    known[unlabelled] = False
    stored = ad.read_h5ad(tmp_path / "graph.h5ad").obs["scdsec_true_label"]
    for run in (r for r in runs if r["method"] == "leiden"):
        pred = ad.read_h5ad(run["h5ad"]).obs["leiden"].astype(str).to_numpy()
        row = ran[(ran["method"] == "leiden") & (ran["seed"] == run["seed"])].iloc[0]
        t, p = truth[known], pred[known]
        assert row["nmi"] == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-5)
        assert row["ari"] == pytest.approx(adjusted_rand_score(t, p), abs=1e-5)
        expected = score_labelled(stored, pred)  # what scdsec cluster's metrics.json would say
        for measure in ("nmi", "ari", "acc", "ami", "n_unlabelled"):
            assert row[measure] == pytest.approx(expected[measure], abs=1e-5), measure


def test_workflow_evaluation_without_any_label_names_the_dataset_and_key(tmp_path, runs):
    _graph(tmp_path / "graph.h5ad", unlabelled=range(N_CELLS))
    with pytest.raises(InputError, match="dataset toy .*'cell_type'") as err:
        evaluate.evaluate_dataset(
            "toy", runs, tmp_path / "graph.h5ad", n_clusters=3, label_key="cell_type"
        )
    assert len(str(err.value).splitlines()) == 1


def _scores():
    rows = []
    for dataset, shift in (("d1", 0.0), ("d2", 0.1)):
        for method, base in (("scdsec", 0.8), ("leiden", 0.6), ("scvi", 0.7)):
            for seed in range(3):
                value = base + shift + 0.01 * seed
                status, note = "ok", ""
                if method == "scvi" and dataset == "d2":
                    value, status, note = math.nan, "missing", "no scvi-tools"
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "nmi": value,
                        "ari": value - 0.1,
                        "status": status,
                        "note": note,
                        "labels": "true",
                    }
                )
    return pd.DataFrame(rows)


def test_markdown_table_bold_best_mean_sd_and_dash_for_missing():
    text = evaluate.markdown_table(_scores(), "nmi", methods=["scdsec", "leiden", "scvi"])
    lines = text.strip().splitlines()
    assert lines[0] == "| dataset | scdsec | leiden | scvi |"
    assert lines[1] == "|---|---|---|---|"
    d1 = lines[2].split(" | ")
    assert d1[0] == "| d1"
    assert d1[1] == "**0.810 ± 0.010**"  # best, bold, mean ± sd over seeds
    assert d1[2] == "0.610 ± 0.010"
    d2 = lines[3].split(" | ")
    assert d2[1].startswith("**0.910") and d2[3].rstrip(" |") == "—"
    average = lines[4].split(" | ")
    assert average[0].startswith("| average over datasets")
    assert average[1] == "**0.860**" and average[2] == "0.660"
    assert average[3].rstrip(" |") == "—"  # missing on one dataset: no average


def test_markdown_table_partial_seeds_and_unlabelled_rows():
    scores = _scores()
    scores.loc[(scores["method"] == "leiden") & (scores["seed"] == 2), "nmi"] = math.nan
    scores.loc[scores["dataset"] == "d2", "labels"] = "none"
    scores.loc[scores["dataset"] == "d2", "nmi"] = math.nan
    text = evaluate.markdown_table(scores, "nmi", methods=["scdsec", "leiden", "scvi"])
    assert "0.605 ± 0.007 (2/3 seeds)" in text
    assert "| d2 (no labels) | — | — | — |" in text
    assert "average over datasets (1)" in text


def test_benchmark_markdown_lists_the_runs_without_scores(tmp_path):
    scores = _scores()
    for dataset, group in scores.groupby("dataset"):
        evaluate.write_table(group, tmp_path / f"{dataset}.tsv")
    out = evaluate.benchmark_step(
        [tmp_path / "d1.tsv", tmp_path / "d2.tsv"],
        tmp_path / "scores.tsv",
        tmp_path / "table.md",
        methods=["scdsec", "leiden", "scvi"],
    )
    assert len(out) == 18
    text = (tmp_path / "table.md").read_text()
    assert "## NMI" in text and "## ARI" in text
    assert "scvi on d2 (seeds 0, 1, 2): missing — no scvi-tools" in text
    assert len(pd.read_csv(tmp_path / "scores.tsv", sep="\t")) == 18


def test_score_entries_for_the_experiments(tmp_path, runs):
    entries = [
        {"dataset": "toy", "variant": "full", "seed": 0, "key": "scdsec", "h5ad": runs[0]["h5ad"]},
        {
            "dataset": "toy",
            "variant": "x",
            "seed": 0,
            "key": "scvi_leiden",
            "h5ad": runs[2]["h5ad"],
        },
    ]
    table = evaluate.score_entries(
        entries, {"toy": tmp_path / "graph.h5ad"}, id_columns=["dataset", "variant", "seed"]
    )
    assert list(table.columns) == [
        "dataset",
        "variant",
        "seed",
        "nmi",
        "ari",
        "acc",
        "status",
        "note",
    ]
    assert table.loc[0, "nmi"] == pytest.approx(1.0)
    assert table.loc[1, "status"] == "missing" and math.isnan(table.loc[1, "ari"])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_peak_memory_reaches_the_metrics(tmp_path, small_counts):
    if not _cuda():
        pytest.skip("needs a CUDA device")
    from scdsec import pp
    from scdsec.pipeline import train_step, write_h5ad

    prepared = pp.prepare(
        small_counts, normalize_params={"n_top_genes": 150}, graph={"n_neighbors": 10, "n_pcs": 20}
    )
    write_h5ad(prepared, tmp_path / "graph.h5ad")
    params = {"model": {"dims": [64, 32, 8]}, "train": {"pretrain_epochs": 5, "epochs": 5}}
    train_step(tmp_path / "graph.h5ad", tmp_path / "run", n_clusters=4, params=params, seed=0)
    result = evaluate.read_result(tmp_path / "run" / "scdsec.h5ad", "scdsec")
    assert result.gpu_max_memory_mb > 0 and result.n_clusters_given == 4


ESTIMATE = {
    "n_clusters": 3,
    "resolution": 0.5,
    "half_resolution": 0.25,
    "n_at_half": 2,
    "twice_resolution": 1.0,
    "n_at_twice": 6,
}


def _k_runs(tmp_path, truth, pca, cells):
    """scdsec trained on the CPU with K from `auto`, leiden_k given K, leiden finding its own."""
    labels = pd.factorize(truth)[0]
    records = {
        "scdsec": {
            "n_clusters": 3,
            "n_clusters_given": 3,
            "n_clusters_estimated": True,
            "n_clusters_estimate": ESTIMATE,
            "device": "cpu",
        },
        "leiden_k": {"status": "ok", "n_clusters_given": 3},
        "leiden": {"status": "ok"},
    }
    return [
        {
            "method": method,
            "seed": 0,
            "key": method,
            "h5ad": _result(tmp_path / f"{method}.h5ad", method, cells, labels, pca, uns=uns),
        }
        for method, uns in records.items()
    ]


def test_how_k_was_chosen_and_the_training_device_reach_the_metrics(tmp_path):
    truth, pca, cells = _graph(tmp_path / "graph.h5ad")
    runs = _k_runs(tmp_path, truth, pca, cells)
    table = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", n_clusters="auto")
    evaluate.write_table(table, tmp_path / "metrics.tsv")
    again = evaluate.read_table(tmp_path / "metrics.tsv").set_index("method")
    assert again.loc["scdsec", "n_clusters_from"] == (
        "auto: 3 (Leiden at resolution 0.5; 2 at 0.25, 6 at 1)"
    )
    assert again.loc["leiden_k", "n_clusters_from"] == "given"
    assert again.loc["leiden", "n_clusters_from"] == "found"
    assert again.loc["scdsec", "device"] == "cpu"
    assert again.loc["leiden", "device"] == ""  # no training: no device


def test_the_metrics_table_is_also_written_as_an_html_page(tmp_path):
    truth, pca, cells = _graph(tmp_path / "graph.h5ad")
    runs = _k_runs(tmp_path, truth, pca, cells)
    evaluate.evaluate_step(
        tmp_path / "graph.h5ad",
        tmp_path / "metrics.tsv",
        dataset="toy<1>",
        runs=runs,
        html=tmp_path / "metrics.html",
    )
    page = (tmp_path / "metrics.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "toy&lt;1&gt;" in page  # escaped
    cells = _html_cells(page)
    assert cells["th"] == evaluate.METRIC_COLUMNS
    assert len(cells["td"]) == 3 * len(evaluate.METRIC_COLUMNS)  # one row per run
    methods = cells["td"][evaluate.METRIC_COLUMNS.index("method") :: len(evaluate.METRIC_COLUMNS)]
    assert methods == ["scdsec", "leiden_k", "leiden"]


def _html_cells(page: str) -> dict[str, list[str]]:
    """The text of every header (th) and data (td) cell of an HTML page, in order."""
    from html.parser import HTMLParser

    cells: dict[str, list[str]] = {"th": [], "td": []}

    class Cells(HTMLParser):
        tag = None

        def handle_starttag(self, tag, attrs):
            if tag in cells:
                self.tag = tag
                cells[tag].append("")

        def handle_endtag(self, tag):
            self.tag = None

        def handle_data(self, data):
            if self.tag:
                cells[self.tag][-1] += data.strip()

    Cells().feed(page)
    return cells


def test_the_run_summary_gives_scores_k_and_device_per_dataset(tmp_path):
    from scdsec.workflow_summary import run_summary

    truth, pca, cells = _graph(tmp_path / "graph.h5ad")
    runs = _k_runs(tmp_path, truth, pca, cells)
    evaluate.evaluate_step(tmp_path / "graph.h5ad", tmp_path / "toy.tsv", dataset="toy", runs=runs)
    _graph(tmp_path / "bare.h5ad", labels=False)
    evaluate.evaluate_step(tmp_path / "bare.h5ad", tmp_path / "bare.tsv", dataset="bare", runs=runs)
    tables = {"toy": tmp_path / "toy.tsv", "bare": tmp_path / "bare.tsv", "gone": tmp_path / "x"}
    text = run_summary(tables, gpu_requested=True)
    toy, bare = text.split(f"bare: {tmp_path / 'bare.tsv'}")
    assert f"toy: {tmp_path / 'toy.tsv'}" in toy
    scdsec = next(line for line in toy.splitlines() if line.strip().startswith("scdsec"))
    assert "NMI 1.000" in scdsec and "ARI 1.000" in scdsec
    assert "K 3, auto: 3 (Leiden at resolution 0.5; 2 at 0.25, 6 at 1)" in scdsec
    assert scdsec.endswith("on cpu")
    assert "K 3, given" in toy and "found" in toy
    assert "(no true labels" in bare.splitlines()[0] and "NMI" not in bare.split("\n", 1)[1]
    assert "ran on the CPU: toy scdsec, bare scdsec" in text  # asked for a GPU, got none
    assert "gone" not in text
    assert text.endswith("snakemake --report report.html")
    assert "CPU" not in run_summary(tables)  # no GPU asked for: nothing to point out
    assert run_summary({"gone": tmp_path / "x"}) == ""


def test_a_batch_key_adds_batch_mixing_to_the_metrics_the_table_and_the_summary(tmp_path):
    """With a batch key, each method gets iLISI of its embedding and the batch entropy of its
    clusters: a batch that splits every type evenly is as mixed as can be (entropy 1), one
    that follows the types not at all mixed (0); without a key the table is as before."""
    from scdsec.workflow_summary import run_summary

    truth, pca, cells = _graph(tmp_path / "graph.h5ad")
    graph = ad.read_h5ad(tmp_path / "graph.h5ad")
    graph.obs["even"] = np.tile(["x", "y"], len(cells) // 2)  # every type half x, half y
    graph.obs["by_type"] = np.where(truth == "a", "x", "y")  # type a alone in batch x
    graph.write_h5ad(tmp_path / "graph.h5ad")
    runs = _k_runs(tmp_path, truth, pca, cells)
    plain = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad")
    assert list(plain.columns) == evaluate.METRIC_COLUMNS
    even = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", batch_key="even")
    assert list(even.columns) == evaluate.METRIC_COLUMNS + evaluate.BATCH_COLUMNS
    assert np.allclose(even["batch_entropy"], 1.0) and (even["ilisi"] > 0.8).all()
    by_type = evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", batch_key="by_type")
    assert np.allclose(by_type["batch_entropy"], 0.0) and (by_type["ilisi"] < 0.1).all()
    evaluate.write_table(even, tmp_path / "even.tsv")
    markdown = evaluate.benchmark_markdown(pd.concat([plain.assign(dataset="nokey"), even]))
    ilisi_table = markdown.split("## iLISI", 1)[1].split("## Batch entropy", 1)[0]
    assert "| toy |" in ilisi_table and "nokey" not in ilisi_table
    line = next(
        row
        for row in run_summary({"toy": tmp_path / "even.tsv"}).splitlines()
        if row.strip().startswith("scdsec")
    )
    assert "iLISI" in line
    with pytest.raises(InputError, match="no obs\\['donor'\\]"):
        evaluate.evaluate_dataset("toy", runs, tmp_path / "graph.h5ad", batch_key="donor")
