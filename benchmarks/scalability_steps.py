"""The scalability target's steps without Snakemake, for a machine that lacks it (the GPU machine).

`snakemake scalability` is the way to measure scale wherever the workflow is installed. A bare
GPU machine has PyTorch but neither Snakemake nor scanpy; this driver runs the same step
functions that the rules call (scdsec.pipeline, scdsec.baselines), each in a fresh Python
process whose wall time, peak resident memory, CPU load and peak GPU memory it measures itself,
writes them as Snakemake-style benchmark files, and then makes the same tables and figure as
the target (scdsec.scalability):

    python benchmarks/scalability_steps.py --config benchmarks/scalability_gpu.yaml \\
        --out results/scalability_gpu --threads 16

Steps per dataset of the config's `run` (first seed): data (simulate) → qc → normalize →
graph → train (scDSEC), and each other method of `methods` from the QC'd counts. The
parameters are config.yaml's with the given config laid over it, as `--configfile` does.
Finished steps are kept (a rerun continues where a run stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def merged_config(paths: list[Path]) -> dict:
    """config.yaml with each file laid over it (nested mappings merged, as Snakemake does)."""

    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for path in paths:
        config = merge(config, yaml.safe_load(Path(path).read_text()))
    return config


def plan(config: dict, out: Path, threads: int) -> list[dict]:
    """Every step to run: ``{dataset, method, step, call, output, benchmark}``, where ``call``
    is ``[module:function, args, kwargs]`` as the workflow's rule script would call it."""
    t = config["normalize"]["n_top_genes"]
    seed = config["seeds"][0]
    model = {"preset": config.get("preset", "default")}
    model.update({key: config.get(key) or {} for key in ("model", "train")})
    normalize = {"n_top_genes": t, "flavor": config["normalize"]["flavor"]}
    normalize["clip"] = config["normalize"]["clip"]
    graph = {k: config["graph"][k] for k in ("n_neighbors", "n_pcs", "method")}
    steps = []
    for dataset in config["run"]:
        entry = config["datasets"][dataset]
        base = out / dataset
        counts, qc = base / "counts.h5ad", base / "qc.h5ad"
        normalized, graph_file = base / f"normalized_t{t}.h5ad", base / "graph.h5ad"

        def step(method, name, function, args, kwargs, output, dataset=dataset, base=base):
            benchmark = f"{method}_seed{seed}" if name in ("train", "cluster") else name
            steps.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "step": name,
                    "call": [
                        function,
                        [a if isinstance(a, dict) else str(a) for a in args],
                        kwargs,
                    ],
                    "output": str(output),
                    "threads": threads,
                    "benchmark": str(base / "benchmarks" / f"{benchmark}.tsv"),
                }
            )

        cache = {"name": dataset, "cache_dir": str(base / "download")}
        step("data", "download", "scdsec.pipeline:import_dataset", [entry, counts], cache, counts)
        step("scdsec", "qc", "scdsec.pipeline:qc_step", [counts, qc], config["qc"], qc)
        step("scdsec", "normalize", "scdsec.pipeline:normalize_step", [qc, normalized], normalize,
             normalized)  # fmt: skip
        step("scdsec", "graph", "scdsec.pipeline:graph_step", [normalized, graph_file],
             {**graph, "n_jobs": threads}, graph_file)  # fmt: skip
        for method in config["methods"]:
            run_dir = base / method / f"seed{seed}"
            common = {"n_clusters": entry["n_clusters"], "seed": seed, "threads": threads}
            if method == "scdsec":
                step(method, "train", "scdsec.pipeline:train_step", [graph_file, run_dir],
                     {**common, "params": model}, run_dir / "scdsec.h5ad")  # fmt: skip
            else:
                kwargs = {**common, "method": method, "params": config["baselines"]}
                kwargs.pop("threads")  # run_child keeps every pool to them
                step(method, "cluster", "scdsec.baselines:baseline_step", [qc, run_dir], kwargs,
                     run_dir / f"{method}.h5ad")  # fmt: skip
    return steps


def run_child(spec: dict) -> None:
    """Run one step in this process and write its benchmark file (s, max_rss, mean_load, …)."""
    import importlib

    module, name = spec["call"][0].split(":")
    function = getattr(importlib.import_module(module), name)
    args, kwargs = spec["call"][1], spec["call"][2]
    from scdsec.settings import limit_threads

    limit_threads(spec["threads"])
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    function(*args, **kwargs)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    row = {"s": seconds, "max_rss": usage.ru_maxrss / 1024, "mean_load": 100 * cpu / seconds}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        row["gpu_max_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(spec["benchmark"]).parent.mkdir(parents=True, exist_ok=True)
    header, values = "\t".join(row), "\t".join(f"{v:.4f}" for v in row.values())
    Path(spec["benchmark"]).write_text(f"{header}\n{values}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return 0
    config = merged_config(args.config)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    steps = plan(config, args.out, args.threads)
    for spec in steps:
        if Path(spec["benchmark"]).exists() and Path(spec["output"]).exists():
            continue
        label = f"{spec['dataset']} {spec['method']} {spec['step']}"
        print(f"[{time.strftime('%H:%M:%S')}] {label}", flush=True)
        child = json.dumps(spec, default=str)
        cmd = [sys.executable, __file__, "--config", *map(str, args.config), "--out",
               str(args.out), "--child", child]  # fmt: skip
        done = subprocess.run(cmd, env=env, check=False)
        if done.returncode != 0:
            print(f"{label}: failed (exit {done.returncode})", file=sys.stderr)
            return 1
        print(Path(spec["benchmark"]).read_text().strip(), flush=True)

    from scdsec.plotting import plot_scalability
    from scdsec.scalability import machine_step, scalability_step

    machine = args.out / "machine.tsv"
    machine_step(machine, threads=args.threads)
    entries = {}
    for spec in steps:
        entry = entries.setdefault(spec["dataset"], {"dataset": spec["dataset"], "steps": []})
        if spec["step"] == "qc":
            entry["qc"] = spec["benchmark"]
        if spec["step"] == "cluster":  # a baseline's whole run starts from the QC'd counts
            qc = {"method": spec["method"], "step": "qc", "benchmark": entry["qc"]}
            entry["steps"].append(qc)
        entry["steps"].append({k: spec[k] for k in ("method", "step", "benchmark")})
        if spec["step"] == "cluster":
            entry["steps"][-1]["result"] = spec["output"]
        if spec["method"] == "scdsec" and spec["step"] == "train":
            entry["train"] = spec["output"]
    scores, throughput = args.out / "scores.tsv", args.out / "throughput.tsv"
    scalability_step(list(entries.values()), machine, scores, throughput)
    import pandas as pd

    plot_scalability(pd.read_csv(scores, sep="\t"), args.out / "scalability.png")
    print(pd.read_csv(scores, sep="\t").to_string(index=False))
    print(pd.read_csv(throughput, sep="\t").T.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
