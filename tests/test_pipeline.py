"""File-level steps: atomic outputs, provenance, reproducible training."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scdsec import InputError, pp
from scdsec._files import atomic_path
from scdsec.pipeline import qc_step, step_log, train_step, write_h5ad

FAST = {
    "preset": "default",
    "model": {"dims": [64, 32, 8]},
    "train": {"pretrain_epochs": 20, "epochs": 10},
}


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]


@pytest.fixture
def graph_file(tmp_path, small_counts):
    prepared = pp.prepare(
        small_counts, normalize_params={"n_top_genes": 150}, graph={"n_neighbors": 10, "n_pcs": 20}
    )
    path = tmp_path / "graph.h5ad"
    write_h5ad(prepared, path)
    return path


def test_same_seed_same_clusters_on_the_cpu(tmp_path, graph_file):
    runs = []
    for name in ("a", "b"):
        train_step(
            graph_file, tmp_path / name, n_clusters=4, params=FAST, seed=3, threads=1, device="cpu"
        )
        runs.append((tmp_path / name / "clusters.tsv").read_text())
    assert runs[0] == runs[1]
    result = ad.read_h5ad(tmp_path / "a" / "scdsec.h5ad")
    record = result.uns["scdsec"]
    assert record["seed"] == 3 and record["device"] == "cpu" and record["threads"] == 1
    assert "torch" in record["provenance"]["versions"]
    assert result.uns["scdsec_steps"]["train"]["params"]["seed"] == 3
    assert len(record["history"]["total"]) == 30


def test_auto_number_of_clusters_is_recorded(tmp_path, graph_file):
    adata = train_step(
        graph_file,
        tmp_path / "auto",
        n_clusters="auto",
        params=FAST,
        seed=0,
        threads=1,
        device="cpu",
    )
    assert adata.uns["scdsec"]["n_clusters_estimated"] is True
    assert adata.obs["scdsec"].cat.categories.size == adata.uns["scdsec"]["n_clusters"] >= 2
    # the estimate and its range (Leiden at half and twice the resolution) go with the result
    estimate = ad.read_h5ad(tmp_path / "auto" / "scdsec.h5ad").uns["scdsec"]["n_clusters_estimate"]
    assert estimate["resolution"] == 0.5 and estimate["half_resolution"] == 0.25
    assert estimate["twice_resolution"] == 1.0 and estimate["n_at_half"] <= estimate["n_at_twice"]
    assert estimate["n_clusters"] >= 2


@pytest.fixture
def package_logger():
    """The package's logger, its handlers, level and propagation restored afterwards."""
    import logging

    logger = logging.getLogger("scdsec")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_ctrl_c_ends_a_step_in_one_line_saying_what_the_same_command_does(
    tmp_path, package_logger, capsys
):
    log = tmp_path / "train.log"
    resume = "the same snakemake command resumes training from the last checkpoint in ck/"
    with pytest.raises(SystemExit) as end, step_log(log, resume=resume):
        raise KeyboardInterrupt
    assert end.value.code == 130
    assert "Traceback" not in log.read_text()
    assert log.read_text().strip().splitlines()[-1].endswith(f"interrupted; {resume}")
    assert capsys.readouterr().err.strip() == f"interrupted; {resume} (log: {log})"
    with pytest.raises(SystemExit), step_log(log):  # a step without checkpoints
        raise KeyboardInterrupt
    assert "interrupted; the same snakemake command runs this step again" in capsys.readouterr().err


def test_a_failed_step_ends_its_log_and_the_console_with_its_cause_in_one_line(
    tmp_path, package_logger, capsys
):
    log = tmp_path / "step.log"
    with pytest.raises(SystemExit) as end, step_log(log):
        raise InputError("dataset d: 40 cells after QC, too few for graph.n_neighbors = 50")
    assert end.value.code == 1
    text = log.read_text()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].endswith("too few for graph.n_neighbors = 50")
    cause = "Error: dataset d: 40 cells after QC, too few for graph.n_neighbors = 50"
    assert capsys.readouterr().err.strip() == f"{cause} (log: {log})"

    with pytest.raises(SystemExit), step_log(log):  # a bug: its traceback, then its cause
        raise RuntimeError("bug\nin two lines")
    lines = log.read_text().strip().splitlines()
    assert "Traceback (most recent call last):" in lines
    assert lines[-1].endswith("ERROR scdsec: step failed: RuntimeError: bug in two lines")
    assert "step failed: RuntimeError: bug in two lines" in capsys.readouterr().err


def test_steps_name_the_dataset_its_cells_after_qc_and_the_key(tmp_path, small_counts):
    raw = small_counts[:40].copy()
    raw.uns["dataset"] = "few"
    write_h5ad(raw, tmp_path / "counts.h5ad")
    args = (tmp_path / "counts.h5ad", tmp_path / "qc.h5ad")
    with pytest.raises(InputError, match=r"^dataset few: 40 cells after QC.*graph\.n_neighbors"):
        qc_step(*args, n_neighbors=50, n_clusters=3)
    with pytest.raises(InputError, match=r"^dataset few: 40 .*datasets\.few\.n_clusters = 41"):
        qc_step(*args, n_neighbors=10, n_clusters=41)
    with pytest.raises(InputError, match=r"^dataset few: QC left 0 cells.*qc\.min_genes"):
        qc_step(*args, min_genes=10_000)
    assert not args[1].exists()
    qc_step(*args, n_neighbors=39, n_clusters=40)
    assert ad.read_h5ad(args[1]).n_obs == 40


