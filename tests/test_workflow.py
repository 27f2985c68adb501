"""The Snakemake workflow: config validation, lint, dry run and real runs on the demo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import anndata as ad
import pytest
import yaml

from conftest import ROOT
from env_imports import assert_envs_hold_recorded_imports, recording_env
from workflow_helpers import (
    SNAKEMAKE,
    TINY,
    only_file,
    planned_jobs,
    planned_path,
    planned_run_folder,
    snakemake,
    write_config,
)


def run_folder(workdir: Path, method: str = "scdsec", seed: int = 0, dataset: str = "demo") -> Path:
    """The one run folder results/{dataset}/{method}/{params}/seed{seed} in ``workdir``."""
    return only_file(workdir / "results" / dataset / method, f"*/seed{seed}")


#: The demo that :func:`demo_run` trains: long enough to be killed between checkpoints.
DEMO = {
    **TINY,
    "seeds": [0],
    "model": {"dims": [32, 16, 8]},
    "train": {"pretrain_epochs": 100, "epochs": 20},
    "checkpoint_every": 5,
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """A working directory where the default target ``all`` ran on :data:`DEMO`, each job's
    imports recorded under ``imports/``; shared by the tests of one whole run, which leave
    its ``config.yaml`` as they found it."""
    workdir = tmp_path_factory.mktemp("demo_run")
    write_config(workdir, DEMO)
    proc = snakemake(workdir, env=recording_env(workdir / "imports"))
    (workdir / "console.txt").write_text(proc.stdout + proc.stderr)  # what the user saw
    return workdir


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


def test_preprocessing_files_are_named_by_their_settings(tmp_path):
    """Each preprocessing file carries a hash of its settings and of the steps' before it: a
    QC setting renames all three, a graph setting the graph's alone; asking for a file of
    other settings is refused naming the config's."""
    write_config(tmp_path, TINY)

    def planned() -> set[str]:
        text = snakemake(tmp_path, "-n", "--until", "graph").stdout
        return set(re.findall(r"results/demo/preprocess/\w+\.h5ad", text))

    first = planned()
    assert {re.sub(r"_[0-9a-f]{8}\.", ".", f).rsplit("/", 1)[1] for f in first} == {
        "qc.h5ad",
        "normalized_t100.h5ad",
        "graph_t100_k10.h5ad",
    }
    write_config(tmp_path, {**TINY, "graph": {**TINY["graph"], "n_pcs": 8}})
    assert len(planned() - first) == 1 and "graph_t100_k10_" in (planned() - first).pop()
    write_config(tmp_path, {**TINY, "qc": {"min_genes": 5}})
    assert not planned() & first
    proc = snakemake(tmp_path, "-n", "results/demo/preprocess/qc_00000000.h5ad", check=False)
    assert proc.returncode != 0
    assert "made with other qc settings than the config's" in proc.stdout + proc.stderr


def test_config_values_from_the_command_line_are_read_as_the_schema_asks(tmp_path):
    write_config(tmp_path, TINY)
    assert planned_jobs(tmp_path, "--config", "seeds=[0,1]")["train"] == 2
    proc = snakemake(tmp_path, "-n", "--config", "seeds=[zero]", check=False)
    assert proc.returncode != 0 and "seeds" in proc.stdout + proc.stderr


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
    output = proc.stdout + proc.stderr
    line = next(x for x in output.splitlines() if "lables" in x)
    assert proc.returncode != 0
    assert "datasets.demo: unknown key 'lables'; known keys: " in line and "labels" in line
    assert "additionalProperties" not in output  # one line, not Snakemake's schema dump


def test_a_missing_source_names_every_config_file_read(tmp_path):
    write_config(tmp_path, TINY)
    mine = tmp_path / "my_datasets.yaml"
    mine.write_text(yaml.safe_dump({"run": ["mine"], "datasets": {"mine": {"source": "nope.csv"}}}))
    proc = snakemake(tmp_path, "-n", "--configfile", str(mine), check=False)
    output = (proc.stdout + proc.stderr).splitlines()
    line = next(x for x in output if "datasets.mine.source" in x)
    assert proc.returncode != 0 and "my_datasets.yaml" in line and "config.yaml" in line
    assert "nope.csv does not exist" in line and str(tmp_path) in line  # where it looked


