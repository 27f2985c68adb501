"""The evaluation and experiment targets of the workflow: evaluate, benchmark, ablation,
sensitivity (dry runs of the real configurations, and a run on a tiny demo)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, SHARED_DATA
from env_imports import assert_envs_hold_recorded_imports, recording_env
from workflow_helpers import only_file, planned_jobs, snakemake, write_config

TINY = {
    "run": ["demo"],
    "seeds": [0, 1],
    "datasets": {
        "demo": {
            "simulate": {"cells": 300, "genes": 200, "types": 3, "separation": 1.0},
            "labels": "cell_type",
            "n_clusters": 3,
        }
    },
    "normalize": {"n_top_genes": 100},
    "graph": {"n_neighbors": 10, "n_pcs": 10},
    "model": {"dims": [32, 16, 4]},
    "train": {"pretrain_epochs": 10, "epochs": 5},
    "methods": ["scdsec", "leiden_k", "scvi_kmeans"],
    "baselines": {"n_top_genes": 100, "n_pcs": 10},
    "experiments": {
        "seeds": [0],
        "ablation": ["no_kl"],
        "sensitivity": {"t": [5000, 10000], "k": [5], "alpha": [0.3]},
    },
}


def test_default_config_plans_every_method_and_the_experiments(tmp_path):
    (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    jobs = planned_jobs(tmp_path)
    # all: scdsec trained, three standard baselines, one evaluation per dataset
    assert jobs["train"] == 1 and jobs["baseline"] == 3 and jobs["evaluate"] == 1
    # ablation: the full model and 7 variants × 3 seeds on the first dataset
    jobs = planned_jobs(tmp_path, "ablation")
    assert jobs["train"] == 8 * 3 and jobs["ablation_scores"] == 1 and jobs["ablation"] == 1
    # a variant's result is unambiguous: one train job on its own graph
    folder = config_run_folder(tmp_path, "scdsec-k10", seed=0)
    assert folder.startswith("results/demo/scdsec-k10/t1000_k10_")
    jobs = planned_jobs(tmp_path, f"{folder}/scdsec.h5ad")
    assert jobs == {"download": 1, "qc": 1, "normalize": 1, "graph": 1, "train": 1}
    folder = config_run_folder(tmp_path, "scdsec-t500", seed=0)
    assert "graph_t500_k50_" in snakemake(tmp_path, "-n", f"{folder}/clusters.tsv").stdout
    jobs = planned_jobs(tmp_path, f"{config_run_folder(tmp_path, 'leiden', seed=3)}/leiden.h5ad")
    assert jobs == {"download": 1, "qc": 1, "baseline": 1}


def config_run_folder(workdir: Path, method: str, seed: int, dataset: str = "demo") -> str:
    """The run folder that the config gives ``method``, found as a user would: asking for a
    folder of other settings is refused with a message that names the config's."""
    other = f"results/{dataset}/{method}/other/seed{seed}/clusters.tsv"
    proc = snakemake(workdir, "-n", other, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "holds a run of other settings" in text, text[-2000:]
    params = re.search(r"than the config's \(([\w.]+)\)", text).group(1)
    return f"results/{dataset}/{method}/{params}/seed{seed}"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"methods": ["scdsec", "louvain"]}, "louvain"),
        ({"experiments": {"datasets": ["nope"]}}, "experiments.datasets"),
        ({"experiments": {"ablation": ["wo_everything"]}}, "wo_everything"),
        ({"baselines": {"kmeans_n_init": 1}}, "kmeans_n_init"),
    ],
)
def test_a_wrong_experiment_config_stops_naming_the_key(tmp_path, change, key):
    write_config(tmp_path, {**TINY, **change})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists()


