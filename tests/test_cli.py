"""The command line: simulate, cluster, and one-line errors that name the file."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
)

from scdsec.cli import main
from scdsec.metrics import accuracy

FAST = {
    "normalize": {"n_top_genes": 150},
    "graph": {"n_neighbors": 10, "n_pcs": 20},
    "model": {"dims": [64, 32, 8]},
    "train": {"pretrain_epochs": 20, "epochs": 10},
}


def error_line(capsys, err: str | None = None) -> str:
    """The command's error: its last line on stderr (or on ``err``, stderr already read), there
    once, after no traceback (the log lines of the steps that ran come before it)."""
    err = capsys.readouterr().err if err is None else err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert sum(": error: " in line for line in lines) == 1, err
    assert lines[-1].startswith("scdsec ") and ": error: " in lines[-1], err
    return lines[-1]


@pytest.fixture
def sim_file(tmp_path):
    path = tmp_path / "sim.h5ad"
    assert (
        main(
            [
                "simulate",
                "--cells",
                "300",
                "--genes",
                "300",
                "--types",
                "3",
                "--separation",
                "1.0",
                "--out",
                str(path),
            ]
        )
        == 0
    )
    return path


def test_simulate_proportions(tmp_path):
    out = tmp_path / "rare.h5ad"
    cmd = ["simulate", "--cells", "200", "--genes", "50", "--types", "4", "--out", str(out)]
    assert main([*cmd, "--proportions", "0.5,0.3,0.15,0.05"]) == 0
    adata = ad.read_h5ad(out)
    sizes = adata.obs["cell_type"].value_counts()
    assert [sizes[f"type{k}"] for k in (1, 2, 3, 4)] == [100, 60, 30, 10]
    assert list(adata.uns["simulation"]["proportions"]) == [0.5, 0.3, 0.15, 0.05]
    assert main([*cmd, "--seed", "3", "--proportions", "dirichlet:0.5"]) == 0
    first = ad.read_h5ad(out)
    assert first.uns["simulation"]["proportions"] == 0.5
    assert main([*cmd, "--seed", "3", "--proportions", "dirichlet:0.5"]) == 0
    assert (ad.read_h5ad(out).X != first.X).nnz == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.5,0.5", "one value per type"),
        ("0.5,-0.1,0.3,0.3", ">= 0"),
        ("0,0,0,0", "all be zero"),
        ("0.5,,0.3,0.2", "comma-separated"),
        ("dirichlet:0", "> 0"),
        ("dirichlet:many", "dirichlet:A"),
    ],
)
def test_simulate_bad_proportions_is_one_line(tmp_path, capsys, value, expected):
    out = tmp_path / "bad.h5ad"
    cmd = ["simulate", "--cells", "100", "--genes", "50", "--types", "4", "--out", str(out)]
    assert main([*cmd, "--proportions", value]) == 2
    err = error_line(capsys)
    assert err.startswith("scdsec simulate: error: --proportions") and expected in err
    assert not out.exists()


@pytest.fixture
def fast_config(tmp_path):
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST))
    return path


def test_simulate_writes_labelled_counts(sim_file):
    adata = ad.read_h5ad(sim_file)
    assert adata.shape == (300, 300)
    assert adata.obs["cell_type"].nunique() == 3


def test_cluster_writes_the_outputs(tmp_path, sim_file, fast_config, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "cluster",
            str(sim_file),
            "--out",
            str(out),
            "--n-clusters",
            "3",
            "--labels",
            "cell_type",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--config",
            str(fast_config),
        ]
    )
    assert code == 0
    result = ad.read_h5ad(out / "scdsec.h5ad")
    assert result.obs["scdsec"].dtype.name == "category"
    assert result.obsm["X_scdsec"].shape == (300, 8)
    assert result.obsm["scdsec_q"].shape == (300, 3)
    assert result.uns["scdsec"]["seed"] == 1
    clusters = pd.read_csv(out / "clusters.tsv", sep="\t", dtype=str)
    assert list(clusters.columns) == ["cell", "cluster"] and len(clusters) == 300
    assert (clusters["cluster"].to_numpy() == result.obs["scdsec"].astype(str).to_numpy()).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["nmi"] <= 1 and metrics["labels"] == "cell_type"
    assert metrics["n_unlabelled"] == 0  # every cell labelled
    assert (out / "model" / "model.pt").is_file()
    assert not (out / "checkpoints").exists()  # the training's checkpoints end with it
    captured = capsys.readouterr()
    assert "results in" in captured.out
    # It says what it does, step by step, with its figures.
    for step in ("300 cells × 300 genes", "QC:", "highly variable genes", "Graph:", "K = 3"):
        assert step in captured.err, (step, captured.err)
    assert "pretraining for 20 epochs" in captured.err and "joint training" in captured.err


def test_cluster_in_mini_batches(tmp_path, sim_file, fast_config):
    out = tmp_path / "out"
    args = ["cluster", str(sim_file), "--out", str(out), "--n-clusters", "3", "--device", "cpu"]
    assert main([*args, "--batch-size", "100", "--config", str(fast_config)]) == 0
    record = ad.read_h5ad(out / "scdsec.h5ad").uns["scdsec"]
    assert record["params"]["train"]["batch_size"] == 100
    assert record["batches"]["n_batches"] == 3 and record["batches"]["n_parts"] == 96


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--n-clusters", "many"], None, "--n-clusters"),
        (["--batch-size", "many"], None, "--batch-size"),
        (["--batch-size", "0"], None, "--batch-size"),
        ([], {"train": {"batch_size": "half"}}, "train.batch_size"),
        (["--labels", "nope"], None, "nope"),
        ([], {"graph": {"k": 3}}, "graph.k"),
        ([], {"train": {"epochz": 3}}, "train.epochz"),
        ([], {"model": {"alpha": 2.0}}, "alpha"),
        ([], {"graph": {"n_neighbors": "ten"}}, "graph.n_neighbors must be an integer"),
        ([], {"qc": {"min_cells_fraction": "lots"}}, "qc.min_cells_fraction must be a number"),
        ([], {"normalize": {"flavor": "best"}}, "normalize.flavor must be one of 'seurat'"),
        ([], {"qc": {"max_counts": True}}, "qc.max_counts must be a number or null"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    tmp_path, sim_file, capsys, args, config, expected
):
    cmd = ["cluster", str(sim_file), "--out", str(tmp_path / "out"), *args]
    if config is not None:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(cfg)]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    if config is not None:  # a config is checked before the data is read: no step logged
        assert err.strip().count("\n") == 0, err
    err = error_line(capsys, err)
    assert expected in err
    assert str(sim_file) in err or "bad.yaml" in err or (args and args[0] in err)
    assert not (tmp_path / "out" / "scdsec.h5ad").exists()


def test_missing_and_garbage_inputs(tmp_path, capsys):
    missing = tmp_path / "missing.h5ad"
    assert main(["cluster", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\x02 not a count matrix")
    assert main(["cluster", str(garbage), "--out", str(tmp_path / "o")]) == 2
    assert str(garbage) in capsys.readouterr().err


# --------------------------------------------------------------------------- partly labelled


def _partly_labelled(tmp_path, *, fraction: float = 0.3, seed: int = 4):
    """An .h5ad like case 04: obs['cell_type'] missing (NaN, a few empty) for ~30% of cells."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(300, 300, 3, seed=seed, separation=1.0)
    labels = adata.obs["cell_type"].astype(object).to_numpy()
    rng = np.random.default_rng(seed)
    gone = rng.choice(adata.n_obs, int(fraction * adata.n_obs), replace=False)
    labels[gone] = np.nan
    labels[gone[:5]] = ""  # an empty string is no label either
    adata.obs["cell_type"] = pd.Categorical(labels)
    path = tmp_path / "partly.h5ad"
    adata.write_h5ad(path)
    return path


