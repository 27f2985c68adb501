"""What the embedding figure costs against training, at each size (the figure step should be a
small fraction of training).

Runs the workflow with benchmarks/figure_cost.yaml (the demo's 3,000 cells, simulated 10,000
and 20,000) up to ``plot_embeddings`` in a fresh folder, every job alone with all cores
(``--set-threads`` of each rule to ``--cores``), then gathers the Snakemake benchmark files of
training and of the figure into one row per dataset:

    .venv/bin/python benchmarks/figure_cost.py OUT.tsv [--cores 2] [--workdir DIR]

Columns: dataset, cells, train_seconds, figure_seconds, figure_fraction (figure / training),
the figure's peak memory, the mean CPU load of each job (Snakemake's, 100 per busy core), the
load average before the run, cores and CPUs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "figure_cost.yaml"
RULES = ("download", "qc", "normalize", "graph", "train", "plot_embeddings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="kept; a rerun continues there")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="figure_cost_"))
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    load_before = os.getloadavg()[0]
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-s", str(ROOT / "Snakefile"), "--cores", str(args.cores)]
    command += ["--configfile", str(CONFIG)]
    command += ["--until", "plot_embeddings", "--set-threads"]
    command += [f"{rule}={args.cores}" for rule in RULES]
    subprocess.run(command, cwd=work, check=True)

    def benchmark(pattern: str) -> pd.Series:
        (path,) = work.glob(pattern)
        return pd.read_csv(path, sep="\t").iloc[0]

    import anndata as ad
    import yaml

    rows = []
    for dataset in yaml.safe_load(CONFIG.read_text())["run"]:
        train = benchmark(f"results/{dataset}/benchmarks/scdsec_*_seed0.tsv")
        figure = benchmark(f"results/{dataset}/benchmarks/plot_embeddings/scdsec_*_seed0.tsv")
        (h5ad,) = work.glob(f"results/{dataset}/scdsec/*/seed0/scdsec.h5ad")
        rows.append(
            {
                "dataset": dataset,
                "cells": ad.read_h5ad(h5ad, backed="r").n_obs,
                "train_seconds": round(train["s"], 1),
                "figure_seconds": round(figure["s"], 1),
                "figure_fraction": round(figure["s"] / train["s"], 3),
                "figure_max_rss_mb": round(figure["max_rss"], 0),
                "train_mean_load": train["mean_load"],
                "figure_mean_load": figure["mean_load"],
                "loadavg_before": round(load_before, 2),
                "cores": args.cores,
                "cpus": os.cpu_count(),
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, sep="\t", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
