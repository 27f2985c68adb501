"""Benchmark: scDSEC trained with ``n_clusters="auto"`` against the same run given the true K.

For each labelled dataset (the seven of ../shared/data, subsampled to 10,000 cells above 15,000,
and the simulated regimes of benchmarks/auto_k.py) × seed: the K that
:func:`scdsec.clustering.estimate_n_clusters` finds, and the final-epoch NMI/ARI against the
labels of the run with that K and of the run with the true K (default parameters, the same
seed). Where the estimate equals the true K the two runs are the same run (pretraining does not
depend on K), so it is trained once. One row per dataset × seed in
benchmarks/results/2026-12-01-auto-k-training.tsv, with the machine's load and threads.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/auto_k_training.py [--datasets a,b] [--seeds 0,1,2]
    .venv/bin/python benchmarks/auto_k_training.py --summary-only  # the table of the rows so far

Prepared AnnData come from the cache of benchmarks/auto_k_embedding.py (/tmp/autok_emb/).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from auto_k import REAL, SIMS, log  # noqa: E402
from auto_k_embedding import prepared  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "2026-12-01-auto-k-training.tsv"
SUMMARY = OUT.with_name("2026-12-01-auto-k-training-summary.md")
GRAPH_SCREEN = OUT.with_name("2026-12-01-auto-k.tsv")  # benchmarks/auto_k.py


def scores(adata, k, seed):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from scdsec.model import SCDSEC

    t = time.perf_counter()
    model = SCDSEC(adata, k, seed=seed)
    model.train(threads=1)
    labels = model.predict()
    truth = adata.obs["truth"].to_numpy()
    return (
        normalized_mutual_info_score(truth, labels),
        adjusted_rand_score(truth, labels),
        time.perf_counter() - t,
    )


def summarise():
    """One row per dataset: true K, the estimate of each seed, the resolutions of the 50-NN
    graph whose Leiden count is within 20 % (from benchmarks/auto_k.py's screen, mean over its
    seeds), and NMI of the true-K and the auto run (mean over seeds); written to SUMMARY."""
    import pandas as pd

    runs = pd.read_csv(OUT, sep="\t", comment="#")
    screen = pd.read_csv(GRAPH_SCREEN, sep="\t", comment="#")
    screen = screen[screen.estimator.str.fullmatch(r"leiden_k50_r[0-9.]+")].copy()
    screen["resolution"] = screen.estimator.str.extract(r"_r([0-9.]+)$")[0].astype(float)
    counts = screen.groupby(["dataset", "true_k", "resolution"]).found_k.mean().reset_index()
    within = counts[(counts.found_k - counts.true_k).abs() <= 0.2 * counts.true_k]
    spans = within.groupby("dataset").resolution.agg(["min", "max"])
    rows = []
    for name, d in runs.groupby("dataset", sort=False):
        span = spans.loc[name] if name in spans.index else None
        rows.append(
            {
                "dataset": name,
                "true K": d.true_k.iloc[0],
                "auto K (each seed)": ", ".join(str(k) for k in d.auto_k),
                "resolutions within 20 %": "none"
                if span is None
                else f"{span['min']:g}"
                if span["min"] == span["max"]
                else f"{span['min']:g}–{span['max']:g}",
                "NMI true K": round(d.nmi_true_k.mean(), 3),
                "NMI auto": round(d.nmi_auto.mean(), 3),
                "Δ NMI": round(d.nmi_auto.mean() - d.nmi_true_k.mean(), 3),
                "seeds": len(d),
            }
        )
    table = pd.DataFrame(rows)
    text = [
        "# scDSEC with n_clusters=auto against the true K (final epoch, mean over seeds)",
        "",
        f"From {OUT.name} (benchmarks/auto_k_training.py) and, for the resolutions, "
        f"{GRAPH_SCREEN.name} (benchmarks/auto_k.py; Leiden of the 50-NN graph at 17 "
        "resolutions from 0.1 to 3.0, the counts' mean over 3 seeds). "
        f"Machine: {os.cpu_count()} CPUs, 1 thread per run (each row of the TSV gives its load "
        "average).",
        "",
        table.to_markdown(index=False),
        "",
    ]
    SUMMARY.write_text("\n".join(text))
    print("\n".join(text))


def main():
    from scdsec.clustering import estimate_n_clusters

    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default=",".join([*REAL, *SIMS]))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--summary-only", action="store_true")
    a = p.parse_args()
    if a.summary_only:
        summarise()
        return
    new = not OUT.exists()
    done = set()
    if not new:
        with OUT.open() as fh:
            rows = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
            done = {(r["dataset"], int(r["seed"])) for r in rows}
    with OUT.open("a", newline="") as fh:
        fields = [
            "dataset", "n_cells", "true_k", "seed", "auto_k", "nmi_true_k", "ari_true_k",
            "nmi_auto", "ari_auto", "seconds", "loadavg1", "threads",
        ]  # fmt: skip
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter="\t")
        if new:
            fh.write(f"# auto vs true K, final epoch; host cpus={os.cpu_count()}\n")
            writer.writeheader()
        for seed in (int(s) for s in a.seeds.split(",")):  # every dataset, then the next seed
            for name in a.datasets.split(","):
                if (name, seed) in done:
                    continue
                adata = prepared(name)
                true_k = adata.obs["truth"].nunique()
                t = time.perf_counter()
                auto_k = estimate_n_clusters(adata, seed=seed)
                nmi_t, ari_t, _ = scores(adata, true_k, seed)
                nmi_a, ari_a = (
                    (nmi_t, ari_t) if auto_k == true_k else scores(adata, auto_k, seed)[:2]
                )
                row = {
                    "dataset": name, "n_cells": adata.n_obs, "true_k": true_k, "seed": seed,
                    "auto_k": auto_k, "nmi_true_k": round(nmi_t, 4), "ari_true_k": round(ari_t, 4),
                    "nmi_auto": round(nmi_a, 4), "ari_auto": round(ari_a, 4),
                    "seconds": round(time.perf_counter() - t, 1),
                    "loadavg1": round(os.getloadavg()[0], 2),
                    "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                }  # fmt: skip
                writer.writerow(row)
                fh.flush()
                log(row)
    summarise()


if __name__ == "__main__":
    main()