def _cluster_with_labels(tmp_path, path, capsys):
    """``scdsec cluster PATH --labels cell_type`` with a tiny training; returns its outputs."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**FAST, "train": {"pretrain_epochs": 5, "epochs": 2}}))
    out = tmp_path / "out"
    cmd = ["cluster", str(path), "--out", str(out), "--n-clusters", "3", "--labels", "cell_type"]
    assert main([*cmd, "--device", "cpu", "--config", str(config)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    clusters = pd.read_csv(out / "clusters.tsv", sep="\t", dtype=str).set_index("cell")
    return metrics, clusters, capsys.readouterr().out


def _assert_scored_on_labelled_cells(path, metrics, clusters):
    """metrics.json's scores are those of scikit-learn on the labelled cells alone."""
    truth = ad.read_h5ad(path).obs["cell_type"].astype(object).reindex(clusters.index)
    known = truth.notna() & (truth.astype(str).str.strip() != "")
    t, p = truth[known].astype(str).to_numpy(), clusters.loc[known, "cluster"].to_numpy()
    assert metrics["n_unlabelled"] == int((~known).sum()) > 0
    assert metrics["nmi"] == pytest.approx(normalized_mutual_info_score(t, p))
    assert metrics["ari"] == pytest.approx(adjusted_rand_score(t, p))
    assert metrics["ami"] == pytest.approx(adjusted_mutual_info_score(t, p))
    assert metrics["acc"] == pytest.approx(accuracy(t, p))
    # scoring "no label" as a type of its own (the old behaviour) gives another NMI
    as_type = truth.fillna("nan").astype(str).to_numpy()
    assert metrics["nmi"] != pytest.approx(
        normalized_mutual_info_score(as_type, clusters["cluster"].to_numpy())
    )


