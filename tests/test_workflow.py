"""The Snakemake workflow: config validation, lint, dry run and real runs on the demo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest
import yaml

from conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow with ``workdir`` as its working directory."""
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_jobs(workdir: Path, *targets: str) -> dict[str, int]:
    """``{rule: job count}`` from a dry run's job stats table (empty when nothing to do)."""
    text = snakemake(workdir, "-n", *targets).stdout
    if "Job stats:" not in text:
        return {}
    table = text.split("Job stats:", 1)[1].splitlines()[3:]
    jobs = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TINY = {
    "run": ["demo"],
    "datasets": {
        "demo": {
            "simulate": {"cells": 300, "genes": 200, "types": 3, "separation": 1.0},
            "labels": "cell_type",
            "n_clusters": 3,
        }
    },
    "normalize": {"n_top_genes": 100},
    "graph": {"n_neighbors": 10, "n_pcs": 10},
}


def test_lint_is_clean():
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


def test_default_config_dry_run_lists_the_four_steps(tmp_path):
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    jobs = planned_jobs(tmp_path)
    for rule in ("download", "qc", "normalize", "graph"):
        assert jobs[rule] == 1


def test_a_wrong_config_stops_before_any_job_naming_the_key(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["graph"]["n_neighbors"] = "many"
    write_config(tmp_path, bad)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "n_neighbors" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists()


def test_run_must_name_known_datasets(tmp_path):
    write_config(tmp_path, {**TINY, "run": ["nope"]})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "nope" in proc.stdout + proc.stderr and "run" in proc.stdout + proc.stderr


def test_unknown_key_in_a_dataset_is_named(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["datasets"]["demo"]["lables"] = "cell_type"
    write_config(tmp_path, bad)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "lables" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_runs_through_graph_and_a_changed_k_reruns_only_the_graph(tmp_path):
    write_config(tmp_path, TINY)
    snakemake(tmp_path, "results/demo/preprocess/graph_t100_k10.h5ad")
    graph = ad.read_h5ad(tmp_path / "results/demo/preprocess/graph_t100_k10.h5ad")
    assert graph.n_obs == 300 and graph.n_vars == 100
    assert graph.obsp["knn"].shape == (300, 300)
    assert set(graph.obs["label"].unique()) == {"type1", "type2", "type3"}
    steps = graph.uns["scdsec_steps"]
    assert {"download", "qc", "normalize", "graph"} <= set(steps)
    assert steps["graph"]["params"]["n_neighbors"] == 10
    assert "scanpy" in steps["graph"]["versions"]
    for step in ("download", "qc", "normalize_t100", "graph_t100_k10"):
        assert (tmp_path / f"logs/demo/{step}.log").is_file()

    target = "results/demo/preprocess/graph_t100_k10.h5ad"
    # Nothing left to do: the intermediate files are the cache.
    assert planned_jobs(tmp_path, target) == {}

    # A changed graph parameter reruns the graph step and nothing upstream.
    changed = yaml.safe_load(yaml.safe_dump(TINY))
    changed["graph"]["n_pcs"] = 8
    write_config(tmp_path, changed)
    assert planned_jobs(tmp_path, target) == {"graph": 1}
