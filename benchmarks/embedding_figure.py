"""What the embedding figure's 2-D maps cost: scikit-learn's t-SNE (the figure's former method)
against UMAP by scanpy (``scdsec.plotting._umap``, its method now), side by side in one run.

On the demo's cells (``config.yaml``'s ``demo``: 3,000 simulated cells, 6 types), prepared as
the workflow does, both maps of the figure are made by each method, ``--repeats`` times,
alternating: the expression panel from the 50 principal components and the embedding panel
from a 10-dimensional space (the first 10 components stand in for the trained Z, which has 10
dimensions by default). Each run is a fresh process, so UMAP's first call pays numba's
compilation as in a workflow job. Writes one row per run (method, repeat, seconds, threads,
load average before the run) to ``--out``:

    python benchmarks/embedding_figure.py --threads 2 --repeats 2 --out RESULTS.tsv
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
adata = pp.prepare(simulate_counts(demo["cells"], demo["genes"], demo["types"], seed=demo["seed"]))
pcs = np.asarray(adata.obsm["X_pca"], dtype=np.float32)
start = time.perf_counter()
if {method!r} == "tsne":
    from sklearn.manifold import TSNE
    for data in (pcs, pcs[:, :10]):
        TSNE(2, perplexity=30.0, init="pca", random_state=0, n_jobs={threads}).fit_transform(data)
else:
    from scdsec.plotting import _umap
    for data in (pcs, pcs[:, :10]):
        _umap(data, 0)
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = str(Path(__file__).resolve().parents[1] / "config.yaml")
    rows = []
    for repeat in range(args.repeats):
        for method in ("tsne", "umap"):
            load = os.getloadavg()[0]
            code = CHILD.format(threads=args.threads, config=config, method=method)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
            seconds = float(out.strip().splitlines()[-1])
            rows.append(
                {
                    "method": method,
                    "repeat": repeat,
                    "seconds": round(seconds, 2),
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