def test_cluster_scores_the_labelled_cells_only(tmp_path, capsys):
    path = _partly_labelled(tmp_path)
    metrics, clusters, printed = _cluster_with_labels(tmp_path, path, capsys)
    assert len(clusters) == ad.read_h5ad(path).n_obs  # unlabelled cells are clustered too
    _assert_scored_on_labelled_cells(path, metrics, clusters)
    assert f"{metrics['n_unlabelled']} unlabelled cells left out" in printed


def test_cluster_case_04_labels_partly_missing(tmp_path, capsys, shared_cases):
    path = shared_cases / "04-labels-partly-missing" / "partly_annotated.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    metrics, clusters, _ = _cluster_with_labels(tmp_path, path, capsys)
    _assert_scored_on_labelled_cells(path, metrics, clusters)
    assert metrics["n_unlabelled"] == 89 and metrics["labels"] == "cell_type"


def test_cluster_without_any_label_is_one_line_naming_the_key(tmp_path, capsys):
    path = _partly_labelled(tmp_path, fraction=1.0)
    out = tmp_path / "out"
    assert main(["cluster", str(path), "--out", str(out), "--labels", "cell_type"]) == 2
    err = error_line(capsys)
    assert "'cell_type'" in err and str(path) in err
    assert not (out / "scdsec.h5ad").exists()  # stopped before training


# --------------------------------------------------------------------------- reader options


def _tiny_config(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**FAST, "train": {"pretrain_epochs": 2, "epochs": 1}}))
    return str(config)


def test_cluster_reader_options_reach_the_reader(tmp_path, sim_file, capsys):
    """--layer reads counts from a layer; --cells-as settles a table the content leaves open."""
    adata = ad.read_h5ad(sim_file)
    layered = ad.AnnData(obs=adata.obs, var=adata.var)
    layered.layers["counts"] = adata.X
    layered.write_h5ad(tmp_path / "layered.h5ad")
    run = ["cluster", str(tmp_path / "layered.h5ad"), "--out", str(tmp_path / "a")]
    assert main([*run, "--n-clusters", "3"]) == 2
    err = error_line(capsys)
    assert "has no X" in err and "--layer counts" in err
    config = _tiny_config(tmp_path)
    assert main([*run, "--n-clusters", "3", "--layer", "counts", "--config", config]) == 0
    assert (tmp_path / "a" / "clusters.tsv").exists()

    table = tmp_path / "table.csv"
    pd.DataFrame(adata.X.toarray(), index=[f"r{i}" for i in range(adata.n_obs)]).to_csv(table)
    run = ["cluster", str(table), "--out", str(tmp_path / "b"), "--n-clusters", "3"]
    assert main(run) == 2
    err = error_line(capsys)
    assert "cells_as" in err and str(table) in err
    assert not (tmp_path / "b").exists()
    assert main([*run, "--cells-as", "rows", "--config", config]) == 0
    assert len(pd.read_csv(tmp_path / "b" / "clusters.tsv", sep="\t")) == adata.n_obs

    # a text column besides the labels: named by --metadata-columns, or the error says how
    described = pd.read_csv(table, index_col=0)
    described.insert(0, "donor", np.where(np.arange(adata.n_obs) % 2, "d1", "d2"))
    described.to_csv(table)
    run += ["--cells-as", "rows", "--config", config]
    assert main(run) == 2
    err = error_line(capsys)
    assert "'donor' is not numeric" in err and "--metadata-columns" in err
    assert main([*run, "--metadata-columns", "donor"]) == 0
    result = ad.read_h5ad(tmp_path / "b" / "scdsec.h5ad")
    assert list(result.obs["donor"].unique()) == ["d2", "d1"] and "donor" not in result.var_names


