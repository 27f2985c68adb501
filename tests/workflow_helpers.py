"""Running the repository's Snakemake workflow from tests: real runs, dry-run job counts, the
run folders it plans and the configs it reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

#: A demo small enough for dry runs and short whole runs: 300 simulated cells of 3 types.
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


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the repository's workflow with ``workdir`` as its working directory (2 cores)."""
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """``{rule: job count}`` from a dry run's job stats table (empty when nothing to do)."""
    text = snakemake(workdir, "-n", *args).stdout
    if "Job stats:" not in text:
        return {}
    jobs = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def planned_path(workdir: Path, pattern: str, *args: str) -> str:
    """The one path matching the regular expression ``pattern`` in a forced dry run of
    ``args`` (relative path)."""
    text = snakemake(workdir, "-n", "--forceall", *args).stdout
    found = set(re.findall(pattern, text))
    assert len(found) == 1, (pattern, found)
    return found.pop()


def planned_run_folder(workdir: Path, target: str, method: str = "scdsec", seed: int = 0) -> str:
    """The run folder of ``method`` that a dry run of ``target`` plans (relative path)."""
    return planned_path(workdir, rf"results/\w+/{re.escape(method)}/[\w.]+/seed{seed}", target)


def only_file(folder: Path, pattern: str) -> Path:
    """The one file under ``folder`` matching the glob ``pattern``: preprocessing files and
    their logs carry a hash of their settings in the name (``qc_<hash>.h5ad``)."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def write_config(workdir: Path, config: dict) -> Path:
    """``config`` as ``workdir/config.yaml``, the file the workflow reads by default."""
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
