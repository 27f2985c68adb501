"""Screen a choice of the model's joint training on labelled datasets, leave-one-dataset-out.

For every dataset × seed the network is pretrained once; each variant of the joint stage
(train-parameter overrides) then starts from the same pretrained weights, so the variants
differ only in what they change. A variant that changes pretraining (``PRETRAINING_KEYS``,
e.g. ``mask_fraction``) gets a pretraining of its own, shared with the variants that change
it the same way. The standard baselines run on the same QC'd counts. Every
result is one row of a scores file (dataset, method, seed, NMI, ARI, the fraction of the
largest true type kept in one cluster, seconds), appended as it finishes, so an interrupted
screen resumes where it stopped and any row can be rerun alone.

    python benchmarks/screen.py run --config benchmarks/shared_data.yaml \\
        benchmarks/simulated.yaml --seeds 0 1 2 3 4 \\
        --variant gamma1:center_init=embedding,target_frequency_exponent=1 \\
        --variant bothinit:center_init=both,target_frequency_exponent=1 --out SCORES.tsv
    python benchmarks/screen.py table SCORES.tsv > TABLE.md

With ``--labels DIR`` the run also keeps every row's labels, and ``consensus`` scores the
ensemble option from them without training again: the consensus of the runs with seeds
``g·R … g·R + R − 1`` (``scdsec.consensus.ensemble_seeds(g, R)``, the runs that
``scdsec.tl.cluster(seed=g, n_runs=R)`` trains) becomes the row ``VARIANT+consensusR``, seed
``g``, its seconds the sum of its runs':

    python benchmarks/screen.py consensus SCORES.tsv --labels DIR --runs 3 --variants gamma1

`table` writes the mean ± sd per dataset and method, and the leave-one-dataset-out choice
between the variants: with each real dataset left out in turn, the variant with the best mean
NMI over the others is chosen, and its score on the left-out dataset is set beside the best
baseline there. It also reads the workflow's ``results/benchmark/scores.tsv`` (rows whose
status is not ``ok`` left out), which is how the README's benchmark table is written.

Preprocessing is the package's defaults (those of config.yaml). The split of one seed into
pretraining and joint stage makes a screen's labels differ from a workflow run with the same
seed (the non-edge sampler restarts at the joint stage): a screen compares variants, the
workflow's benchmark measures the chosen default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scdsec.experiments import BASELINES as KNOWN_BASELINES  # noqa: E402
from scdsec.experiments import STANDARD_BASELINES as BASELINES  # noqa: E402

# threads: torch's CPU threads of the run; commit: this repository's HEAD (+ "-dirty" with
# uncommitted changes); n_clusters: the clusters found (K, or what n_clusters=auto found). Files
# written before a column existed are appended to in their own columns.
COLUMNS = [
    "dataset",
    "method",
    "seed",
    "nmi",
    "ari",
    "largest_type_kept",
    "seconds",
    "threads",
    "commit",
    "n_clusters",
]


def _commit() -> str:
    """This repository's HEAD, ``-dirty`` appended when tracked files are modified."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _datasets(config_files: list[str]) -> dict[str, dict]:
    """The datasets of each config's ``run`` list, in order, with their entries.

    An entry ``{from: NAME, draw: D}`` (benchmarks/imbalanced.yaml) is a subset of dataset
    NAME of the config named by ``datasets_from``, drawn by ``scdsec.simulate.imbalanced_subset``
    with the config's ``imbalance`` settings and seed D.
    """
    chosen: dict[str, dict] = {}
    for path in config_files:
        config = yaml.safe_load(Path(path).read_text())
        for name in config["run"]:
            entry = dict(config["datasets"][name])
            if "from" in entry:
                base = yaml.safe_load((Path(path).parent / config["datasets_from"]).read_text())
                entry["base"] = base["datasets"][entry["from"]]
                entry["imbalance"] = config["imbalance"]
            chosen[name] = entry
    return chosen


def _variants(specs: list[str]) -> dict[str, dict]:
    """``name:key=value,key=value`` → {name: {key: value}} (values parsed as YAML); the keys
    are ``train.*`` settings, and ``n_clusters=auto`` trains without the true K."""
    variants = {}
    for spec in specs:
        name, _, overrides = spec.partition(":")
        pairs = [item.split("=", 1) for item in overrides.split(",") if item]
        variants[name] = {key: yaml.safe_load(value) for key, value in pairs}
    return variants


# Training settings that pretraining reads: variants that set one get a pretraining of their own.
PRETRAINING_KEYS = frozenset(
    {
        "pretrain_epochs",
        "pretrain_lr",
        "zinb_weight",
        "rec_weight",
        "graph_weight",
        "mask_fraction",
        "contrastive_weight",
        "contrastive_pairs",
        "batch_size",
        "parts_per_batch",
    }
)