def test_simulated_proportions_need_one_weight_per_type(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["datasets"]["demo"]["simulate"]["proportions"] = [0.9, 0.1]
    write_config(tmp_path, bad)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "datasets.demo.simulate.proportions" in proc.stdout + proc.stderr
    bad["datasets"]["demo"]["simulate"]["proportions"] = [0.9, 0.09, 0.01]
    write_config(tmp_path, bad)
    assert planned_jobs(tmp_path)["download"] == 1


def failed_step_line(proc: subprocess.CompletedProcess, log: Path) -> str:
    """The last line of a failed rule's log, which must hold no traceback; Snakemake's console
    output shows it too."""
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = log.read_text()
    assert "Traceback" not in text, text
    line = text.strip().splitlines()[-1]
    cause = line.split(" ERROR scdsec: ", 1)[-1]
    assert f"Error: {cause}" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    return line


def config_line(proc: subprocess.CompletedProcess, key: str) -> str:
    """The one line of a refused config that names ``key``: before any job, nothing made."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert "Job stats" not in output, output[-2000:]
    return next(line for line in output.splitlines() if key in line and "cells" in line)


def test_settings_simulated_cells_cannot_hold_stop_before_any_job(tmp_path):
    """Case 05/14 on simulated cells: the config alone says the cells are too few for K or
    for n_clusters; the message names the key and where its value came from."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["datasets"]["demo"]["n_clusters"] = 301
    write_config(tmp_path, config)
    line = config_line(snakemake(tmp_path, "-n", check=False), "datasets.demo.n_clusters")
    assert line.startswith("config.yaml: datasets.demo.n_clusters: dataset demo: 300 simulated")
    assert "fewer than datasets.demo.n_clusters = 301 clusters; set" in line
    config["datasets"]["demo"]["n_clusters"] = 3
    del config["graph"]["n_neighbors"]  # the default, 50
    config["datasets"]["demo"]["simulate"]["cells"] = 40
    write_config(tmp_path, config)
    line = config_line(snakemake(tmp_path, "-n", check=False), "graph.n_neighbors")
    assert line.startswith("graph.n_neighbors (default, not set in config.yaml): dataset demo:")
    assert "40 simulated cells (simulate.cells), too few for graph.n_neighbors = 50" in line
    proc = snakemake(tmp_path, "-n", "--config", "graph={n_neighbors: 45}", check=False)
    assert config_line(proc, "graph.n_neighbors").startswith("--config: graph.n_neighbors: ")
    assert not (tmp_path / "resources").exists()


def test_a_value_from_the_command_line_is_named_as_from_config(tmp_path):
    write_config(tmp_path, TINY)
    datasets = "datasets={demo: {simulate: {cells: 300, genes: 200, types: 3}, n_clusters: 1}}"
    proc = snakemake(tmp_path, "-n", "--config", datasets, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next(x for x in output.splitlines() if "datasets.demo.n_clusters" in x)
    assert line == (
        "--config: datasets.demo.n_clusters: must be an integer of at least 2 or 'auto', got 1"
    )


def test_n_clusters_as_a_whole_float_names_the_same_run_folder(tmp_path):
    write_config(tmp_path, TINY)
    first = planned_run_folder(tmp_path, "all")
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["datasets"]["demo"]["n_clusters"] = 3.0
    config["graph"]["n_neighbors"] = 10.0
    write_config(tmp_path, config)
    assert planned_run_folder(tmp_path, "all") == first
    config["datasets"]["demo"]["n_clusters"] = 3.5
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "datasets.demo.n_clusters: must be an integer of at least 2 or 'auto', got 3.5" in (
        proc.stdout + proc.stderr
    )


def test_a_source_under_home_is_found(tmp_path):
    """`source: ~/data/mine.h5ad` is read from the home folder; a file missing there is named
    as missing, its folder (which exists) not."""
    from scdsec.simulate import simulate_counts

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    simulate_counts(60, 50, 2, seed=0).write_h5ad(home / "data" / "mine.h5ad")
    config = {**TINY, "run": ["mine"], "datasets": {"mine": {"source": "~/data/mine.h5ad"}}}
    workdir = tmp_path / "run"
    workdir.mkdir()
    write_config(workdir, config)
    env = {**os.environ, "HOME": str(home)}
    proc = snakemake(workdir, "-n", env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config["datasets"]["mine"]["source"] = "~/data/other.h5ad"
    write_config(workdir, config)
    proc = snakemake(workdir, "-n", env=env, check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if "other.h5ad" in x)
    assert f"{home}/data/other.h5ad does not exist" in line and "folder" not in line


def test_a_missing_cell_metadata_table_is_named_before_any_job(tmp_path):
    from scdsec.simulate import simulate_counts

    simulate_counts(60, 50, 2, seed=0).write_h5ad(tmp_path / "mine.h5ad")
    entry = {"source": "mine.h5ad", "metadata": "cells.tsv", "labels": "cell_type"}
    write_config(tmp_path, {**TINY, "run": ["mine"], "datasets": {"mine": entry}})
    proc = snakemake(tmp_path, "-n", check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if "cells.tsv" in x)
    assert proc.returncode != 0
    assert line.startswith("config.yaml: datasets.mine.metadata: cells.tsv does not exist")
    (tmp_path / "cells.tsv").write_text("cell\tcell_type\n")
    assert planned_jobs(tmp_path, "--until", "download") == {"download": 1}


def _few_cells_file(tmp_path: Path, n_cells: int = 40, name: str = "few.counts") -> Path:
    """An AnnData file of ``n_cells`` simulated cells; named other than ``.h5ad``, its cells
    are known only once `download` has read it."""
    from scdsec.simulate import simulate_counts

    path = tmp_path / name
    simulate_counts(n_cells, 200, 3, seed=0, separation=1.0).write_h5ad(path)
    return path


def test_settings_a_local_h5ad_cannot_hold_stop_before_any_job(tmp_path):
    """A local .h5ad's cells are read from its index when the config loads: too few for K or
    for n_clusters stop the run there, naming the file and the key."""
    path = _few_cells_file(tmp_path, name="few.h5ad")
    config = {"run": ["few"], "datasets": {"few": {"source": str(path), "n_clusters": 3}}}
    write_config(tmp_path, config)
    line = config_line(snakemake(tmp_path, "-n", check=False), "graph.n_neighbors")
    assert line.startswith("graph.n_neighbors (default, not set in config.yaml): dataset few: ")
    assert f"40 cells in {path}, too few for graph.n_neighbors = 50" in line
    config["graph"] = {"n_neighbors": 10}
    config["datasets"]["few"]["n_clusters"] = 41
    write_config(tmp_path, config)
    line = config_line(snakemake(tmp_path, "-n", check=False), "datasets.few.n_clusters")
    assert "40 cells in" in line and "fewer than datasets.few.n_clusters = 41 clusters" in line
    config["datasets"]["few"]["n_clusters"] = 40
    write_config(tmp_path, config)
    assert planned_jobs(tmp_path, "--until", "download") == {"download": 1}


@pytest.mark.slow
def test_too_few_cells_stop_the_workflow_in_one_line_naming_the_key(tmp_path):
    """Case 05 on a file of 40 cells: the download step, the first that knows the cells,
    stops in one line for K (graph.n_neighbors, default 50) and for n_clusters before writing
    anything; QC stops when the cells it leaves are too few; a K raised after QC stops the
    graph step the same way (naming the sweep's key for a sensitivity K)."""
    import numpy as np

    path = _few_cells_file(tmp_path)
    config = {
        "run": ["few"],
        "datasets": {"few": {"source": str(path), "n_clusters": 3}},
        "normalize": {"n_top_genes": 100},
    }
    work = tmp_path / "work"
    work.mkdir()
    write_config(work, config)
    log = work / "logs/few/download.log"
    line = failed_step_line(snakemake(work, check=False), log)
    assert "dataset few: 40 cells, too few for graph.n_neighbors = 50" in line
    assert not (work / "resources/few/counts.h5ad").exists()

    config["graph"] = {"n_neighbors": 10}
    config["datasets"]["few"]["n_clusters"] = 41
    write_config(work, config)
    log.unlink()
    line = failed_step_line(snakemake(work, "--until", "qc", check=False), log)
    assert "dataset few: 40 cells, fewer than datasets.few.n_clusters = 41" in line

    totals = np.asarray(ad.read_h5ad(path).X.sum(axis=1)).ravel()
    config["qc"] = {"max_counts": float(np.sort(totals)[19])}  # 20 cells left
    config["datasets"]["few"]["n_clusters"] = 30
    write_config(work, config)
    line = failed_step_line(
        snakemake(work, "--until", "qc", check=False), only_file(work, "logs/few/qc_*.log")
    )
    assert "dataset few: 20 cells after QC, fewer than datasets.few.n_clusters = 30" in line
    assert not list(work.glob("results/few/preprocess/qc_*"))

    del config["qc"]
    config["datasets"]["few"]["n_clusters"] = 3
    write_config(work, config)
    snakemake(work, "--until", "qc")
    config["graph"]["n_neighbors"] = 50
    write_config(work, config)
    pattern = r"results/few/preprocess/graph_t100_k50_\w+\.h5ad"
    graph = planned_path(work, pattern, "--until", "graph")
    targets = [graph, graph.replace("_k50_", "_k45_")]
    proc = snakemake(work, "--keep-going", *targets, check=False)
    line = failed_step_line(proc, only_file(work, "logs/few/graph_t100_k50_*.log"))
    assert "dataset few: 40 cells after QC" in line and "graph.n_neighbors = 50" in line
    line = failed_step_line(proc, only_file(work, "logs/few/graph_t100_k45_*.log"))
    assert "40 cells after QC" in line and "experiments.sensitivity.k = 45" in line


def test_case_05_fewer_cells_than_neighbours(tmp_path, shared_cases):
    path = shared_cases / "05-fewer-cells-than-neighbours" / "tiny.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    config = {
        "run": ["tiny"],
        "datasets": {"tiny": {"source": str(path), "labels": "cell_type", "n_clusters": 3}},
    }
    write_config(tmp_path, config)
    line = config_line(snakemake(tmp_path, check=False), "graph.n_neighbors")
    assert f"dataset tiny: 40 cells in {path}, too few for graph.n_neighbors = 50" in line
    assert not (tmp_path / "resources").exists()


def test_case_14_settings_named_as_given_before_qc(tmp_path, shared_cases):
    path = shared_cases / "14-one-cell-type" / "sorted_one_type.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    config = {"run": ["one"], "datasets": {"one": {"source": str(path), "n_clusters": 1}}}
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if "n_clusters" in x)
    assert line == (
        "config.yaml: datasets.one.n_clusters: must be an integer of at least 2 or 'auto', got 1"
    )
    config["datasets"]["one"]["n_clusters"] = 2
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", "--config", "graph={n_neighbors: 500}", check=False)
    line = config_line(proc, "graph.n_neighbors")
    assert line.startswith("--config: graph.n_neighbors: dataset one: 500 cells in ")
    assert "too few for graph.n_neighbors = 500" in line


@pytest.mark.slow
def test_demo_runs_through_graph_and_a_changed_graph_parameter_reruns_only_the_graph(demo_run):
    """The preprocessing files of the demo, each named by t, K and a hash of its settings; a
    changed graph setting makes a graph file beside the first (nothing upstream reruns), and
    going back finds the first one and the run trained on it up to date."""
    graph_path = only_file(demo_run, "results/demo/preprocess/graph_t100_k10_*.h5ad")
    graph = ad.read_h5ad(graph_path)
    assert graph.n_obs == 300 and graph.n_vars == 100
    assert graph.obsp["knn"].shape == (300, 300)
    assert set(graph.obs["scdsec_true_label"].unique()) == {"type1", "type2", "type3"}
    steps = graph.uns["scdsec_steps"]
    assert {"download", "qc", "normalize", "graph"} <= set(steps)
    assert steps["graph"]["params"]["n_neighbors"] == 10
    assert "scanpy" in steps["graph"]["versions"]
    settings = yaml.safe_load(graph_path.with_suffix(".yaml").read_text())
    assert settings["graph"] == {"n_neighbors": 10, "n_pcs": 10, "method": "auto"}
    assert settings["normalize"]["n_top_genes"] == 100 and "min_genes" in settings["qc"]
    for step in ("download", "qc_*", "normalize_t100_*", "graph_t100_k10_*"):
        only_file(demo_run, f"logs/demo/{step}.log")

    # Nothing left to do: the intermediate files are the cache.
    assert planned_jobs(demo_run, "--until", "graph") == {}

    # A changed graph setting runs the graph step alone, into a file beside the first; back at
    # the first setting nothing is left to do (the trained run is not outdated).
    write_config(demo_run, {**DEMO, "graph": {**DEMO["graph"], "n_pcs": 8}})
    try:
        assert planned_jobs(demo_run, "--until", "graph") == {"graph": 1}
        snakemake(demo_run, "--until", "graph")
    finally:
        write_config(demo_run, DEMO)
    graphs = set(demo_run.glob("results/demo/preprocess/graph_t100_k10_*.h5ad"))
    (other,) = graphs - {graph_path}
    assert yaml.safe_load(other.with_suffix(".yaml").read_text())["graph"]["n_pcs"] == 8
    assert planned_jobs(demo_run) == {}


@pytest.mark.slow
def test_new_datasets_in_other_formats_run_through_qc(tmp_path):
    """A CSV.gz over HTTP (with checksum) and a local 10x mtx folder as a percent-encoded
    ``file://`` URL, added by config alone."""
    import gzip
    import hashlib
    import http.server
    import threading
    from functools import partial

    import numpy as np
    import pandas as pd
    import scipy.io
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.5, size=(120, 60))
    serve = tmp_path / "served"
    serve.mkdir()
    table = pd.DataFrame(
        counts, index=[f"c{i}" for i in range(120)], columns=[f"G{j}" for j in range(60)]
    )
    table.insert(0, "celltype", np.repeat(["x", "y", "z"], 40))
    with gzip.open(serve / "table.csv.gz", "wt") as fh:
        table.to_csv(fh)
    digest = hashlib.sha256((serve / "table.csv.gz").read_bytes()).hexdigest()

    mtx = tmp_path / "10x run 1"  # as a file:// URL: file:///…/10x%20run%201
    mtx.mkdir()
    scipy.io.mmwrite(mtx / "matrix.mtx", sp.coo_matrix(counts.T))
    with gzip.open(mtx / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"ENSG{j:05d}\tG{j}\tGene Expression\n" for j in range(60))
    with gzip.open(mtx / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(f"AAAC{i:06d}-1\n" for i in range(120))

    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/table.csv.gz"
        config = {
            "run": ["web_csv", "local_mtx"],
            "datasets": {
                "web_csv": {
                    "source": url,
                    "checksum": f"sha256:{digest}",
                    "labels": "celltype",
                    "n_clusters": 3,
                },
                "local_mtx": {"source": mtx.as_uri(), "n_clusters": "auto"},
            },
        }
        write_config(tmp_path, config)
        snakemake(tmp_path, "--until", "qc")
        # A wrong checksum stops the run and leaves no file behind.
        config["datasets"]["web_bad"] = {"source": url, "checksum": "sha256:" + "0" * 64}
        write_config(tmp_path, {**config, "run": ["web_bad"]})
        bad = snakemake(tmp_path, "resources/web_bad/counts.h5ad", check=False)
    finally:
        server.shutdown()
    web = ad.read_h5ad(only_file(tmp_path, "results/web_csv/preprocess/qc_*.h5ad"))
    assert web.n_obs == 120 and list(web.obs["scdsec_true_label"].cat.categories) == ["x", "y", "z"]
    local = ad.read_h5ad(only_file(tmp_path, "results/local_mtx/preprocess/qc_*.h5ad"))
    assert local.n_obs == 120 and "G0" in local.var_names
    assert not list((tmp_path / "resources" / "local_mtx").glob("download/*")), (
        "local data is not copied"
    )

    assert bad.returncode != 0
    assert "checksum" in (tmp_path / "logs/web_bad/download.log").read_text().lower()
    assert not (tmp_path / "resources/web_bad/counts.h5ad").exists()
    assert not list((tmp_path / "resources/web_bad").rglob("*.*"))


@pytest.mark.slow
@pytest.mark.realdata
def test_real_dataset_graph(tmp_path, shared_data):
    """worm_neuron_cell.h5 (4,186 cells, X/Y layout) through graph with K = 50."""
    import numpy as np

    config = {
        "run": ["worm"],
        "datasets": {
            "worm": {
                "source": str(shared_data / "worm_neuron_cell.h5"),
                "checksum": "sha256:"
                "4f2a3c4b8492bcd11d957a8a74098ba258c271d714718c175854a7c44b1e31e6",
                "labels": "Y",
                "n_clusters": 10,
            }
        },
    }
    write_config(tmp_path, config)
    snakemake(tmp_path, "--until", "graph")
    g = ad.read_h5ad(only_file(tmp_path, "results/worm/preprocess/graph_t1000_k50_*.h5ad"))
    a = g.obsp["knn"]
    assert g.n_obs == 4186 and g.n_vars == 1000 and g.obs["scdsec_true_label"].nunique() == 10
    assert (a != a.T).nnz == 0 and np.diff(a.indptr).min() >= 50
    assert a.nnz < 0.05 * a.shape[0] ** 2
    seconds = float(
        only_file(tmp_path, "results/worm/benchmarks/graph_t1000_k50_*.tsv")
        .read_text()
        .splitlines()[1]
        .split()[0]
    )
    assert seconds < 60, f"graph took {seconds:.0f} s"


@pytest.mark.slow
def test_demo_runs_whole_and_its_report_embeds_every_figure(demo_run):
    """The default target on a tiny demo; `snakemake --report` as the README shows it; each
    job's imports within its env; another K leaves the trained model in place, so that going
    back to it reruns nothing."""
    import base64

    import matplotlib.image as mpimg
    import pandas as pd

    checked = assert_envs_hold_recorded_imports(demo_run / "imports")
    assert {"train", "evaluate", "plot_embeddings", "plot_markers", "markers"} <= checked
    run_dir = run_folder(demo_run)
    assert run_dir.parent.name.startswith("t100_k10_")  # t and K, then a hash of the rest
    settings = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert settings["graph"]["n_neighbors"] == 10 and settings["model"]["dims"] == [32, 16, 8]
    markers = pd.read_csv(run_dir / "markers.tsv", sep="\t")
    assert set(markers["gene"]) <= set(ad.read_h5ad(run_dir / "scdsec.h5ad").var_names)
    result = ad.read_h5ad(run_dir / "scdsec.h5ad")
    assert result.obs["scdsec"].cat.categories.size == 3
    assert result.obsm["X_scdsec"].shape == (300, 8)
    assert result.obsm["scdsec_q"].shape == (300, 3)
    record = result.uns["scdsec"]
    assert list(record["params"]["model"]["dims"]) == [32, 16, 8]
    assert record["device"] == "cpu" and record["seed"] == 0
    loss = pd.read_csv(run_dir / "loss.tsv", sep="\t")
    assert len(loss) == 120 and {"zinb", "rec", "graph", "kl", "total"} <= set(loss.columns)
    assert (run_dir / "model" / "model.json").is_file()

    # The end of the run said what happened: the scores table, NMI/ARI, K and its origin, device.
    console = (demo_run / "console.txt").read_text()
    assert "Shell command" not in console
    summary = console.split("Results of this run", 1)[1]
    assert "demo: results/demo/metrics.tsv" in summary
    line = next(x for x in summary.splitlines() if x.strip().startswith("scdsec "))
    assert re.search(r"NMI \d\.\d{3}  ARI \d\.\d{3}  K 3, given  on cpu$", line), line

    # A plain --report shows the tables in the page (as HTML) and the benchmark, which ran
    # as its own target, beside the default target's figures.
    snakemake(demo_run, "benchmark")
    snakemake(demo_run, "--report", "report.html")
    html = (demo_run / "report.html").read_text()
    shown = sorted((demo_run / "results").rglob("*.png"))
    shown += [demo_run / "results/demo/metrics.html", run_dir / "markers.html"]
    # loss, embeddings, confusion, markers dot plot, benchmark; metrics and markers tables
    assert len(shown) == 7 and demo_run / "results/benchmark/benchmark.png" in shown, shown
    for path in shown:  # each file's content is in the page (base64), not only its name
        if path.suffix == ".png":
            assert mpimg.imread(path).shape[0] > 100  # a real image
        encoded = base64.b64encode(path.read_bytes()).decode()
        assert encoded[:2000] in html, f"{path.name} is not embedded in report.html"
    assert "Hungarian" in html  # a caption
    assert "<td>scdsec</td>" in (demo_run / "results/demo/metrics.html").read_text()

    # Another K trains into another folder; back at K = 10 nothing is left to do.
    write_config(demo_run, {**DEMO, "graph": {**DEMO["graph"], "n_neighbors": 5}})
    try:
        other = planned_run_folder(demo_run, "all")
        assert other.startswith("results/demo/scdsec/t100_k5_")
        assert planned_jobs(demo_run)["train"] == 1
    finally:
        write_config(demo_run, DEMO)
    assert planned_jobs(demo_run) == {}


@pytest.mark.slow
def test_a_forced_rerun_killed_part_way_resumes_and_ends_with_the_first_runs_clusters(demo_run):
    """Training run again (``--forcerun``) and killed part-way (SIGKILL, as the OOM killer or
    a lost node), the workflow run again: the job resumes from its checkpoint and ends with the
    labels of the first, uninterrupted run — so reruns give identical clusters, and resuming
    changes nothing."""
    import time

    import psutil

    run_dir = run_folder(demo_run)
    target = str(run_dir.relative_to(demo_run) / "clusters.tsv")
    first = (demo_run / target).read_text()
    params = run_dir.parent.name
    checkpoint = demo_run / f"results/checkpoints/demo.scdsec.{params}.seed0/seed0.pt"
    assert not checkpoint.exists()  # removed with the finished training
    # the target first: --forcerun takes every name after it (the target would become a rule
    # name, leaving the default target `all` to run)
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(demo_run), "--cores", "2"]
    cmd += [target, "--forcerun", "train"]
    proc = subprocess.Popen(cmd, cwd=demo_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint was written"
    jobs = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if any(part.endswith("train.py") for part in p.cmdline())
    ]
    assert jobs, "the train job's process was not found"
    for job in jobs:
        job.kill()
    assert proc.wait(timeout=120) != 0  # the job failed; Snakemake removed its outputs
    assert not (demo_run / target).exists() and checkpoint.exists()
    snakemake(demo_run, target)
    log = demo_run / f"logs/demo/scdsec/{params}/seed0/train.log"
    assert "resuming from" in log.read_text()
    assert (demo_run / target).read_text() == first
    assert not (demo_run / "results/checkpoints").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_run_says_in_one_line_that_the_same_command_resumes(demo_run):
    """Ctrl-C (SIGINT to the terminal's process group) during training: no traceback; the
    train step's log and the console say in one line that the same command resumes, and it
    does."""
    import os
    import signal
    import time

    run_dir = run_folder(demo_run)
    target = str(run_dir.relative_to(demo_run) / "clusters.tsv")
    checkpoint = demo_run / f"results/checkpoints/demo.scdsec.{run_dir.parent.name}.seed0/seed0.pt"
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(demo_run), "--cores", "2"]
    cmd += [target, "--forcerun", "train"]
    proc = subprocess.Popen(
        cmd,
        cwd=demo_run,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), "no checkpoint was written"
    os.killpg(proc.pid, signal.SIGINT)
    console = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "Traceback" not in console and "KeyboardInterrupt" not in console
    said = (
        "interrupted; the same snakemake command resumes training from the last checkpoint in "
        f"results/checkpoints/demo.scdsec.{run_dir.parent.name}.seed0"
    )
    assert said in console  # the train step's line
    assert "Interrupted: the same snakemake command resumes" in console  # Snakemake's end
    log = demo_run / f"logs/demo/scdsec/{run_dir.parent.name}/seed0/train.log"
    assert log.read_text().strip().splitlines()[-1].endswith(said)
    snakemake(demo_run, target)
    assert "resuming from" in log.read_text()