@pytest.mark.parametrize(
    ("case", "args", "n_cells", "fmt"),
    [
        ("01-features-7-columns", [], 300, "10x_mtx"),
        ("02-h5ad-without-X/no_X_counts_in_layer.h5ad", ["--layer", "counts"], 300, "h5ad"),
        ("03-csv-cells-as-rows/cells_by_genes.csv.gz", [], 400, "csv"),
        ("09-ambient-corrected-counts/soupx_corrected", ["--counts", "round"], 300, "10x_mtx"),
        ("10-geo-prefixed-triplets/GSE000000_RAW.tar", ["--sample", "GSM9000001"], 250, "10x_mtx"),
        ("10-geo-prefixed-triplets/GSE000000_RAW", ["--sample", "all"], 500, "10x_mtx"),
        ("11-numeric-gene-ids-csv/entrez_genes_by_cells.csv", [], 300, "csv"),
        ("12-featurecounts-table/counts.txt", [], 200, "tsv"),
        ("15-counts-in-raw/seurat_export_raw.h5ad", ["--layer", "raw"], 300, "h5ad"),
        ("16-loom-spec-3/sample.loom", [], 300, "loom"),
    ],
)
def test_cluster_on_the_reader_cases(tmp_path, shared_cases, case, args, n_cells, fmt):
    out = tmp_path / "out"
    cmd = ["cluster", str(shared_cases / case), "--out", str(out), "--n-clusters", "3", *args]
    assert main([*cmd, "--config", _tiny_config(tmp_path)]) == 0
    result = ad.read_h5ad(out / "scdsec.h5ad")
    assert result.n_obs == n_cells and result.uns["scdsec_source"]["format"] == fmt
    assert result.n_vars > 100  # every gene was kept, none dropped as a "feature type"


# --------------------------------------------------------------- too few cells (case 05)


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        ([], None, "too few for graph.n_neighbors = 50"),
        (["--n-clusters", "41"], {"graph": {"n_neighbors": 10}}, "--n-clusters = 41"),
    ],
)
def test_too_few_cells_is_one_line_naming_the_count_and_the_key(
    tmp_path, capsys, args, config, expected
):
    from scdsec.simulate import simulate_counts

    path = tmp_path / "few.h5ad"
    simulate_counts(40, 200, 3, seed=0, separation=1.0).write_h5ad(path)
    cmd = ["cluster", str(path), "--out", str(tmp_path / "out"), *args]
    if config is not None:
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        cmd += ["--config", str(tmp_path / "c.yaml")]
    assert main(cmd) == 2
    captured = capsys.readouterr().err
    err = error_line(capsys, captured)
    assert f"{path}: 40 cells, " in err and expected in err
    assert "QC:" not in captured  # the file's cells are checked before any step
    assert not (tmp_path / "out").exists()