def _by_pretraining(names: list[str], variants: dict[str, dict]) -> dict[tuple, list[str]]:
    """The variants grouped by the pretraining settings they override (``()``: the default's),
    so that each group shares one pretrained network and differs only in its joint stage."""
    groups: dict[tuple, list[str]] = {}
    for name in names:
        overrides = variants[name]
        key = tuple(sorted((k, v) for k, v in overrides.items() if k in PRETRAINING_KEYS))
        groups.setdefault(key, []).append(name)
    return groups


def _prepared(name: str, entry: dict, cache: Path):
    """QC'd counts and the model's prepared input of one dataset (cached as .h5ad)."""
    import anndata as ad

    from scdsec.graph import build_knn_graph
    from scdsec.pipeline import import_dataset
    from scdsec.preprocessing import normalize, qc_filter

    qc_file, prepared_file = cache / f"{name}.qc.h5ad", cache / f"{name}.prepared.h5ad"
    if not prepared_file.exists():
        if "from" in entry:  # a subset of another dataset's QC'd cells, prepared anew
            from scdsec.simulate import imbalanced_subset

            base, _ = _prepared(entry["from"], entry["base"], cache)
            keep = imbalanced_subset(
                base.obs["scdsec_true_label"], **entry["imbalance"], seed=entry["draw"]
            )
            qc = qc_filter(base[keep].copy())
        else:
            raw = import_dataset(entry, cache / f"{name}.counts.h5ad", name=name, cache_dir=cache)
            qc = qc_filter(raw)
        qc.write_h5ad(qc_file)
        build_knn_graph(normalize(qc)).write_h5ad(prepared_file)
    return ad.read_h5ad(qc_file), ad.read_h5ad(prepared_file)


def _row(
    dataset: str, method: str, seed: int, truth, pred, seconds: float, threads, commit: str
) -> dict:
    from scdsec.metrics import label_scores, largest_type_kept

    scores = label_scores(truth, pred)
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "nmi": scores["nmi"],
        "ari": scores["ari"],
        "largest_type_kept": largest_type_kept(truth, pred),
        "seconds": seconds,
        "threads": threads,
        "commit": commit,
        "n_clusters": len(np.unique(pred)),
    }