def test_shared_data_benchmark_stops_at_once_without_the_folder(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    proc = snakemake(
        work,
        "-n",
        "benchmark",
        "--configfile",
        str(ROOT / "benchmarks" / "shared_data.yaml"),
        check=False,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "../shared/data is missing" in out and "pbmc_10x" in out


@pytest.mark.realdata
def test_shared_data_benchmark_plans_the_seven_datasets_and_ten_seeds(tmp_path, shared_data):
    """`snakemake benchmark --configfile benchmarks/shared_data.yaml`, run from a checkout
    beside ../shared/data (a link to the real folder here)."""
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED_DATA)
    (work / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    jobs = planned_jobs(
        work, "benchmark", "--configfile", str(ROOT / "benchmarks" / "shared_data.yaml")
    )
    assert jobs["download"] == 7 and jobs["evaluate"] == 7 and jobs["benchmark"] == 1
    assert jobs["train"] == 7 * 10 * 2  # scdsec and sdcn
    assert jobs["baseline"] == 7 * 10 * 3  # leiden, leiden_k, kmeans_pca
    config = yaml.safe_load((ROOT / "benchmarks" / "shared_data.yaml").read_text())
    # Every labelled file of the folder but the two-platform cell lines, which carry a batch
    # (platform) and belong to the batch-aware benchmark still to come (issue 25).
    batch_only = {"cellbench_3cl_2platforms.h5ad"}
    assert {Path(d["source"]).name for d in config["datasets"].values()} == {
        p.name for p in SHARED_DATA.iterdir() if p.suffix in (".h5", ".h5ad")
    } - batch_only


def test_simulated_benchmark_plans_its_regimes(tmp_path):
    """`snakemake benchmark --configfile benchmarks/simulated.yaml` needs no data folder."""
    (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    jobs = planned_jobs(
        tmp_path, "benchmark", "--configfile", str(ROOT / "benchmarks" / "simulated.yaml")
    )
    config = yaml.safe_load((ROOT / "benchmarks" / "simulated.yaml").read_text())
    n_runs = len(config["run"]) * len(config["seeds"])
    assert jobs["download"] == len(config["run"]) == 2
    assert jobs["train"] == n_runs and jobs["baseline"] == 3 * n_runs


@pytest.mark.slow
def test_tiny_demo_runs_evaluate_benchmark_ablation_and_sensitivity(tmp_path):
    write_config(tmp_path, TINY)
    snakemake(
        tmp_path,
        "benchmark",
        "ablation",
        "sensitivity",
        "--set-threads",
        "train=1",
        "baseline=1",
        "scvi=1",
        env=recording_env(tmp_path / "imports"),
    )
    results = tmp_path / "results"
    # Each job's env names what its script imported.
    checked = assert_envs_hold_recorded_imports(tmp_path / "imports")
    assert {"download", "qc", "train", "baseline", "benchmark_scores", "plot_ablation"} <= checked

    metrics = pd.read_csv(results / "demo" / "metrics.tsv", sep="\t")
    assert len(metrics) == 3 * 2
    assert set(zip(metrics["method"], metrics["seed"], strict=True)) == {
        (m, s) for m in TINY["methods"] for s in (0, 1)
    }
    ran = metrics[metrics["method"] != "scvi_kmeans"]
    assert (ran["status"] == "ok").all() and ran["nmi"].between(0, 1).all()
    assert (ran["seconds"] > 0).all() and (ran["max_rss_mb"] > 0).all()
    assert (metrics.loc[metrics["method"] == "leiden_k", "n_clusters"] == 3).all()
    deep = metrics[metrics["method"] == "scdsec"]
    assert (deep["preprocess_seconds"] > 0).all() and (deep["n_clusters_given"] == 3).all()
    assert deep["silhouette_pca"].notna().all() and deep["kmeans_ari"].notna().all()
    assert metrics["pca_kmeans_ari"].notna().all()
    missing = metrics[metrics["method"] == "scvi_kmeans"]
    if (missing["status"] == "missing").any():  # scvi-tools is not installed here
        assert missing["nmi"].isna().all() and missing["note"].str.contains("scvi-tools").all()

    scores = pd.read_csv(results / "benchmark" / "scores.tsv", sep="\t")
    required = "dataset method seed nmi ari acc ami n_clusters silhouette_pca silhouette_own"
    required += " seconds max_rss_mb status"
    assert set(required.split()) <= set(scores.columns) and len(scores) == 6
    table = (results / "benchmark" / "table.md").read_text()
    assert "## NMI" in table and "**" in table and "average over datasets" in table

    ablation = pd.read_csv(results / "ablation" / "scores.tsv", sep="\t")
    assert list(ablation.columns[:6]) == ["dataset", "variant", "seed", "nmi", "ari", "acc"]
    assert list(ablation["variant"]) == ["full", "no_kl"]
    assert ablation["nmi"].notna().all()

    sensitivity = pd.read_csv(results / "sensitivity" / "scores.tsv", sep="\t")
    assert list(sensitivity.columns[:7]) == [
        "dataset",
        "parameter",
        "value",
        "seed",
        "nmi",
        "ari",
        "acc",
    ]
    n_genes = int(only_file(results, "demo/preprocess/n_genes_*.txt").read_text())
    by_parameter = sensitivity.groupby("parameter")["value"].apply(list).to_dict()
    assert by_parameter == {"t": [n_genes], "k": [5], "alpha": [0.3]}  # 5000, 10000 capped
    assert sensitivity["nmi"].notna().all()
    for method in (f"scdsec-t{n_genes}", "scdsec-k5", "scdsec-alpha0.3", "scdsec-no_kl"):
        runs = list((results / "demo" / method).glob("*/seed0/scdsec.h5ad"))
        assert len(runs) == 1, method
        logs = list((tmp_path / "logs" / "demo" / method).glob("*/seed0/train.log"))
        assert len(logs) == 1, method
    only_file(results, f"demo/preprocess/graph_t{n_genes}_k10_*.h5ad")
    only_file(results, "demo/preprocess/graph_t100_k5_*.h5ad")
    assert not math.isnan(float(ablation["acc"].iloc[0]))

    # Everything is cached: nothing left to do.
    assert planned_jobs(tmp_path, "benchmark", "ablation", "sensitivity") == {}


def test_scalability_config_plans_each_size_and_method(tmp_path):
    """`snakemake scalability --configfile benchmarks/scalability.yaml`: every size × method."""
    (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    jobs = planned_jobs(
        tmp_path, "scalability", "--configfile", str(ROOT / "benchmarks" / "scalability.yaml")
    )
    assert jobs["download"] == jobs["train"] == jobs["baseline"] == jobs["scvi"] == 3
    assert jobs["machine"] == jobs["scalability_scores"] == jobs["plot_scalability"] == 1
    assert "evaluate" not in jobs  # the target measures the steps, nothing else


@pytest.mark.slow
def test_scalability_target_writes_time_memory_and_throughput(tmp_path):
    sizes = {"small": 300, "large": 600}
    config = {
        **TINY,
        "run": list(sizes),
        "seeds": [0],
        "methods": ["scdsec", "leiden"],
        "datasets": {
            name: {
                "simulate": {"cells": cells, "genes": 200, "types": 3, "separation": 1.0},
                "labels": "cell_type",
                "n_clusters": 3,
            }
            for name, cells in sizes.items()
        },
        "train": {"pretrain_epochs": 4, "epochs": 2, "batch_size": 400},  # large: 2 batches
    }
    write_config(tmp_path, config)
    snakemake(
        tmp_path,
        "scalability",
        "--set-threads",
        "train=1",
        "baseline=1",
        "machine=1",
        env=recording_env(tmp_path / "imports"),
    )
    assert {"machine", "scalability_scores"} <= assert_envs_hold_recorded_imports(
        tmp_path / "imports"
    )
    results = tmp_path / "results" / "scalability"
    scores = pd.read_csv(results / "scores.tsv", sep="\t")
    assert set(scores["method"]) == {"data", "scdsec", "leiden"}
    steps = scores[scores["method"] == "scdsec"].groupby("cells")["step"].apply(list)
    expected = ["qc", "normalize", "graph", "train", "total"]
    assert steps.to_dict() == {300: expected, 600: expected}
    assert (scores["seconds"] > 0).all() and (scores["max_rss_mb"] > 0).all()
    totals = scores[scores["step"] == "total"].set_index(["method", "cells"])["seconds"]
    own = scores[scores["step"] != "total"].groupby(["method", "cells"])["seconds"].sum()
    assert np.allclose(totals.sort_index(), own.sort_index())
    throughput = pd.read_csv(results / "throughput.tsv", sep="\t").set_index("cells")
    assert list(throughput["epochs"]) == [6, 6]
    assert throughput.loc[600, "batch_size"] == 400 and throughput.loc[300, "batch_size"] == 300
    assert throughput.loc[600, "edges_in_batches"] < 1.0 == throughput.loc[300, "edges_in_batches"]
    fraction = throughput["fraction_of_matmul_rate"]
    assert ((fraction > 0) & (fraction < 1)).all()  # a model cannot beat the machine's matmul
    machine = pd.read_csv(results / "machine.tsv", sep="\t")
    assert machine["matmul_flops_per_second"].iloc[0] > 1e8 and machine["threads"].iloc[0] == 1
    assert (results / "scalability.png").stat().st_size > 10_000