def test_cells_left_by_qc_are_checked_before_normalising(tmp_path, capsys):
    """A file with cells enough for --n-clusters, but not after QC: stopped right after QC,
    naming the cells after QC and --n-clusters."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(300, 200, 3, seed=0, separation=1.0)
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    config = {"qc": {"max_counts": float(np.quantile(totals, 0.3))}, "graph": {"n_neighbors": 5}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    cmd = ["cluster", str(path), "--out", str(tmp_path / "out"), "--n-clusters", "100"]
    assert main([*cmd, "--config", str(tmp_path / "c.yaml")]) == 2
    captured = capsys.readouterr().err
    err = error_line(capsys, captured)
    assert f"{path}: " in err and "cells after QC, fewer than --n-clusters = 100" in err
    assert "c.yaml" not in err  # the config holds no n_clusters
    assert "QC:" in captured and "highly variable" not in captured
    assert not (tmp_path / "out").exists()


# ------------------------------------------------ settings checked before any work (case 14)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "got '1' (one cluster is no clustering)"),
        ("0", "got '0'"),
        ("-2", "got '-2'"),
        ("2.5", "got '2.5'"),
        ("many", "got 'many'"),
    ],
)
def test_n_clusters_is_checked_before_the_data_is_read(
    tmp_path, sim_file, fast_config, capsys, value, expected
):
    """Named as given (--n-clusters), never blaming --config or the input, before any step."""
    cmd = ["cluster", str(sim_file), "--out", str(tmp_path / "out"), "--n-clusters", value]
    assert main([*cmd, "--config", str(fast_config)]) == 2
    captured = capsys.readouterr().err
    assert captured.strip().count("\n") == 0, captured  # nothing read, no step logged
    err = error_line(capsys, captured)
    assert "--n-clusters must be auto or a whole number of at least 2" in err and expected in err
    assert str(fast_config) not in err and str(sim_file) not in err
    assert not (tmp_path / "out").exists()


def test_more_clusters_than_cells_is_refused_before_qc(tmp_path, sim_file, fast_config, capsys):
    cmd = ["cluster", str(sim_file), "--out", str(tmp_path / "out"), "--n-clusters", "301"]
    assert main([*cmd, "--config", str(fast_config)]) == 2
    captured = capsys.readouterr().err
    err = error_line(capsys, captured)
    assert err.endswith(
        f"{sim_file}: 300 cells, fewer than --n-clusters = 301 clusters; "
        "set --n-clusters to at most 300"
    )
    assert "QC:" not in captured


def test_a_whole_number_written_as_a_float_is_that_integer(tmp_path, sim_file, capsys):
    """graph.n_neighbors: 10.0 in --config and --n-clusters 3.0 read as 10 and 3; 10.5 is
    refused naming the key and the --config file."""
    config = {**FAST, "graph": {"n_neighbors": 10.0, "n_pcs": 20.0}}
    config["train"] = {"pretrain_epochs": 2, "epochs": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    cmd = ["cluster", str(sim_file), "--out", str(out), "--device", "cpu"]
    assert main([*cmd, "--n-clusters", "3.0", "--config", str(tmp_path / "c.yaml")]) == 0
    result = ad.read_h5ad(out / "scdsec.h5ad")
    assert result.obs["scdsec"].nunique() <= 3
    assert result.uns["scdsec_graph"]["n_neighbors"] == 10
    config["graph"]["n_neighbors"] = 10.5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main([*cmd, "--n-clusters", "3", "--config", str(tmp_path / "c.yaml")]) == 2
    err = error_line(capsys)
    assert f"{tmp_path / 'c.yaml'}: graph.n_neighbors must be an integer, got 10.5" in err


def test_case_14_one_cell_type_settings_named_as_given(tmp_path, shared_cases, capsys):
    path = shared_cases / "14-one-cell-type" / "sorted_one_type.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"graph": {"n_neighbors": 10}}))
    cmd = ["cluster", str(path), "--out", str(tmp_path / "out"), "--config", str(config)]
    assert main([*cmd, "--n-clusters", "1"]) == 2
    captured = capsys.readouterr().err
    err = error_line(capsys, captured)
    assert captured.strip().count("\n") == 0, captured  # before the file is read
    assert "--n-clusters must be auto or a whole number of at least 2, got '1'" in err
    assert str(config) not in err and str(path) not in err
    assert main([*cmd, "--n-clusters", "501"]) == 2
    captured = capsys.readouterr().err
    err = error_line(capsys, captured)
    assert f"{path}: 500 cells, fewer than --n-clusters = 501" in err and "QC:" not in captured
    assert str(config) not in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------- genes without counts (case 06)

CASE_06 = {
    "qc": {"min_cells_fraction": 0},
    "normalize": {"flavor": "cell_ranger", "n_top_genes": 200},
    "train": {"pretrain_epochs": 3, "epochs": 2},
}


def _cluster_genes_without_counts(tmp_path, path, config):
    """``scdsec cluster --config`` with case 06's settings; the model's genes all have counts."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    cmd = ["cluster", str(path), "--out", str(out), "--n-clusters", "3", "--device", "cpu"]
    assert main([*cmd, "--config", str(tmp_path / "c.yaml")]) == 0
    genes = ad.read_h5ad(out / "scdsec.h5ad").var_names
    assert len(genes) == 200
    assert (np.asarray(ad.read_h5ad(path)[:, genes].X.sum(axis=0)).ravel() > 0).all()


def test_cluster_with_many_genes_without_counts(tmp_path, mostly_zero_genes):
    path = tmp_path / "mostly_zero.h5ad"
    mostly_zero_genes.write_h5ad(path)
    small = {"graph": {"n_neighbors": 10, "n_pcs": 20}, "model": {"dims": [32, 16, 8]}}
    _cluster_genes_without_counts(tmp_path, path, {**CASE_06, **small})


def test_cluster_case_06_many_all_zero_genes(tmp_path, shared_cases):
    path = shared_cases / "06-many-all-zero-genes" / "mostly_zero_genes.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    _cluster_genes_without_counts(tmp_path, path, CASE_06)


