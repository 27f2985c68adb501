"""Benchmark of cheap (no deep training) estimators of the number of cell types K.

For each labelled dataset (the seven of ../shared/data and simulated regimes) × estimator ×
seed: true K, found K, |found − true| / true and seconds, written to
benchmarks/results/2026-12-01-auto-k.tsv; then a summary (mean found K over seeds, hits of
the |found − true| ≤ 20 % goal) and a leave-one-dataset-out choice of the rule, written to
benchmarks/results/2026-12-01-auto-k-summary.md.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
        .venv/bin/python benchmarks/auto_k.py [--datasets a,b] [--summary-only]

Prepared AnnData are cached under /tmp/autok_cache/ (delete it to re-prepare).

Estimators (all on the output of scdsec.pp.prepare, defaults):
  leiden_{k50,k15}_r{res}[_min]   Leiden communities (igraph, modularity, run to convergence —
                                  the same call as scdsec.clustering.leiden_labels) of the
                                  workflow's 50-NN graph obsp['knn'] or of scanpy's 15-NN
                                  connectivities on X_pca; `_min`: communities with < 0.5 % of
                                  cells are not counted,
                                  `_min1`: < 1 %. leiden_k50_r0.5 is today's rule.
  stab_{k50,k15}_{rule}[_min]     resolution sweep 0.1…2.0; at each resolution 4 Leiden runs on
                                  80 % subsamples of the cells (induced subgraph), stability =
                                  mean pairwise ARI on shared cells; rule `max`: most stable
                                  resolution (ties → larger); `tX`: largest resolution with
                                  stability ≥ X. K = communities of the full graph at that
                                  resolution (the same seed).
  plateau_{k50,k15}               the community count given by the most resolutions of the
                                  grid FIXED_RES (0.1…3.0), K = 1 excluded, ties → larger K.
  kmeans_sil                      k-means (n_init=3) on X_pca for K = 2…30, K with the best
                                  silhouette on a 3000-cell sample.
  eigengap_{k50,k15}              largest gap among the 40 smallest eigenvalues of the
                                  normalised Laplacian of the graph (K in 2…39).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import scipy.sparse as sp

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
CACHE = Path("/tmp/autok_cache")
OUT = ROOT / "benchmarks" / "results" / "2026-12-01-auto-k.tsv"
SUMMARY = ROOT / "benchmarks" / "results" / "2026-12-01-auto-k-summary.md"
SEEDS = (0, 1, 2)
RESOLUTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
FIXED_RES = (
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.75,
    0.9,
    1.0,
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
)
# fixed-resolution candidates; also the grid of the plateau rule
MIN_FRACTION = 0.005
MIN_FRACTION2 = 0.01
STAB_THRESHOLDS = (0.8, 0.85, 0.9, 0.95)
N_SUB = 4
MAX_CELLS = 15_000
SUBSAMPLE = 10_000

REAL = {
    "pbmc_10x": ("10X_PBMC_top2000.h5", "xy_h5", "Y"),
    "human_kidney": ("human_kidney_counts_top2000.h5", "xy_h5", "Y"),
    "mouse_bladder": ("mouse_bladder_cell_select_2100.h5", "xy_h5", "Y"),
    "worm_neuron": ("worm_neuron_cell.h5", "xy_h5", "Y"),
    "paul15": ("paul15_cluster.h5ad", "h5ad", "paul15_clusters"),
    "zheng_sorted_pbmc": ("zheng_sorted_pbmc.h5", "xy_h5", "Y"),
    "cellbench_celseq2_5cl": ("cellbench_celseq2_5cl.h5", "xy_h5", "Y"),
}
RARE10 = [0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.04, 0.03, 0.02, 0.01]
SIMS = {  # name: (types, separation, proportions)
    "sim8_s0.45": (8, 0.45, None),
    "sim8_s0.3": (8, 0.3, None),
    "sim12_s0.45": (12, 0.45, None),
    "sim12_s0.3": (12, 0.3, None),
    "sim12_s0.45_dir1": (12, 0.45, 1.0),
    "sim10_s0.45_rare": (10, 0.45, RARE10),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def labelled_counts(name):
    """The counts of dataset ``name`` with ``obs['truth']``, above MAX_CELLS subsampled to
    SUBSAMPLE cells (seed 0); returns (adata, note on the subsampling or "")."""
    from scdsec.io import read_counts

    if name in REAL:
        f, fmt, lab = REAL[name]
        adata = read_counts(DATA / f, labels=lab, format=fmt)
        adata.obs["truth"] = adata.obs["scdsec_true_label"].astype(str)
    else:
        from scdsec.simulate import simulate_counts

        k, sep, prop = SIMS[name]
        adata = simulate_counts(3000, 2000, k, seed=0, separation=sep, proportions=prop)
        adata.obs["truth"] = adata.obs["cell_type"].astype(str)
    if adata.n_obs <= MAX_CELLS:
        return adata, ""
    idx = np.random.default_rng(0).choice(adata.n_obs, SUBSAMPLE, replace=False)
    return adata[np.sort(idx)].copy(), f"subsampled to {SUBSAMPLE} cells (seed 0)"


def load(name):
    """Prepared AnnData (scdsec.pp.prepare defaults) + scanpy 15-NN graph, cached."""
    import anndata as ad
    import scanpy as sc

    from scdsec.pp import prepare

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.h5ad"
    if path.exists():
        return ad.read_h5ad(path)
    t = time.perf_counter()
    adata, note = labelled_counts(name)
    adata = prepare(adata)
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X_pca", random_state=0)
    adata.uns["autok_note"] = note
    for key in list(adata.uns):
        if key not in ("autok_note",):
            del adata.uns[key]
    adata.obs = adata.obs[["truth"]]
    adata.X = sp.csr_matrix((adata.n_obs, adata.n_vars), dtype=np.float32)  # not needed
    adata.write_h5ad(path)
    log(f"prepared {name} in {time.perf_counter() - t:.1f}s: {adata.n_obs} cells {note}")
    return adata


def igraph_of(adj):
    import igraph as ig

    adj = sp.triu(sp.csr_matrix(adj), k=1).tocoo()
    g = ig.Graph(n=adj.shape[0], edges=np.column_stack([adj.row, adj.col]).tolist(), directed=False)
    g.es["weight"] = adj.data.astype(float)
    return g


def leiden(g, res, seed):
    """As scdsec.clustering.leiden_labels / sc.tl.leiden(flavor='igraph', n_iterations=-1)."""
    from scanpy._utils.random import set_igraph_random_state

    with set_igraph_random_state(seed):
        part = g.community_leiden(
            objective_function="modularity", weights="weight", resolution=res, n_iterations=-1
        )
    return np.asarray(part.membership)


def count(labels, min_fraction=0.0):
    _, sizes = np.unique(labels, return_counts=True)
    return int(max((sizes >= min_fraction * len(labels)).sum(), 1))


def stability_curve(g, n, res, seed):
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    subs = []
    for _ in range(N_SUB):
        keep = np.sort(rng.choice(n, int(0.8 * n), replace=False))
        sg = g.induced_subgraph(keep.tolist())
        lab = np.full(n, -1)
        lab[keep] = leiden(sg, res, int(rng.integers(1 << 30)))
        subs.append(lab)
    aris = []
    for a, b in combinations(subs, 2):
        m = (a >= 0) & (b >= 0)
        aris.append(adjusted_rand_score(a[m], b[m]))
    return float(np.mean(aris))


def eigengap(adj, kmax=40):
    from scipy.sparse.linalg import eigsh

    a = sp.csr_matrix(adj, dtype=np.float64)
    d = np.asarray(a.sum(1)).ravel()
    dinv = sp.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    an = dinv @ a @ dinv
    vals = eigsh(
        an, k=kmax, which="LA", return_eigenvectors=False, tol=1e-6, v0=np.ones(a.shape[0])
    )
    lap = np.sort(1.0 - vals)  # smallest eigenvalues of L = I - D^-1/2 A D^-1/2
    gaps = np.diff(lap)  # gaps[i] = lap[i+1] - lap[i]: gap after i+1 eigenvalues
    ks = np.arange(1, kmax)
    ok = ks >= 2
    return int(ks[ok][np.argmax(gaps[ok])])


def kmeans_sil(x, seed, kmax=30, n_sample=3000):
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), min(n_sample, len(x)), replace=False)
    best, best_k = -2.0, 2
    for k in range(2, kmax + 1):
        lab = KMeans(k, n_init=3, random_state=seed).fit_predict(x)
        s = silhouette_score(x[idx], lab[idx])
        if s > best:
            best, best_k = s, k
    return best_k


def run_dataset(name, write):
    adata = load(name)
    true_k = adata.obs["truth"].nunique()
    n = adata.n_obs
    graphs = {"k50": adata.obsp["knn"], "k15": adata.obsp["connectivities"]}
    base = dict(dataset=name, n_cells=n, true_k=true_k, note=adata.uns.get("autok_note", ""))

    def emit(est, seed, found, secs):
        write(
            {
                **base,
                "estimator": est,
                "seed": seed,
                "found_k": found,
                "rel_err": round(abs(found - true_k) / true_k, 4),
                "seconds": round(secs, 2),
            }
        )

    for gname, adj in graphs.items():
        t = time.perf_counter()
        g = igraph_of(adj)
        t_graph = time.perf_counter() - t
        full = {}  # (res, seed) -> (labels, seconds)
        for res in sorted(set(RESOLUTIONS) | set(FIXED_RES)):
            for seed in SEEDS:
                t = time.perf_counter()
                full[res, seed] = (leiden(g, res, seed), time.perf_counter() - t + t_graph)
        for res in FIXED_RES:
            for seed in SEEDS:
                lab, secs = full[res, seed]
                emit(f"leiden_{gname}_r{res}", seed, count(lab), secs)
                emit(f"leiden_{gname}_r{res}_min", seed, count(lab, MIN_FRACTION), secs)
                emit(f"leiden_{gname}_r{res}_min1", seed, count(lab, MIN_FRACTION2), secs)
        for seed in SEEDS:
            # plateau: the community count that the most grid resolutions give (K = 1 excluded,
            # ties → larger K)
            ks = [count(full[r, seed][0]) for r in FIXED_RES]
            ks = [k for k in ks if k > 1] or [2]
            vals, freq = np.unique(ks, return_counts=True)
            emit(
                f"plateau_{gname}",
                seed,
                int(vals[freq == freq.max()].max()),
                sum(full[r, seed][1] for r in FIXED_RES),
            )
        for seed in SEEDS:
            t = time.perf_counter()
            curve = {res: stability_curve(g, n, res, seed) for res in RESOLUTIONS}
            secs = time.perf_counter() - t + sum(full[r, seed][1] for r in RESOLUTIONS)
            log(
                f"  {name} {gname} seed {seed} stability",
                {r: (round(v, 3), count(full[r, seed][0])) for r, v in curve.items()},
            )
            best = max(RESOLUTIONS, key=lambda r: (round(curve[r], 3), r))
            choices = {"max": best}
            for th in STAB_THRESHOLDS:
                ok = [r for r in RESOLUTIONS if curve[r] >= th]
                choices[f"t{th}"] = max(ok) if ok else min(RESOLUTIONS)
            for rule, res in choices.items():
                lab = full[res, seed][0]
                emit(f"stab_{gname}_{rule}", seed, count(lab), secs)
                emit(f"stab_{gname}_{rule}_min", seed, count(lab, MIN_FRACTION), secs)
        t = time.perf_counter()
        k = eigengap(adj)
        emit(f"eigengap_{gname}", 0, k, time.perf_counter() - t)
    x = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
    for seed in SEEDS:
        t = time.perf_counter()
        emit("kmeans_sil", seed, kmeans_sil(x, seed), time.perf_counter() - t)


def summarise():
    import pandas as pd

    df = pd.read_csv(OUT, sep="\t", comment="#")
    m = (
        df.groupby(["dataset", "estimator"])
        .agg(
            true_k=("true_k", "first"),
            found=("found_k", "mean"),
            sd=("found_k", "std"),
            secs=("seconds", "mean"),
        )
        .reset_index()
    )
    m["rel"] = (m.found - m.true_k).abs() / m.true_k
    m["hit"] = m.rel <= 0.2
    datasets = sorted(m.dataset.unique())
    wide = m.pivot(index="estimator", columns="dataset", values="found").round(1)
    score = m.groupby("estimator").agg(
        hits=("hit", "sum"), mean_rel=("rel", "mean"), secs=("secs", "mean")
    )
    score = score.sort_values(["hits", "mean_rel"], ascending=[False, True])
    lines = [
        f"# auto-K benchmark summary ({len(datasets)} datasets)",
        "",
        "true K: " + ", ".join(f"{d} {int(m[m.dataset == d].true_k.iloc[0])}" for d in datasets),
        "",
        "## estimators ranked (hits = datasets with |mean found − true| ≤ 20 % of true)",
        "",
        score.round(3).to_markdown(),
        "",
        "## mean found K over seeds",
        "",
        wide.loc[score.index].to_markdown(),
        "",
        "## leave-one-dataset-out",
        "",
    ]
    full_best = score.index[0]
    for d in datasets if len(datasets) > 1 else []:
        rest = m[m.dataset != d]
        s = rest.groupby("estimator").agg(hits=("hit", "sum"), mean_rel=("rel", "mean"))
        s = s.sort_values(["hits", "mean_rel"], ascending=[False, True])
        pick = s.index[0]
        row = m[(m.dataset == d) & (m.estimator == pick)].iloc[0]
        lines.append(
            f"- without {d}: choose {pick} ({int(s.hits.iloc[0])}/{len(datasets) - 1}); "
            f"on {d}: true {int(row.true_k)}, found {row.found:.1f}, "
            f"{'hit' if row.hit else 'MISS'}{'' if pick == full_best else ' (≠ overall choice)'}"
        )
    SUMMARY.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=",".join(list(REAL) + list(SIMS)))
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--append", action="store_true", help="append to the TSV instead of rewriting")
    args = ap.parse_args()
    if not args.summary_only:
        cols = [
            "dataset",
            "n_cells",
            "true_k",
            "estimator",
            "seed",
            "found_k",
            "rel_err",
            "seconds",
            "loadavg1",
            "threads",
            "note",
        ]
        new = not (args.append and OUT.exists())
        fh = OUT.open("w" if new else "a")
        if new:
            fh.write(
                f"# auto-K benchmark; host cpus={os.cpu_count()}; "
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
                f"start loadavg={os.getloadavg()}\n"
            )
            fh.write("\t".join(cols) + "\n")

        def write(row):
            row = {
                **row,
                "loadavg1": round(os.getloadavg()[0], 2),
                "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            }
            fh.write("\t".join(str(row[c]) for c in cols) + "\n")
            fh.flush()

        for name in args.datasets.split(","):
            t = time.perf_counter()
            run_dataset(name, write)
            log(f"{name} done in {time.perf_counter() - t:.1f}s, loadavg {os.getloadavg()}")
        fh.close()
    summarise()


if __name__ == "__main__":
    main()