def test_import_checks_the_cells_read_before_writing(tmp_path, small_counts):
    """The download step knows the cells first: too few for K or for n_clusters stop it, naming
    the dataset, the cells and the key, with nothing written (before QC)."""
    from scdsec.pipeline import import_dataset

    source = tmp_path / "few.h5ad"
    small_counts[:40].copy().write_h5ad(source)
    out = tmp_path / "counts.h5ad"
    kwargs = {"name": "few", "cache_dir": tmp_path / "cache"}
    with pytest.raises(InputError, match=r"^dataset few: 40 cells, too few for graph\.n_neigh"):
        import_dataset({"source": str(source)}, out, **kwargs, n_neighbors=50, n_clusters=3)
    with pytest.raises(InputError, match=r"^dataset few: 40 cells, fewer than datasets\.few\."):
        import_dataset({"source": str(source)}, out, **kwargs, n_neighbors=10, n_clusters=41)
    assert not out.exists()
    import_dataset({"source": str(source)}, out, **kwargs, n_neighbors=39, n_clusters=40)
    assert ad.read_h5ad(out).n_obs == 40


def test_the_workflows_steps_never_overwrite_the_users_columns(tmp_path, small_counts):
    """Import, QC and normalisation keep the input's obs/var columns by value; their own go
    under scdsec_* names; an input column named as a baseline's key is kept as <key>_input."""
    from scdsec.pipeline import import_dataset, normalize_step

    source = small_counts.copy()
    del source.obs["scdsec_true_label"]
    source.obs["label"] = "mine"
    source.obs["n_counts"] = np.arange(source.n_obs)
    source.obs["leiden"] = "3"
    source.var["mean"] = -1.0
    path = tmp_path / "in.h5ad"
    source.write_h5ad(path)
    entry = {"source": str(path), "labels": "cell_type"}
    counts = tmp_path / "counts.h5ad"
    import_dataset(entry, counts, name="d", cache_dir=tmp_path / "cache")
    qc_step(counts, tmp_path / "qc.h5ad", min_cells_fraction=0.0)
    out = normalize_step(tmp_path / "qc.h5ad", tmp_path / "norm.h5ad", n_top_genes=100)
    assert (out.obs["label"] == "mine").all() and (out.var["mean"] == -1.0).all()
    assert (out.obs["n_counts"].to_numpy() == np.arange(source.n_obs)).all()
    assert "leiden" not in out.obs and (out.obs["leiden_input"] == "3").all()
    truth = out.obs["scdsec_true_label"].astype(str)
    assert (truth == source.obs["cell_type"].astype(str)).all()
    totals = np.asarray(source.X.sum(axis=1)).ravel()
    assert (out.obs["scdsec_total_counts"].to_numpy() == totals).all()
    assert {"scdsec_n_genes_by_counts", "scdsec_size_factor"} <= set(out.obs)
    assert {"scdsec_mean", "scdsec_std"} <= set(out.var)


def test_import_joins_a_cell_metadata_table_and_takes_labels_from_it(tmp_path, small_counts):
    """The dataset key ``metadata``: a table of the cells joined by name; ``labels`` one of its
    columns; a cell the table lacks is unlabelled."""
    from scdsec.pipeline import import_dataset

    source = small_counts.copy()
    truth = source.obs.pop("cell_type").astype(str)
    del source.obs["scdsec_true_label"]
    source.write_h5ad(tmp_path / "in.h5ad")
    table = pd.DataFrame({"type": truth, "sample": "s1"}).iloc[5:].sample(frac=1, random_state=0)
    table.to_csv(tmp_path / "cells.csv.gz")
    entry = {"source": str(tmp_path / "in.h5ad"), "metadata": str(tmp_path / "cells.csv.gz")}
    out = import_dataset(
        {**entry, "labels": "type"}, tmp_path / "c.h5ad", name="d", cache_dir=tmp_path / "x"
    )
    got = ad.read_h5ad(tmp_path / "c.h5ad").obs
    assert got["scdsec_true_label"].isna().sum() == 5 and got["sample"].notna().sum() == 395
    assert (got["scdsec_true_label"].iloc[5:].astype(str) == truth.iloc[5:]).all()
    assert list(out.obs_names) == list(source.obs_names)
    with pytest.raises(InputError, match=r"'cell_type' not found.*nor is it a column of the cell"):
        import_dataset(
            {**entry, "labels": "cell_type"}, tmp_path / "e.h5ad", name="d", cache_dir=tmp_path
        )


def test_a_step_keeps_every_thread_pool_to_its_rules_threads(tmp_path):
    """Run in a fresh interpreter: the pools of libraries loaded before and after the step
    starts (BLAS, OpenMP, numba, torch) all hold the rule's one thread, and waiting OpenMP
    threads sleep unless the user chose otherwise."""
    import subprocess
    import sys

    code = """
import json, os
import numpy  # BLAS loaded before the step starts
from scdsec.pipeline import step_log
with step_log(None, threads=1):
    import numba, sklearn.cluster, torch  # loaded after
    from threadpoolctl import threadpool_info
    print(json.dumps({
        "pools": sorted({p["num_threads"] for p in threadpool_info()}),
        "numba": numba.get_num_threads(),
        "torch": torch.get_num_threads(),
        "omp": os.environ["OMP_NUM_THREADS"],
        "wait": os.environ["OMP_WAIT_POLICY"],
    }))
"""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_NUM_THREADS") and k != "OMP_WAIT_POLICY"
    }

    def step(**extra: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**env, **extra},
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    assert step() == {"pools": [1], "numba": 1, "torch": 1, "omp": "1", "wait": "PASSIVE"}
    assert step(OMP_WAIT_POLICY="ACTIVE")["wait"] == "ACTIVE"  # the user's choice stays