@pytest.mark.slow
def test_every_bad_input_stops_its_dataset_in_one_line_and_loses_nothing(tmp_path):
    """The kinds of tests/bad_inputs.py plus a checksum mismatch, all in one keep-going run."""
    from bad_inputs import digest, write_bad_inputs

    bad = write_bad_inputs(tmp_path / "inputs")
    datasets = {name: {"source": str(b.path), **b.entry} for name, b in bad.items()}
    datasets["checksum"] = {
        "source": str(tmp_path / "inputs/whole.h5ad"),
        "checksum": "sha256:" + "0" * 64,
    }
    config = {
        **TINY,
        "run": list(datasets),
        "datasets": {name: {"n_clusters": 3, **entry} for name, entry in datasets.items()},
        "qc": {"min_cells_fraction": 0.5},  # what empties sparse_genes.csv
    }
    workdir = tmp_path / "run"
    workdir.mkdir()
    write_config(workdir, config)
    before = {name: digest(Path(entry["source"])) for name, entry in datasets.items()}
    proc = snakemake(workdir, "--keep-going", "--until", "qc", check=False)
    expected = {name: b.expected for name, b in bad.items()}
    expected["checksum"] = ("whole.h5ad", "checksum mismatch")
    # QC names the dataset (its file was read in the download step), not the file
    expected["all_genes_filtered"] = ("dataset all_genes_filtered", "qc.min_cells_fraction")
    for name, fragments in expected.items():
        step = "qc" if name == "all_genes_filtered" else "download"
        line = failed_step_line(proc, only_file(workdir, f"logs/{name}/{step}*.log"))
        for fragment in fragments:
            assert fragment in line, (name, line)
        assert not list(workdir.glob(f"results/{name}/preprocess/qc_*"))
        if step == "download":
            assert not (workdir / f"resources/{name}/counts.h5ad").exists()
        assert digest(Path(datasets[name]["source"])) == before[name]