def test_cluster_resumes_a_killed_training_in_the_same_out(tmp_path, sim_file, monkeypatch, capsys):
    """A crash leaves OUT/checkpoints/; the same command again resumes and ends alike."""
    from scdsec.model import _training

    config = _tiny_config(tmp_path)
    cmd = ["cluster", str(sim_file), "--n-clusters", "3", "--config", config]
    assert main([*cmd, "--out", str(tmp_path / "whole")]) == 0
    real, calls = _training._epoch, []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt  # as Ctrl-C
        return real(*args, **kwargs)

    out = ["--out", str(tmp_path / "killed"), "--checkpoint-every", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(_training, "_epoch", crash)
        assert main([*cmd, *out]) == 130
    message = capsys.readouterr().err.strip()
    assert message.endswith(
        "interrupted; the same command resumes from the last checkpoint in "
        f"{tmp_path / 'killed'}/checkpoints"
    )
    assert (tmp_path / "killed" / "checkpoints" / "seed0.pt").is_file()
    assert not (tmp_path / "killed" / "clusters.tsv").exists()
    assert main([*cmd, *out]) == 0
    result = ad.read_h5ad(tmp_path / "killed" / "scdsec.h5ad")
    assert result.uns["scdsec"]["resumed_from"] == {"stage": "pretrain", "epoch": 2}
    whole = (tmp_path / "whole" / "clusters.tsv").read_text()
    assert (tmp_path / "killed" / "clusters.tsv").read_text() == whole
    # a later run without labels into the same folder leaves no scores of other clusters
    (tmp_path / "killed" / "metrics.json").write_text("{}")
    assert main([*cmd, *out]) == 0
    assert not (tmp_path / "killed" / "metrics.json").exists()


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    from bad_inputs import write_bad_inputs

    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


BAD_INPUT_NAMES = [
    "truncated",
    "not_hdf5",
    "empty",
    "negative",
    "nan",
    "infinite",
    "fractional",
    "label_missing",
    "label_length",
    "all_genes_filtered",
    "not_a_10x_folder",
]


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_bad_input_stops_in_one_line_and_loses_nothing(tmp_path, bad_inputs, capsys, name):
    from bad_inputs import digest

    bad = bad_inputs[name]
    before = digest(bad.path)
    cmd = ["cluster", str(bad.path), "--out", str(tmp_path / "out"), "--n-clusters", "3"]
    if "labels" in bad.entry:
        cmd += ["--labels", bad.entry["labels"]]
    if bad.config:
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad.config))
        cmd += ["--config", str(tmp_path / "config.yaml")]
    assert main(cmd) == 2
    line = error_line(capsys)
    for fragment in bad.expected:
        assert fragment in line, line
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert digest(bad.path) == before  # the input is untouched


# ------------------------------------------------ nothing of the user's is overwritten (case 13)

#: The input's own columns with names other tools (and scDSEC before) use for their own.
USERS_OBS = ("label", "n_counts", "n_genes", "size_factor", "scdsec")


def _assert_users_columns_kept(result: ad.AnnData, source: ad.AnnData, rows: np.ndarray) -> None:
    """Every obs/var column of ``source`` is in ``result`` with its values (``rows``: the input
    row of each output row), apart from those renamed ``<name>_input``."""
    for name in source.obs.columns:
        kept = name if name not in ("scdsec",) else "scdsec_input"
        assert kept in result.obs, (name, list(result.obs))
        got = result.obs[kept].astype(str).to_numpy()
        assert (got == source.obs[name].astype(str).to_numpy()[rows]).all(), name
    genes = source.var_names.get_indexer(result.var_names)
    for name in source.var.columns:
        got = result.var[name].astype(str).to_numpy()
        assert (got == source.var[name].astype(str).to_numpy()[genes]).all(), name


