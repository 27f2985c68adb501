"""What the embedding figure's 2-D maps cost: igraph's UMAP (``scdsec.plotting._umap``, the
figure's method now) against UMAP by scanpy (its method before: ``sc.pp.neighbors`` then
``sc.tl.umap``, umap-learn compiled by numba in each process) and scikit-learn's t-SNE (the
first), side by side in one run.

On the demo's cells (``config.yaml``'s ``demo``: 2,000 genes, 6 types, simulated) at each
``--cells`` size, prepared as the workflow does, both maps of the figure are made by each
method, ``--repeats`` times, alternating: the expression panel from the 50 principal components
and the embedding panel from a 10-dimensional space (the first 10 components stand in for the
trained Z, which has 10 dimensions by default). Each run is a fresh process, so a JIT compile is
paid as in a workflow job. Writes one row per run (cells, method, repeat, seconds, threads,
load average before the run) to ``--out``:

    python benchmarks/embedding_figure.py --threads 2 --repeats 2 --cells 3000,20000 \
        --methods igraph,scanpy --out RESULTS.tsv
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

CHILD = """
import sys, time, numpy as np, yaml
from scdsec import pp
from scdsec.simulate import simulate_counts
from scdsec.settings import limit_threads
limit_threads({threads})
demo = yaml.safe_load(open({config!r}))["datasets"]["demo"]["simulate"]
adata = pp.prepare(simulate_counts({cells}, demo["genes"], demo["types"], seed=demo["seed"]))
pcs = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
start = time.perf_counter()
for data in (pcs, pcs[:, :10]):
    if {method!r} == "tsne":
        from sklearn.manifold import TSNE
        TSNE(2, perplexity=30.0, init="pca", random_state=0, n_jobs={threads}).fit_transform(data)
    elif {method!r} == "scanpy":
        import anndata as ad, pandas as pd, scanpy as sc
        space = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(data))]))
        space.obsm["X_space"] = data
        sc.pp.neighbors(space, use_rep="X_space", n_neighbors=15, random_state=0)
        sc.tl.umap(space, random_state=0)
    else:
        from scdsec.plotting import _umap
        _umap(data, 0)
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cells", default="3000", help="comma-separated sizes")
    parser.add_argument("--methods", default="igraph,scanpy,tsne")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = str(Path(__file__).resolve().parents[1] / "config.yaml")
    rows = []
    for cells in (int(c) for c in args.cells.split(",")):
        for repeat in range(args.repeats):
            for method in args.methods.split(","):
                load = os.getloadavg()[0]
                code = CHILD.format(threads=args.threads, config=config, method=method, cells=cells)
                out = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
                rows.append(
                    {
                        "cells": cells,
                        "method": method,
                        "repeat": repeat,
                        "seconds": round(float(out.strip().splitlines()[-1]), 2),
                        "threads": args.threads,
                        "load_before": round(load, 2),
                        "cpus": os.cpu_count(),
                    }
                )
                print(rows[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