FAKE_CONDA = """#!/bin/sh
# Answers Snakemake's checks of a conda installation (the dry run solves no env).
case "$*" in
  "--version") echo "conda 24.9.2" ;;
  "info --json") echo '{"conda_prefix": "/nonexistent", "envs_dirs": [], "platform": "linux-64"}' ;;
  "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
  *) echo '{}' ;;
esac
"""


def test_jobs_print_no_empty_shell_command(tmp_path):
    """No rule runs a shell command, so the default profile does not print them: Snakemake
    would print `Shell command: None` under every job."""
    write_config(tmp_path, TINY)
    proc = snakemake(tmp_path, "-n", "--forceall")
    assert "rule train:" in proc.stdout + proc.stderr
    assert "Shell command" not in proc.stdout + proc.stderr


def test_download_runs_where_the_workflow_runs_never_as_a_cluster_job(tmp_path):
    """`download` needs the internet, which cluster nodes often lack: a local rule."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    write_config(tmp_path, TINY)
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            snakefile=ROOT / "Snakefile",
            workdir=tmp_path,
        )._workflow
        assert "download" in workflow._localrules
        assert "train" not in workflow._localrules and "qc" not in workflow._localrules


def _dry_run_job(text: str, rule: str) -> dict[str, str]:
    """``threads`` and ``resources`` of the first job of ``rule`` in a dry run's output."""
    lines = text.split(f"\nrule {rule}:\n", 1)[1].splitlines()
    block = lines[: next(i for i, x in enumerate(lines) if not x[:1].isspace())]
    fields = dict(line.strip().split(": ", 1) for line in block if ": " in line)
    return {"threads": fields["threads"], "resources": fields["resources"]}