def test_the_users_columns_are_never_overwritten(tmp_path, capsys):
    """An input with obs columns label, n_counts, n_genes, size_factor and scdsec, and var
    columns mean and std: the output keeps each, by value; scDSEC's own columns are named
    scdsec_*; its clusters' key, which the input held, keeps the input's as scdsec_input."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(300, 300, 3, seed=2, separation=1.0)
    rng = np.random.default_rng(0)
    adata.obs["label"] = pd.Categorical(rng.choice(["mine_a", "mine_b"], adata.n_obs))
    adata.obs["n_counts"] = rng.integers(0, 9, adata.n_obs)
    adata.obs["n_genes"] = rng.integers(0, 9, adata.n_obs)
    adata.obs["size_factor"] = rng.random(adata.n_obs)
    adata.obs["scdsec"] = "from an earlier tool"
    adata.obs["row"] = np.arange(adata.n_obs)
    adata.var["mean"] = rng.random(adata.n_vars)
    adata.var["std"] = "kept"
    path = tmp_path / "own_columns.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "out"
    cmd = ["cluster", str(path), "--out", str(out), "--n-clusters", "3", "--labels", "cell_type"]
    assert main([*cmd, "--device", "cpu", "--config", _tiny_config(tmp_path)]) == 0
    assert "obs column 'scdsec' of the input kept as 'scdsec_input'" in capsys.readouterr().err
    result = ad.read_h5ad(out / "scdsec.h5ad")
    _assert_users_columns_kept(result, adata, result.obs["row"].to_numpy())
    own = ["scdsec_true_label", "scdsec_total_counts", "scdsec_n_genes_by_counts"]
    assert set(own + ["scdsec_size_factor", "scdsec"]) <= set(result.obs)
    assert {"scdsec_mean", "scdsec_std"} <= set(result.var)
    truth = result.obs["scdsec_true_label"].astype(str).to_numpy()
    assert (truth == adata.obs["cell_type"].astype(str).to_numpy()).all()
    assert (ad.read_h5ad(path).obs["scdsec"] == "from an earlier tool").all()  # input untouched


def test_case_13_merged_samples_keep_their_columns(tmp_path, shared_cases):
    path = shared_cases / "13-merged-samples" / "merged.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    out = tmp_path / "out"
    cmd = ["cluster", str(path), "--out", str(out), "--n-clusters", "5", "--labels", "cell_type"]
    assert main([*cmd, "--device", "cpu", "--config", _tiny_config(tmp_path)]) == 0
    source = ad.read_h5ad(path)
    result = ad.read_h5ad(out / "scdsec.h5ad")
    assert result.n_obs == source.n_obs
    rows = result.obs["orig_row"].to_numpy()  # the case's own column: each cell's input row
    _assert_users_columns_kept(result, source, rows)
    assert result.obs["label"].astype(str).str.startswith("annot_").all()  # not cell_type
    truth = result.obs["scdsec_true_label"].astype(str).to_numpy()
    assert (truth == source.obs["cell_type"].astype(str).to_numpy()[rows]).all()


# ----------------------------------------------------- labels in a separate cell table (kind 10)


def _matrix_and_metadata(tmp_path, *, n_listed: int = 280, sep: str = "\t"):
    """A genes × cells CSV of 300 cells without labels, and a cell metadata table (cells as
    rows, in another order) that lists ``n_listed`` of them with cell_type and donor."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(300, 200, 3, seed=0, separation=1.0)
    adata.obs_names = [f"AAAC{i:04d}-1" for i in range(adata.n_obs)]
    counts = pd.DataFrame(
        adata.X.toarray().T.astype(int), index=adata.var_names, columns=adata.obs_names
    )
    counts.index.name = "gene"
    matrix = tmp_path / "counts.csv"
    counts.to_csv(matrix)
    table = adata.obs[["cell_type"]].assign(donor="d1").iloc[::-1].iloc[:n_listed]
    table.index.name = "barcode"
    metadata = tmp_path / ("cells.tsv" if sep == "\t" else "cells.csv")
    table.to_csv(metadata, sep=sep)
    return matrix, metadata, adata.obs["cell_type"].astype(str)