def _append(out: Path, row: dict) -> None:
    """Append one row, in the columns of the file's header, and say it on stdout."""
    with out.open() as fh:
        header = fh.readline().rstrip("\n").split("\t")
    with out.open("a") as fh:
        fh.write("\t".join(str(row[c]) for c in header) + "\n")
    print(
        f"{row['dataset']} {row['method']} seed {row['seed']}: NMI {row['nmi']:.3f} "
        f"ARI {row['ari']:.3f} largest kept {row['largest_type_kept']:.2f}",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    import torch

    from scdsec.baselines import kmeans_labels, run_baseline, scvi_latent
    from scdsec.experiments import SCVI_BASELINES
    from scdsec.model import SCDSEC

    out = Path(args.out)
    done = set()
    if out.exists():
        old = pd.read_csv(out, sep="\t")
        done = set(zip(old["dataset"], old["method"], old["seed"], strict=True))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\t".join(COLUMNS) + "\n")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    variants = _variants(args.variant)
    torch.set_num_threads(args.threads)
    run_by = (args.threads, _commit())

    labels_dir = Path(args.labels) if args.labels else None

    def write(row: dict, pred) -> None:
        if labels_dir is not None:
            np.save(labels_dir / row["dataset"] / f"{row['method']}.seed{row['seed']}.npy", pred)
        _append(out, row)

    datasets = _datasets(args.config)
    for seed in args.seeds:
        for name, entry in datasets.items():
            if args.datasets and name not in args.datasets:
                continue
            qc, adata = _prepared(name, entry, cache)
            truth = adata.obs["scdsec_true_label"].astype(str).to_numpy()
            k = int(entry.get("n_clusters") or len(np.unique(truth)))
            if labels_dir is not None:
                (labels_dir / name).mkdir(parents=True, exist_ok=True)
                np.savez(labels_dir / name / "truth.npz", truth=truth.astype(str), n_clusters=k)
            trained_scvi, scvi_seconds = None, 0.0  # one scVI training for both scVI methods
            for method in args.baselines:
                if (name, method, seed) in done:
                    continue
                is_scvi = method in SCVI_BASELINES
                if is_scvi and trained_scvi is None:
                    start = time.perf_counter()
                    trained_scvi = scvi_latent(qc, seed=seed)
                    scvi_seconds = time.perf_counter() - start
                start = time.perf_counter()
                result = run_baseline(
                    method,
                    qc,
                    n_clusters=k,
                    seed=seed,
                    trained_scvi=trained_scvi if is_scvi else None,
                )
                seconds = (scvi_seconds if is_scvi else 0.0) + time.perf_counter() - start
                pred = result.labels
                write(_row(name, method, seed, truth, pred, seconds, *run_by), pred)
            todo = [v for v in variants if (name, v, seed) not in done]
            for pretraining, group in _by_pretraining(todo, variants).items():
                start = time.perf_counter()
                model = SCDSEC(adata, k, seed=seed)
                model.train(epochs=0, **dict(pretraining))
                pretrained = {key: t.clone() for key, t in model.module.state_dict().items()}
                seconds = time.perf_counter() - start
                z = model.get_latent_representation()
                if not pretraining and (name, "pretrained_kmeans", seed) not in done:
                    pred = kmeans_labels(z, k, seed=seed, n_init=model.params.train.kmeans_n_init)
                    row = _row(name, "pretrained_kmeans", seed, truth, pred, seconds, *run_by)
                    write(row, pred)
                for variant in group:
                    start = time.perf_counter()
                    overrides = dict(variants[variant])
                    auto = overrides.pop("n_clusters", None) == "auto"  # K from the data
                    overrides.pop("pretrain_epochs", None)  # pretraining is done (above)
                    runner = SCDSEC(adata, "auto", seed=seed) if auto else model
                    state = dict(pretrained)  # pretraining ignores K: the network is shared
                    if auto:  # ... but not the true K's centres: the estimate's count stays
                        state["assignment.centers"] = runner.module.assignment.centers.detach()
                    runner.module.assignment.set_centers(state["assignment.centers"])
                    runner.module.load_state_dict(state)
                    runner.train(pretrain_epochs=0, **overrides)
                    pred = runner.predict()
                    seconds_variant = seconds + time.perf_counter() - start
                    write(_row(name, variant, seed, truth, pred, seconds_variant, *run_by), pred)


def consensus(args: argparse.Namespace) -> None:
    from scdsec.consensus import consensus_labels, ensemble_seeds

    out = Path(args.scores)
    scores = pd.read_csv(out, sep="\t")
    runs = scores.set_index(["dataset", "method", "seed"])
    commit = _commit()
    done = set(zip(scores["dataset"], scores["method"], scores["seed"], strict=True))
    for folder in sorted(Path(args.labels).iterdir()):
        with np.load(folder / "truth.npz") as saved:
            truth, k = saved["truth"], int(saved["n_clusters"])
        for variant in args.variants:
            method = f"{variant}+consensus{args.runs}"
            for group in range(args.groups):
                members = ensemble_seeds(group, args.runs)
                files = [folder / f"{variant}.seed{s}.npy" for s in members]
                if (folder.name, method, group) in done or not all(f.exists() for f in files):
                    continue
                start = time.perf_counter()
                pred, _ = consensus_labels([np.load(f) for f in files], k, seed=group)
                cost = time.perf_counter() - start
                member_rows = runs.loc[[(folder.name, variant, s) for s in members]]
                cost += member_rows["seconds"].sum()
                threads = member_rows["threads"].iloc[0] if "threads" in runs else ""
                row = _row(folder.name, method, group, truth, pred, cost, threads, commit)
                _append(out, row)


def _summary(scores: pd.DataFrame) -> pd.DataFrame:
    if "largest_type_kept" not in scores:  # e.g. the workflow's results/benchmark/scores.tsv
        scores = scores.assign(largest_type_kept=np.nan)
    return (
        scores.groupby(["dataset", "method"], sort=False)
        .agg(
            nmi=("nmi", "mean"),
            nmi_sd=("nmi", "std"),
            ari=("ari", "mean"),
            ari_sd=("ari", "std"),
            kept=("largest_type_kept", "mean"),
            seeds=("seed", "nunique"),
        )
        .astype({"seeds": int})
    )


def _common_seeds(scores: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """The rows of the (dataset, seed) pairs that every one of ``methods`` has."""
    have = scores[scores["method"].isin(methods)].groupby(["dataset", "seed"])["method"]
    complete = have.nunique()[lambda n: n == len(methods)].index
    keys = pd.MultiIndex.from_frame(scores[["dataset", "seed"]])
    return scores[keys.isin(complete) & scores["method"].isin(methods)]


def table(args: argparse.Namespace) -> None:
    scores = pd.concat([pd.read_csv(f, sep="\t") for f in args.scores])
    if "status" in scores:  # the workflow's scores: a missing method has a row without scores
        scores = scores[scores["status"] == "ok"]
    key = ["dataset", "method", "seed"]
    again = scores.duplicated(key, keep=False)
    if again.any():  # a row in two files (e.g. the baselines of two screens) counts once
        differ = scores[again].groupby(key)["nmi"].nunique().gt(1).sum()
        print(f"{again.sum()} rows in more than one file, counted once ({differ} keys differ)\n")
        scores = scores.drop_duplicates(key)
    summary = _summary(scores)
    methods = args.methods or list(dict.fromkeys(scores["method"]))
    datasets = list(dict.fromkeys(scores["dataset"]))
    print("NMI mean ± sd / ARI mean over seeds (the largest true type: mean fraction of its cells")
    print("in its most common cluster), seeds in brackets; every row is in the scores file\n")
    print("| dataset | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for dataset in datasets:
        cells = []
        for m in methods:
            if (dataset, m) not in summary.index:
                cells.append("—")
                continue
            s = summary.loc[(dataset, m)]
            sd = f"±{s.nmi_sd:.3f}" if s.seeds > 1 else ""
            kept = f" ({s.kept:.2f})" if pd.notna(s.kept) else ""
            cells.append(f"{s.nmi:.3f}{sd} / {s.ari:.3f}{kept} [{int(s.seeds)}]")
        print(f"| {dataset} | " + " | ".join(cells) + " |")
    real = [d for d in datasets if not d.startswith("sim_")]
    means = []
    for m in methods:  # over the real datasets, for a method that has them all
        rows = [(d, m) for d in real]
        if all(r in summary.index for r in rows):
            means.append(
                f"{summary.loc[rows, 'nmi'].mean():.3f} / {summary.loc[rows, 'ari'].mean():.3f}"
            )
        else:
            means.append("—")
    print(f"| mean over the {len(real)} real datasets | " + " | ".join(means) + " |")

    variants = args.variants or [m for m in methods if m not in KNOWN_BASELINES]
    if len(variants) < 2 or len(real) < 2 or not set(BASELINES) <= set(scores["method"]):
        return  # the leave-one-out choice needs two variants and the baselines beside them
    paired = _summary(_common_seeds(scores, variants + list(BASELINES)))
    nmi, ari = paired["nmi"].unstack("method"), paired["ari"].unstack("method")
    real = [d for d in real if d in nmi.index]
    print(f"\nLeave one dataset out among {', '.join(variants)} (seeds every one of them has):")
    print("with each real dataset left out, the variant with the best mean NMI over the others,")
    print("scored on the one left out, beside the best baseline there\n")
    print("| left out | seeds | chosen | its NMI / ARI | best baseline | its NMI / ARI | NMI gap |")
    print("|---|---|---|---|---|---|---|")
    for left in real:
        others = [d for d in real if d != left]
        chosen = nmi.loc[others, variants].mean().idxmax()
        best = nmi.loc[left, list(BASELINES)].idxmax()
        print(
            f"| {left} | {int(paired.loc[(left, chosen), 'seeds'])} | {chosen} "
            f"| {nmi.loc[left, chosen]:.3f} / {ari.loc[left, chosen]:.3f} | {best} "
            f"| {nmi.loc[left, best]:.3f} / {ari.loc[left, best]:.3f} "
            f"| {nmi.loc[left, chosen] - nmi.loc[left, best]:+.3f} |"
        )
    print(
        "\nMean over these real datasets, NMI / ARI: "
        + "; ".join(
            f"{m} {nmi.loc[real, m].mean():.3f} / {ari.loc[real, m].mean():.3f}"
            for m in variants + list(BASELINES)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and score; appends rows to --out")
    p.add_argument("--config", nargs="+", required=True, help="configs with run and datasets")
    p.add_argument("--datasets", nargs="*", help="only these datasets of the configs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--variant", action="append", default=[], help="name:train_key=value,... (repeatable)"
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        choices=KNOWN_BASELINES,
        default=list(BASELINES),
        help="baselines to run (default: the standard three; scvi_* need the scvi extra)",
    )
    p.add_argument("--out", required=True, help="scores file (TSV), appended to")
    p.add_argument("--cache", default="results/screen", help="prepared datasets")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--labels", help="keep each row's labels here (for `consensus`)")
    p.set_defaults(func=run)
    c = sub.add_parser("consensus", help="score ensembles from kept labels; appends rows")
    c.add_argument("scores", help="the scores file of the run that kept the labels")
    c.add_argument("--labels", required=True, help="the run's --labels folder")
    c.add_argument("--runs", type=int, required=True, help="ensemble size R")
    c.add_argument("--groups", type=int, default=10, help="ensemble seeds 0 … groups − 1")
    c.add_argument("--variants", nargs="+", required=True)
    c.set_defaults(func=consensus)
    t = sub.add_parser("table", help="markdown tables of scores files")
    t.add_argument("scores", nargs="+")
    t.add_argument("--variants", nargs="+", help="the variants to choose among (default: all)")
    t.add_argument("--methods", nargs="+", help="the first table's columns (default: all)")
    t.set_defaults(func=table)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
