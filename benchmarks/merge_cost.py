"""Benchmark: what the over-cluster-and-merge stage adds to training time (issue 22, target 5).

Simulated cells (default 10,000 × 2,000 genes, 10 types) are prepared once with the default
QC, normalisation and graph; then the default model is trained with ``train.overcluster`` 1
(no merge stage) and 3 (modularity merges), on the full batch and on mini-batches, in the
order A B B A for each path so that drift of the machine's load falls on both alike. One row
per training: path, overcluster, seconds of ``SCDSEC.train``, seconds inside the merge rounds,
joint epochs run, NMI, the machine's load average before the run, and torch's threads.

    python benchmarks/merge_cost.py --out benchmarks/results/DATE-COMMIT-cpu2-merge-cost.tsv \\
        [--cells 10000] [--threads 2] [--batch-size 2048]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import pandas as pd


def main() -> None:
    import torch

    import scdsec.model._training as training
    from scdsec import pp
    from scdsec.metrics import label_scores
    from scdsec.model import SCDSEC
    from scdsec.simulate import simulate_counts

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    adata = pp.prepare(simulate_counts(args.cells, 2000, 10, seed=args.seed))
    truth = adata.obs["cell_type"].to_numpy()
    merge_seconds = [0.0]
    original = training.merge_round

    def timed_merge_round(*a, **k):
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            merge_seconds[0] += time.perf_counter() - start

    training.merge_round = timed_merge_round
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    rows = []
    for path, batch_size in (("full", "auto"), ("minibatch", args.batch_size)):
        for overcluster in (1, 3, 3, 1):
            merge_seconds[0] = 0.0
            load = os.getloadavg()[0]
            model = SCDSEC(adata, 10, seed=args.seed)
            start = time.perf_counter()
            model.train(
                device="cpu", threads=args.threads, overcluster=overcluster, batch_size=batch_size
            )
            seconds = time.perf_counter() - start
            history = model.history
            scores = label_scores(truth, model.predict())
            rows.append(
                {
                    "cells": adata.n_obs,
                    "path": path,
                    "batch_size": batch_size,
                    "overcluster": overcluster,
                    "train_seconds": round(seconds, 1),
                    "merge_seconds": round(merge_seconds[0], 2),
                    "joint_epochs": int((history["stage"] == "cluster").sum()),
                    "nmi": round(scores["nmi"], 4),
                    "ari": round(scores["ari"], 4),
                    "load_before": round(load, 2),
                    "threads": torch.get_num_threads(),
                    "machine": f"{platform.node()} {os.cpu_count()} cores",
                    "commit": commit,
                }
            )
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
