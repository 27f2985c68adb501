"""What deterministic CPU kernels cost, and whether reruns are identical without them.

Trains scDSEC on the demo data (``config.yaml``'s ``demo``: 3,000 simulated cells, 6 types)
with the default model and schedule, alternating ``deterministic`` off and on, ``--repeats``
times each, in one process at ``--threads`` threads; every run uses seed 0. Writes one row per
run (deterministic, repeat, seconds, threads, load average, the run's labels identical to the
first run of its kind, ARI against it, max |ΔZ| against it) to ``--out``:

    python benchmarks/determinism.py --threads 2 --repeats 3 --out RESULTS.tsv
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import adjusted_rand_score

from scdsec import pp
from scdsec.model import SCDSEC
from scdsec.simulate import simulate_counts

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    demo = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["demo"]
    sim = demo["simulate"]
    adata = pp.prepare(simulate_counts(sim["cells"], sim["genes"], sim["types"], seed=sim["seed"]))
    first: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for repeat in range(args.repeats):
        for deterministic in (False, True):
            model = SCDSEC(adata, n_clusters=demo["n_clusters"], seed=0)
            start = time.perf_counter()
            model.train(threads=args.threads, deterministic=deterministic)
            seconds = time.perf_counter() - start
            labels, z = model.predict(), model.get_latent_representation()
            ref_labels, ref_z = first.setdefault(deterministic, (labels, z))
            rows.append(
                {
                    "deterministic": deterministic,
                    "repeat": repeat,
                    "seconds": round(seconds, 2),
                    "threads": args.threads,
                    "load_1min": os.getloadavg()[0],
                    "labels_identical": bool((labels == ref_labels).all()),
                    "ari_vs_first": adjusted_rand_score(ref_labels, labels),
                    "max_abs_dz": float(np.abs(z - ref_z).max()),
                }
            )
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