@pytest.mark.parametrize("sep", ["\t", ","])
def test_labels_from_a_cell_metadata_table(tmp_path, capsys, sep):
    """--metadata joins the table by cell name (any order, cells it lacks are unlabelled);
    --labels names one of its columns."""
    matrix, metadata, truth = _matrix_and_metadata(tmp_path, sep=sep)
    out = tmp_path / "out"
    cmd = ["cluster", str(matrix), "--metadata", str(metadata), "--labels", "cell_type"]
    cmd += ["--out", str(out), "--n-clusters", "3", "--cells-as", "columns", "--device", "cpu"]
    assert main([*cmd, "--config", _tiny_config(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "cell metadata (cell_type, donor) for 280 of 300 cells" in err
    assert "20 of 300 cells are not in the cell metadata table" in err
    result = ad.read_h5ad(out / "scdsec.h5ad")
    got = result.obs["scdsec_true_label"]
    listed = got.notna().to_numpy()
    assert listed.sum() == 280 and not listed[:20].any()  # the table lists the last 280
    assert (got[listed].astype(str) == truth[result.obs_names][listed]).all()
    assert (result.obs.loc[listed, "donor"] == "d1").all()
    assert json.loads((out / "metrics.json").read_text())["n_unlabelled"] == 20


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("rename", "none of the cell metadata table's 280 cell names (first column, e.g. 'x"),
        ("repeat", "cell names appear more than once in the first column"),
        ("labels", "'nope' not found"),
        ("missing", "cell metadata table not found"),
    ],
)
def test_a_cell_metadata_table_that_does_not_fit_is_one_line(tmp_path, capsys, change, expected):
    matrix, metadata, _ = _matrix_and_metadata(tmp_path)
    table = pd.read_csv(metadata, sep="\t", index_col=0)
    labels = "cell_type"
    if change == "rename":
        table.index = "x" + table.index
    elif change == "repeat":
        table = pd.concat([table, table.iloc[:3]])
    elif change == "labels":
        labels = "nope"
    if change == "missing":
        metadata.unlink()
    else:
        table.to_csv(metadata, sep="\t")
    cmd = ["cluster", str(matrix), "--metadata", str(metadata), "--labels", labels]
    cmd += ["--out", str(tmp_path / "out"), "--n-clusters", "3", "--cells-as", "columns"]
    assert main(cmd) == 2
    err = error_line(capsys)
    assert expected in err, err
    if change == "rename":
        assert str(metadata) in err and "(300 cells, e.g. 'AAAC0000-1')" in err
    if change == "labels":
        assert "nor is it a column of the cell metadata table" in err and "'donor'" in err
    assert not (tmp_path / "out").exists()


def test_a_misspelt_config_section_is_refused_naming_the_one_meant(tmp_path):
    from scdsec import InputError
    from scdsec.cli import read_config

    path = tmp_path / "config.yaml"
    path.write_text("grph: {n_neighbors: 5}\nrun: [demo]\ndatasets: {}\n")
    with pytest.raises(InputError, match=r"unknown section 'grph'; did you mean 'graph'"):
        read_config(path)
    path.write_text("graph: {n_neighbors: 5}\nrun: [demo]\ndatasets: {}\n")  # workflow's own
    assert read_config(path) == {"graph": {"n_neighbors": 5}}


def _batched_file(tmp_path, *, batch_in_names: bool = False):
    """300 simulated cells in two batches; with ``batch_in_names``, the batch only in the cell
    names (``<batch>:<cell>``), its column dropped."""
    path = tmp_path / "batched.h5ad"
    args = ["simulate", "--cells", "300", "--genes", "300", "--types", "3"]
    assert main([*args, "--separation", "1.0", "--batches", "2", "--out", str(path)]) == 0
    if batch_in_names:
        adata = ad.read_h5ad(path)
        pairs = zip(adata.obs["batch"], adata.obs_names, strict=True)
        adata.obs_names = [f"{batch}:{cell}" for batch, cell in pairs]
        del adata.obs["batch"]
        adata.write_h5ad(path)
    return path


def test_cluster_with_a_batch_key_scores_batch_mixing(tmp_path, fast_config, capsys):
    out = tmp_path / "out"
    args = ["cluster", str(_batched_file(tmp_path)), "--out", str(out), "--n-clusters", "3"]
    args += ["--labels", "cell_type", "--batch-key", "batch", "--config", str(fast_config)]
    assert main(args) == 0
    scores = json.loads((out / "metrics.json").read_text())
    assert scores["batch_key"] == "batch"
    assert 0 <= scores["ilisi"] <= 1 and 0 <= scores["batch_entropy"] <= 1
    assert "iLISI" in capsys.readouterr().out
    trained = ad.read_h5ad(out / "scdsec.h5ad")
    assert trained.uns["scdsec"]["batch_key"] == "batch"
    assert trained.uns["scdsec_graph"]["use_rep"] == "X_pca_harmony"
    assert trained.uns["scdsec_steps"]["cluster"]["params"]["batch_key"] == "batch"


def test_cluster_batch_from_the_cell_names(tmp_path, fast_config):
    out = tmp_path / "out"
    path = _batched_file(tmp_path, batch_in_names=True)
    args = ["cluster", str(path), "--out", str(out), "--n-clusters", "3", "--config"]
    args += [str(fast_config), "--batch-key", "plate", "--batch-pattern", "^([^:]+):"]
    assert main(args) == 0
    trained = ad.read_h5ad(out / "scdsec.h5ad")
    assert sorted(trained.obs["plate"].unique()) == ["batch1", "batch2"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--batch-key", "donor"], "--batch-key = 'donor': obs has no column 'donor'"),
        (["--batch-pattern", "^(x)"], "--batch-pattern needs --batch-key"),
        (["--batch-key", "plate", "--batch-pattern", "^(zz):"], "matches no part of 300 of 300"),
    ],
)
def test_a_bad_batch_key_is_one_line_naming_the_option(
    tmp_path, fast_config, capsys, extra, expected
):
    path = _batched_file(tmp_path)
    capsys.readouterr()
    args = ["cluster", str(path), "--out", str(tmp_path / "out"), "--config", str(fast_config)]
    assert main([*args, *extra]) != 0
    line = error_line(capsys)
    assert expected in line
    assert not (tmp_path / "out" / "scdsec.h5ad").exists()