def test_slurm_profile_gives_training_its_gpu_and_threads(tmp_path):
    """The SLURM profile parses with the executor plugin and no cluster (a stand-in conda)."""
    import os

    fake = tmp_path / "bin" / "conda"
    fake.parent.mkdir()
    fake.write_text(FAKE_CONDA)
    fake.chmod(0o755)
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    train = {}
    for how in ("--workflow-profile", "--profile"):
        cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n"]
        proc = subprocess.run(
            [*cmd, how, str(ROOT / "profiles/slurm")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        train[how] = _dry_run_job(proc.stdout + proc.stderr, "train")
        for resource in ("gpu=1", "cpus_per_gpu=8", "runtime=240", "mem_mb=32000"):
            assert resource in train[how]["resources"], (how, train[how])
        assert "slurm_extra" not in train[how]["resources"]
    # as the workflow profile it gives train its 8 threads (with --profile, profiles/default's
    # cores: all cuts them to this machine's: the README says to use --workflow-profile)
    assert train["--workflow-profile"]["threads"] == "8"


@pytest.mark.slow
def test_a_local_source_reruns_on_new_content_not_on_a_new_mtime(tmp_path):
    """Nothing changed: nothing runs. Touched (a copy, a remount): nothing runs. New counts:
    its steps run again, and only those."""
    import os

    from scdsec.simulate import simulate_counts

    source = tmp_path / "data" / "mine.h5ad"
    source.parent.mkdir()
    simulate_counts(200, 150, 3, seed=1).write_h5ad(source)
    config = {
        **TINY,
        "run": ["mine"],
        "datasets": {"mine": {"source": str(source), "n_clusters": 3}},
    }
    workdir = tmp_path / "run"
    workdir.mkdir()
    write_config(workdir, config)
    snakemake(workdir, "--until", "qc")
    assert planned_jobs(workdir, "--until", "qc") == {}
    later = source.stat().st_mtime + 3600
    os.utime(source, (later, later))
    assert planned_jobs(workdir, "--until", "qc") == {}
    simulate_counts(200, 150, 3, seed=2).write_h5ad(source)
    assert planned_jobs(workdir, "--until", "qc") == {"download": 1, "qc": 1}


@pytest.mark.slow
def test_users_cases_run_through_the_workflow(tmp_path, shared_cases):
    """Cases 01–04, 06, 09–12, 15 and 16 of ../shared/cases as datasets of one run (with the
    dataset keys each needs) and case 06's settings (qc.min_cells_fraction 0, cell_ranger,
    200 genes), through normalisation."""
    cases = {
        "features7": {"source": "01-features-7-columns"},
        "layer": {"source": "02-h5ad-without-X/no_X_counts_in_layer.h5ad", "layer": "counts"},
        "rows": {"source": "03-csv-cells-as-rows/cells_by_genes.csv.gz"},
        "partly": {
            "source": "04-labels-partly-missing/partly_annotated.h5ad",
            "labels": "cell_type",
        },
        "zeros": {"source": "06-many-all-zero-genes/mostly_zero_genes.h5ad"},
        "corrected": {"source": "09-ambient-corrected-counts/soupx_corrected", "counts": "round"},
        "geo": {"source": "10-geo-prefixed-triplets/GSE000000_RAW.tar", "sample": "all"},
        "entrez": {"source": "11-numeric-gene-ids-csv/entrez_genes_by_cells.csv"},
        "featurecounts": {"source": "12-featurecounts-table/counts.txt"},
        "raw": {"source": "15-counts-in-raw/seurat_export_raw.h5ad", "layer": "raw"},
        "loom3": {"source": "16-loom-spec-3/sample.loom"},
    }
    datasets = {
        name: {**entry, "source": str(shared_cases / entry["source"]), "n_clusters": 3}
        for name, entry in cases.items()
    }
    config = {
        **TINY,
        "run": list(datasets),
        "datasets": datasets,
        "qc": {"min_cells_fraction": 0},
        "normalize": {"flavor": "cell_ranger", "n_top_genes": 200},
    }
    write_config(tmp_path, config)
    snakemake(tmp_path, "--until", "normalize")
    cells = {"features7": 300, "layer": 300, "rows": 400, "partly": 300, "corrected": 300}
    cells.update({"geo": 500, "entrez": 300, "featurecounts": 200, "raw": 300, "loom3": 300})
    for name, n_cells in cells.items():
        assert ad.read_h5ad(tmp_path / f"resources/{name}/counts.h5ad").n_obs == n_cells
    rows_log = (tmp_path / "logs/rows/download.log").read_text()
    assert "cells are the table's rows" in rows_log and "400 cells × 200 genes" in rows_log
    partly = ad.read_h5ad(tmp_path / "resources/partly/counts.h5ad")
    assert partly.obs["scdsec_true_label"].isna().sum() == 89


@pytest.mark.slow
def test_a_run_of_a_users_case_ends_with_its_scores_k_and_device(tmp_path, shared_cases):
    """Case 04 (labels partly missing) with `n_clusters: auto` and `--resources gpu=1`: the
    end of the run names the scores table, gives NMI/ARI, the K and its range under auto,
    and the device — the CPU pointed out where a GPU was asked for and torch saw none."""
    import torch

    source = shared_cases / "04-labels-partly-missing/partly_annotated.h5ad"
    config = {
        **DEMO,
        "run": ["partly"],
        "datasets": {
            "partly": {"source": str(source), "labels": "cell_type", "n_clusters": "auto"}
        },
        "methods": ["scdsec", "leiden"],
        "train": {"pretrain_epochs": 20, "epochs": 10},
    }
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "results/partly/metrics.tsv", "--resources", "gpu=1")
    console = proc.stdout + proc.stderr
    assert "Shell command" not in console
    summary = console.split("Results of this run", 1)[1]
    assert "partly: results/partly/metrics.tsv" in summary
    lines = {x.split()[0]: x for x in summary.splitlines()[2:4]}
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert re.search(
        r"NMI \d\.\d{3}  ARI \d\.\d{3}  K \d+, auto: \d+ \(Leiden at resolution 0\.5; "
        rf"\d+ at 0\.25, \d+ at 1\)  on {device}$",
        lines["scdsec"],
    ), lines["scdsec"]
    assert re.search(r"NMI \d\.\d{3}  ARI \d\.\d{3}  K \d+, found$", lines["leiden"])
    on_cpu = "A GPU was asked for (--resources gpu=…), but these trainings ran on the CPU"
    assert (on_cpu in summary) == (device == "cpu")
