"""Benchmark: the merge criteria without training — which pairs each one joins.

For each labelled dataset × seed the network is pretrained (default settings), k-means runs
on the joint start's space (the 50 PCs and the pretrained Z side by side, as
``train.center_init: both``) with K and with c·K clusters, and the c·K clusters are merged
back to K by each criterion of ``scdsec.model._merge`` — no joint training in between, so the
criteria are compared on the same clusters. One row per dataset × seed × method (``kmeans_K``,
or ``c{c}_{criterion}``) with NMI, ARI and the fraction of the largest type kept in one cluster,
appended to OUT (resumes where it stopped).

    python benchmarks/merge_criteria.py --out SCORES.tsv [--datasets pbmc_10x ...] \\
        [--seeds 0 1] [--factors 2 3]

The screen (benchmarks/screen.py) measures the criteria inside training; this isolates the
criterion from what the joint stage does between merges.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import screen  # noqa: E402

CRITERIA = ("modularity", "connectivity", "separation")


def main() -> None:
    import torch
    from sklearn.cluster import KMeans

    from scdsec.metrics import label_scores, largest_type_kept
    from scdsec.model import SCDSEC
    from scdsec.model._merge import ClusterStatistics, merge_clusters
    from scdsec.model._training import joint_space

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", nargs="+", default=[str(ROOT / "benchmarks" / "shared_data.yaml")])
    p.add_argument("--datasets", nargs="*")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--factors", nargs="+", type=int, default=[3])
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default="results/screen")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    done = set()
    if out.exists():
        old = pd.read_csv(out, sep="\t")
        done = set(zip(old["dataset"], old["seed"], strict=True))
    commit = screen._commit()
    for name, entry in screen._datasets(args.config).items():
        if args.datasets and name not in args.datasets:
            continue
        _, adata = screen._prepared(name, entry, Path(args.cache))
        truth = adata.obs["scdsec_true_label"].astype(str).to_numpy()
        k = int(entry.get("n_clusters") or len(np.unique(truth)))
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            start = time.perf_counter()
            model = SCDSEC(adata, k, seed=seed)
            model.train(epochs=0)
            z = model.get_latent_representation().astype(np.float64)
            space = joint_space(np.asarray(adata.obsm["X_pca"], dtype=np.float64), z)
            partitions = {"kmeans_K": KMeans(k, n_init=20, random_state=seed).fit_predict(space)}
            for factor in args.factors:
                many = KMeans(factor * k, n_init=20, random_state=seed).fit_predict(space)
                for criterion in CRITERIA:
                    stats = ClusterStatistics.from_labels(many, z, adata.obsp["knn"], factor * k)
                    merged = merge_clusters(stats, criterion, n_clusters=k).mapping[many]
                    partitions[f"c{factor}_{criterion}"] = merged
            rows = [
                {
                    "dataset": name,
                    "seed": seed,
                    "method": method,
                    **label_scores(truth, labels),
                    "largest_type_kept": largest_type_kept(truth, labels),
                    "commit": commit,
                }
                for method, labels in partitions.items()
            ]
            frame = pd.DataFrame(rows)
            frame.to_csv(out, sep="\t", index=False, mode="a", header=not out.exists())
            print(frame.round(3).to_string(index=False), f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
