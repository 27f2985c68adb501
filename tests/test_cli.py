"""The command line: simulate, cluster, and one-line errors that name the file."""

from __future__ import annotations

import json

import anndata as ad
import pandas as pd
import pytest
import yaml

from scdsec.cli import main

FAST = {
    "normalize": {"n_top_genes": 150},
    "graph": {"n_neighbors": 10, "n_pcs": 20},
    "model": {"dims": [64, 32, 8]},
    "train": {"pretrain_epochs": 20, "epochs": 10},
}


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
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
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
    assert (out / "model" / "model.pt").is_file()
    assert "results in" in capsys.readouterr().out


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
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
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
