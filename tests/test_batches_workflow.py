"""A dataset's batch key through the workflow: the files it renames (and those it leaves),
its checks before any job, and a whole run that scores batch mixing and draws the batches."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from workflow_helpers import TINY, only_file, snakemake, write_config


def with_batches(config: dict, **entry) -> dict:
    """``config`` whose demo is simulated in two batches, with ``entry`` added to it."""
    demo = config["datasets"]["demo"]
    simulate = {**demo["simulate"], "batches": 2}
    return {**config, "datasets": {"demo": {**demo, "simulate": simulate, **entry}}}


def planned_files(workdir: Path) -> set[str]:
    """The preprocessing files and the scDSEC run folder a forced dry run plans."""
    text = snakemake(workdir, "-n", "--forceall").stdout
    found = set(re.findall(r"results/demo/preprocess/\w+\.h5ad", text))
    return found | set(re.findall(r"results/demo/scdsec/[\w.]+/seed0", text))


def test_batch_settings_rename_nothing_without_a_batch_key(tmp_path):
    """hvg_per_batch and batch_correction act only with a batch key: without one, setting them
    renames no file (the files of a config from before they existed are found again)."""
    write_config(tmp_path, TINY)
    first = planned_files(tmp_path)
    changed = {
        **TINY,
        "normalize": {**TINY["normalize"], "hvg_per_batch": False},
        "graph": {**TINY["graph"], "batch_correction": "none"},
    }
    write_config(tmp_path, changed)
    assert planned_files(tmp_path) == first


def test_a_batch_key_renames_what_depends_on_it_and_its_settings_then_count(tmp_path):
    """The batch key joins the hash of the normalised and graph files and of the run folder,
    never the QC file's; with it, each batch setting renames the files it acts on."""
    write_config(tmp_path, with_batches(TINY))
    plain = planned_files(tmp_path)
    write_config(tmp_path, with_batches(TINY, batch_key="batch"))
    keyed = planned_files(tmp_path)
    (qc,) = [f for f in plain if "/qc_" in f]
    assert qc in keyed
    assert len(keyed - plain) == 3  # normalized, graph, run folder
    write_config(
        tmp_path,
        with_batches(
            {**TINY, "graph": {**TINY["graph"], "batch_correction": "none"}}, batch_key="batch"
        ),
    )
    no_harmony = planned_files(tmp_path)
    assert {f for f in no_harmony if "normalized_" in f} == {f for f in keyed if "normalized_" in f}
    assert {f for f in no_harmony if "graph_" in f}.isdisjoint(keyed)


def test_a_batch_pattern_without_a_batch_key_stops_before_any_job(tmp_path):
    write_config(tmp_path, with_batches(TINY, batch_pattern="^(p\\d+):"))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "datasets.demo.batch_pattern" in text and "batch_key" in text


@pytest.mark.slow
def test_a_missing_batch_column_stops_the_download_naming_the_key(tmp_path):
    write_config(tmp_path, with_batches(TINY, batch_key="donor"))
    proc = snakemake(tmp_path, "--until", "download", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "datasets.demo.batch_key" in text and "donor" in text
    assert not (tmp_path / "resources" / "demo" / "counts.h5ad").exists()


@pytest.mark.slow
def test_a_run_with_a_batch_key_scores_mixing_and_draws_the_batches(tmp_path):
    """A whole run on two simulated batches: metrics.tsv carries iLISI and batch entropy for
    every method, the baselines clustered Harmony's PCs, and batches.png is drawn."""
    config = with_batches(
        {
            **TINY,
            "seeds": [0],
            "model": {"dims": [32, 16, 8]},
            "train": {"pretrain_epochs": 20, "epochs": 10},
        },
        batch_key="batch",
    )
    write_config(tmp_path, config)
    snakemake(tmp_path)
    metrics = pd.read_csv(tmp_path / "results" / "demo" / "metrics.tsv", sep="\t")
    assert {"ilisi", "batch_entropy"} <= set(metrics.columns)
    assert metrics["ilisi"].between(0, 1).all() and metrics["batch_entropy"].between(0, 1).all()
    run = only_file(tmp_path / "results" / "demo" / "scdsec", "*/seed0")
    assert (run / "plots" / "batches.png").stat().st_size > 0
    trained = ad.read_h5ad(run / "scdsec.h5ad")
    assert trained.uns["scdsec"]["batch_key"] == "batch"
    graph = ad.read_h5ad(only_file(tmp_path / "results" / "demo" / "preprocess", "graph_*.h5ad"))
    assert graph.uns["scdsec_graph"]["use_rep"] == "X_pca_harmony"
    assert not np.allclose(graph.obsm["X_pca"], graph.obsm["X_pca_harmony"])
    params = (run / "params.yaml").read_text()
    assert "batch_key: batch" in params


@pytest.mark.parametrize(("pattern", "problem"), [("^p", "has no group"), ("^(p", "not a regular")])
def test_a_batch_pattern_that_cannot_work_stops_before_any_job(tmp_path, pattern, problem):
    write_config(tmp_path, with_batches(TINY, batch_key="plate", batch_pattern=pattern))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "datasets.demo.batch_pattern" in text and problem in text
