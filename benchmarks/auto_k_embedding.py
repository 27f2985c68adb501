"""Benchmark of estimators of the number of cell types K on scDSEC's pretrained embedding.

The graph-only rules of benchmarks/auto_k.py missed "|found − true| ≤ 20 % of true" on most
datasets. Here K is estimated after scDSEC's pretraining (default parameters, 50 epochs), on
the embedding Z that the clustering stage starts from, and on the space its k-means start uses
(``center_init="both"``: Z and X_pca, equal total variance).

Stage 1 (``embed``): for each dataset × seed, pretrain and store Z, X_pca and the true labels
under /tmp/autok_emb/ (prepared AnnData cached there too). Stage 2 (``estimate``): every
estimator on every stored embedding, one row each, written to
benchmarks/results/2026-12-01-auto-k-embedding.tsv, and a summary (hits per estimator, per
dataset found K, leave-one-dataset-out choice) to ...-auto-k-embedding-summary.md.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/auto_k_embedding.py embed [--datasets a,b] [--seeds 0,1]
    ... benchmarks/auto_k_embedding.py estimate

Estimators (space ∈ {z, both}):
  leiden_{space}_n{15,30}_r{res}   Leiden communities (scdsec.clustering.leiden_labels) of
                                   scanpy's UMAP connectivities of the n-NN graph of the space.
  sil_{space}                      k-means (n_init 3) for K = 2…30, the K of best silhouette
                                   (3,000-cell sample).
  ch_{space}, db_{space}           the same sweep scored by Calinski–Harabasz / Davies–Bouldin.
  eigengap_{space}_n15             largest gap of the 40 smallest normalised-Laplacian eigenvalues.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from auto_k import REAL, SIMS, eigengap, labelled_counts, log  # noqa: E402

STORE = Path("/tmp/autok_emb")
OUT = ROOT / "benchmarks" / "results" / "2026-12-01-auto-k-embedding.tsv"
SUMMARY = ROOT / "benchmarks" / "results" / "2026-12-01-auto-k-embedding-summary.md"
RESOLUTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
KMAX = 30


def prepared(name):
    import anndata as ad

    from scdsec.pp import prepare

    STORE.mkdir(exist_ok=True)
    path = STORE / f"{name}.h5ad"
    if path.exists():
        return ad.read_h5ad(path)
    adata, _ = labelled_counts(name)
    adata = prepare(adata)
    adata.write_h5ad(path)
    return adata


def embed(names, seeds):
    from scdsec.model import SCDSEC

    for name in names:
        adata = prepared(name)
        true_k = adata.obs["truth"].nunique()
        for seed in seeds:
            path = STORE / f"{name}.seed{seed}.npz"
            if path.exists():
                continue
            t = time.perf_counter()
            model = SCDSEC(adata, true_k, seed=seed)
            model.train(epochs=0, threads=1)  # pretraining only (and the k-means start)
            z = model.get_latent_representation()
            np.savez(
                path,
                z=z,
                pca=np.asarray(adata.obsm["X_pca"]),
                truth=adata.obs["truth"].to_numpy().astype(str),
            )
            log(
                f"{name} seed {seed}: {adata.n_obs} cells, "
                f"pretrained in {time.perf_counter() - t:.0f}s"
            )


def both_space(z, pca):
    blocks = (np.asarray(pca, np.float64), np.asarray(z, np.float64))
    return np.hstack([b / np.sqrt(b.var(axis=0).sum()) for b in blocks])


def connectivities(x, n_neighbors, seed):
    import anndata as ad
    import scanpy as sc

    probe = ad.AnnData(obsm={"X": x}, obs={"i": np.arange(len(x))})
    sc.pp.neighbors(probe, n_neighbors=n_neighbors, use_rep="X", random_state=seed)
    return probe.obsp["connectivities"]


def kmeans_sweep(x, seed, n_sample=3000):
    from sklearn.cluster import KMeans
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), min(n_sample, len(x)), replace=False)
    scores = {"sil": {}, "ch": {}, "db": {}}
    for k in range(2, KMAX + 1):
        lab = KMeans(k, n_init=3, random_state=seed).fit_predict(x)
        scores["sil"][k] = silhouette_score(x[idx], lab[idx])
        scores["ch"][k] = calinski_harabasz_score(x, lab)
        scores["db"][k] = -davies_bouldin_score(x, lab)
    return {rule: max(s, key=s.get) for rule, s in scores.items()}


def estimate(write, done):
    from scdsec.clustering import leiden_labels

    for path in sorted(STORE.glob("*.seed*.npz")):
        name, seed = path.name[: -len(".npz")].rsplit(".seed", 1)
        seed = int(seed)
        if (name, seed) in done:
            continue
        f = np.load(path)
        true_k = len(np.unique(f["truth"]))
        spaces = {"z": np.asarray(f["z"], np.float64), "both": both_space(f["z"], f["pca"])}
        rows = []
        for space, x in spaces.items():
            for n in (15, 30):
                t = time.perf_counter()
                adj = connectivities(x, n, seed)
                for res in RESOLUTIONS:
                    found = len(np.unique(leiden_labels(adj, resolution=res, seed=seed)))
                    rows.append((f"leiden_{space}_n{n}_r{res}", found, time.perf_counter() - t))
                if n == 15:
                    rows.append((f"eigengap_{space}_n15", eigengap(adj), time.perf_counter() - t))
            t = time.perf_counter()
            for rule, found in kmeans_sweep(x, seed).items():
                rows.append((f"{rule}_{space}", found, time.perf_counter() - t))
        for est, found, secs in rows:
            write(
                {
                    "dataset": name,
                    "n_cells": len(f["truth"]),
                    "true_k": true_k,
                    "estimator": est,
                    "seed": seed,
                    "found_k": int(found),
                    "rel_err": round(abs(found - true_k) / true_k, 4),
                    "seconds": round(secs, 2),
                }
            )
        log(f"{name} seed {seed}: {len(rows)} estimates")


def summarise():
    import pandas as pd

    df = pd.read_csv(OUT, sep="\t")
    mean = df.groupby(["estimator", "dataset", "true_k"])["found_k"].mean().reset_index()
    mean["hit"] = (mean.found_k - mean.true_k).abs() <= 0.2 * mean.true_k
    mean["rel"] = (mean.found_k - mean.true_k).abs() / mean.true_k
    df["seed_hit"] = (df.found_k - df.true_k).abs() <= 0.2 * df.true_k
    df["simulated"] = df.dataset.str.startswith("sim")
    per_run = df.groupby("estimator").agg(seed_hits=("seed_hit", "mean"))
    per_run["real_seed_hits"] = df[~df.simulated].groupby("estimator").seed_hit.mean()
    per_run["sim_seed_hits"] = df[df.simulated].groupby("estimator").seed_hit.mean()
    ranked = (
        mean.groupby("estimator")
        .agg(hits=("hit", "sum"), mean_rel=("rel", "mean"))
        .join(per_run)
        .sort_values(["hits", "mean_rel"], ascending=[False, True])
    )
    by_run = per_run.sort_values("seed_hits", ascending=False).index[:3]
    datasets = sorted(df.dataset.unique())
    wide = mean.pivot(index="estimator", columns="dataset", values="found_k").round(1)
    truth = df.groupby("dataset").true_k.first()
    lines = [
        f"# auto-K on the pretrained embedding: summary ({len(datasets)} datasets, "
        f"seeds {sorted(int(s) for s in df.seed.unique())})",
        "",
        "true K: " + ", ".join(f"{d} {truth[d]}" for d in datasets),
        "",
        "## estimators ranked (hits: datasets with |mean found − true| ≤ 20 % of true;"
        " seed_hits: fraction of dataset × seed runs within 20 %, of all, real and simulated)",
        "",
        ranked.head(30).round(3).to_markdown(),
        "",
        "## mean found K of the 15 best, every dataset",
        "",
        wide.loc[ranked.index[:15]].to_markdown(),
        "",
        "## found K of each seed, the three estimators with most runs within 20 %",
        "",
    ]
    for est in by_run:
        table = df[df.estimator == est].pivot(index="dataset", columns="seed", values="found_k")
        lines += [f"### {est}", "", table.to_markdown(), ""]
    lines += [
        "## leave one dataset out: the estimator with most hits on the others, on the one left",
        "",
    ]
    for left in datasets:
        rest = mean[mean.dataset != left]
        r = rest.groupby("estimator").agg(hits=("hit", "sum"), rel=("rel", "mean"))
        best = r.sort_values(["hits", "rel"], ascending=[False, True]).index[0]
        row = mean[(mean.estimator == best) & (mean.dataset == left)].iloc[0]
        lines.append(
            f"- {left}: {best} → {row.found_k:.1f} (true {row.true_k}) "
            f"{'hit' if row.hit else 'miss'}"
        )
    SUMMARY.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:45]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=["embed", "estimate", "summary"])
    p.add_argument("--datasets", default=",".join([*REAL, *SIMS]))
    p.add_argument("--seeds", default="0,1,2,3,4")
    a = p.parse_args()
    if a.stage == "embed":
        embed(a.datasets.split(","), [int(s) for s in a.seeds.split(",")])
        return
    if a.stage == "estimate":
        import csv

        done = set()
        if OUT.exists():
            with OUT.open() as fh:
                done = {(r["dataset"], int(r["seed"])) for r in csv.DictReader(fh, delimiter="\t")}
        new = not OUT.exists()
        with OUT.open("a", newline="") as fh:
            writer = None

            def write(row):
                nonlocal writer
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row), delimiter="\t")
                    if new:
                        writer.writeheader()
                writer.writerow(row)
                fh.flush()

            estimate(write, done)
    summarise()


if __name__ == "__main__":
    main()
