"""How the cost of each step grows with the cells, and how near training is to the machine's limit.

The workflow's target ``scalability`` (``benchmarks/scalability.yaml``) runs the usual steps on
simulated datasets of growing size; each rule's Snakemake benchmark file holds its wall time
and peak memory. :func:`scalability_step` gathers them into one table (cells × method × step),
and :func:`machine_step` measures the machine's dense matrix-product rate in the same run, so
that training throughput can be read as a fraction of what the hardware does:

    fraction of the limit = (cells × epochs / training seconds) × FLOPs per cell-epoch
                            / matrix-product FLOP/s

:func:`flops_per_cell_epoch` counts the model's matrix products only (dense layers and the
GCN's sparse propagation, forward and backward); the element-wise work of the losses is not
counted, so the fraction is an upper bound of how well the matrix units are used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .evaluate import read_benchmark, read_reference, read_result

PathLike = str | Path
# Columns of results/scalability/scores.tsv: one row per dataset × method × step.
COLUMNS = [
    "dataset",
    "cells",
    "method",
    "step",
    "seconds",
    "max_rss_mb",
    "mean_load",  # Snakemake's mean CPU load of the job (100 per busy core)
    "device",
    "status",  # ok, or why the method did not run (then no figures)
    "nmi",  # on the `total` rows: the method's labels against the true types (labelled cells)
    "ari",
]
# Columns of results/scalability/throughput.tsv: one row per dataset (scDSEC's training).
THROUGHPUT_COLUMNS = [
    "dataset",
    "cells",
    "device",
    "threads",
    "epochs",
    "train_seconds",
    "cell_epochs_per_second",
    "flops_per_cell_epoch",
    "matmul_flops_per_second",
    "fraction_of_matmul_rate",
    "batch_size",
    "edges_in_batches",
    "gpu_max_memory_mb",
]


def flops_per_cell_epoch(n_genes: int, model: Mapping, mean_degree: float) -> float:
    """Floating-point operations of the model's matrix products per cell and training pass.

    A dense layer ``a → b`` costs ``2ab`` forward and ``4ab`` backward (gradients of the
    weights and of the input; ``2ab`` for the first layer, whose input needs no gradient); a GCN
    layer adds the propagation ``Â H`` over ``mean_degree + 1`` entries a row at the narrower
    width, forward and backward. Counted: the internal and GCN stacks of the encoder (as
    ``model`` builds them), the mirrored decoder and its four heads of ``n_genes``.

    Parameters
    ----------
    n_genes
        Input genes ``t``.
    model
        The model's architecture as in ``uns["scdsec"]["params"]["model"]``: ``dims``,
        ``use_ae``, ``use_gcn`` (:class:`scdsec.model.ModelParams` fields).
    mean_degree
        Mean number of kNN neighbours per cell (``obsp["knn"].nnz / n_cells``).

    Returns
    -------
    FLOPs per cell per epoch (one forward and one backward pass).
    """
    dims = [int(n_genes), *(int(d) for d in model["dims"])]
    pairs = list(zip(dims[:-1], dims[1:], strict=True))

    def dense(layers: Sequence[tuple[int, int]], first_has_grad: bool) -> float:
        total = 0.0
        for i, (a, b) in enumerate(layers):
            backward = 4 * a * b if (i > 0 or first_has_grad) else 2 * a * b
            total += 2 * a * b + backward
        return total

    total = 0.0
    if model.get("use_ae", True):
        total += dense(pairs, first_has_grad=False)
    if model.get("use_gcn", True):
        total += dense(pairs, first_has_grad=False)
        total += sum(3 * 2 * (mean_degree + 1) * min(a, b) for a, b in pairs)
    hidden = list(reversed(dims[1:]))  # latent, …, widest hidden
    decoder = list(zip(hidden[:-1], hidden[1:], strict=True))
    decoder += [(hidden[-1], int(n_genes))] * 4  # reconstruction, mean, dispersion, dropout
    total += dense(decoder, first_has_grad=True)
    return float(total)


def matmul_rate(
    device: str = "cpu", threads: int | None = None, size: int = 2048, seconds: float = 2.0
) -> float:
    """Measured FLOP/s of float32 dense matrix products (``size × size`` by ``size × size``).

    Repeats the product for about ``seconds`` after one warm-up and returns ``2·size³`` per
    product over the time taken. ``threads`` sets torch's CPU threads for the measurement.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dev)
    b = torch.randn(size, size, generator=generator).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    (a @ b).sum().item()
    sync()
    repeats = 0
    start = time.perf_counter()
    while True:
        _ = a @ b
        repeats += 1
        if repeats % 4 == 0:
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2.0 * size**3 * repeats / elapsed


def machine_step(output: PathLike, *, device: str = "auto", threads: int | None = None) -> None:
    """Write the machine's matrix-product rate (``output``: a one-row TSV) for this run.

    ``device`` ``"auto"`` measures the GPU when one is visible (where training then runs).
    """
    import torch

    from ._files import atomic_path
    from .settings import select_device

    dev = select_device(device)
    rate = matmul_rate(str(dev), threads)
    row = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "matmul_flops_per_second": rate,
    }
    with atomic_path(output) as tmp:
        pd.DataFrame([row]).to_csv(tmp, sep="\t", index=False)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def _status(result: PathLike | None, method: str) -> str:
    """``ok``, or ``missing: <reason>`` from a baseline's result file (``uns[method]``)."""
    if result is None:
        return "ok"
    adata = ad.read_h5ad(result, backed="r")
    record = dict(adata.uns.get(method, {}))
    adata.file.close()
    if record.get("status", "ok") == "ok":
        return "ok"
    return f"{record.get('status')}: {record.get('reason', '')}".strip()


def scalability_table(
    entries: Sequence[Mapping], machine: Mapping
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-step table and scDSEC's training throughput, from benchmark files.

    Parameters
    ----------
    entries
        One mapping per dataset: ``dataset``; ``steps``, a list of
        ``{"method", "step", "benchmark"}`` (a Snakemake benchmark file each; a method's steps
        together make its whole run; scDSEC's training is the step ``train``, a baseline's own
        step ``cluster``, which may name its ``result`` file, whose status says whether the
        method ran); ``train`` (scDSEC's result h5ad, for its epochs, device, threads,
        batches and training time).
    machine
        :func:`machine_step`'s row.

    Returns
    -------
    ``(scores, throughput)`` with :data:`COLUMNS` and :data:`THROUGHPUT_COLUMNS`; each method
    also gets a ``total`` row per dataset (the sum of its steps' seconds, the largest peak,
    and the NMI and ARI of its labels against ``obs['scdsec_true_label']`` of scDSEC's result
    file, on the labelled cells; NaN when the data have no labels or the method did not run).
    """
    rows, throughput = [], []
    for entry in entries:
        result = ad.read_h5ad(entry["train"], backed="r")
        record = dict(result.uns["scdsec"])
        cells = int(result.n_obs)
        degree = float(result.uns["scdsec_graph"]["n_edges"]) * 2 / cells
        n_genes = int(result.n_vars)
        result.file.close()
        device = str(record.get("device", ""))
        steps = []
        for step in entry["steps"]:
            measured = read_benchmark(step["benchmark"])
            status = _status(step.get("result"), step["method"])
            if status != "ok":  # a job that only recorded why it could not run
                measured = dict.fromkeys(measured, math.nan)
            if step["method"] == "scdsec" and step["step"] == "train":
                where = device  # where it trained
            elif step["method"].startswith("scvi") and step["step"] == "cluster":
                where = str(machine.get("device", ""))  # scVI takes the GPU when there is one
            else:
                where = "cpu"
            steps.append(
                {
                    "dataset": entry["dataset"],
                    "cells": cells,
                    "method": step["method"],
                    "step": step["step"],
                    **measured,
                    "device": where,
                    "status": status,
                }
            )
        rows += steps
        truth = read_reference(entry["train"])[0]
        results = {"scdsec": entry["train"]}
        results.update({s["method"]: s["result"] for s in entry["steps"] if s.get("result")})
        for method in dict.fromkeys(s["method"] for s in steps):
            own = [s for s in steps if s["method"] == method]
            rows.append(
                {
                    **own[0],
                    **_label_scores(truth, results.get(method), method),
                    "step": "total",
                    "seconds": float(sum(s["seconds"] for s in own)),
                    "max_rss_mb": float(np.max([s["max_rss_mb"] for s in own])),  # NaN stays
                    "mean_load": math.nan,
                    "status": next((s["status"] for s in own if s["status"] != "ok"), "ok"),
                    "device": ",".join(dict.fromkeys(s["device"] for s in own)),
                }
            )
        history = pd.DataFrame(record["history"])
        epochs = len(history)
        seconds = float(history["seconds"].iloc[-1]) if epochs else math.nan
        flops = flops_per_cell_epoch(n_genes, record["params"]["model"], degree)
        rate = cells * epochs / seconds if seconds > 0 else math.nan
        batches = dict(record.get("batches") or {})
        throughput.append(
            {
                "dataset": entry["dataset"],
                "cells": cells,
                "device": device,
                "threads": record.get("threads", math.nan),
                "epochs": epochs,
                "train_seconds": seconds,
                "cell_epochs_per_second": rate,
                "flops_per_cell_epoch": flops,
                "matmul_flops_per_second": float(machine["matmul_flops_per_second"]),
                "fraction_of_matmul_rate": rate * flops / float(machine["matmul_flops_per_second"]),
                "batch_size": batches.get("batch_size", cells),
                "edges_in_batches": batches.get("edges_in_batches", 1.0),
                "gpu_max_memory_mb": record.get("gpu_max_memory_mb", math.nan),
            }
        )
    scores = pd.DataFrame(rows, columns=COLUMNS).sort_values(["cells", "method"], kind="stable")
    return scores.reset_index(drop=True), pd.DataFrame(throughput, columns=THROUGHPUT_COLUMNS)


def _label_scores(truth: pd.Series | None, result: PathLike | None, method: str) -> dict:
    """NMI and ARI of a method's labels in ``result`` against ``truth`` (NaN without either)."""
    from .experiments import method_key
    from .metrics import score_labelled

    if truth is None or result is None:
        return {"nmi": math.nan, "ari": math.nan}
    labels = read_result(result, method_key(method)).labels
    if labels is None:
        return {"nmi": math.nan, "ari": math.nan}
    scores = score_labelled(truth.reindex(labels.index), labels)
    return {"nmi": scores["nmi"], "ari": scores["ari"]}


def scalability_step(
    entries: Sequence[Mapping], machine: PathLike, scores: PathLike, throughput: PathLike
) -> None:
    """Write :func:`scalability_table`'s two tables (TSV) from the run's files."""
    from ._files import atomic_path

    machine_row = pd.read_csv(machine, sep="\t").iloc[0].to_dict()
    table, rates = scalability_table(entries, machine_row)
    for frame, path in ((table, scores), (rates, throughput)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def growth_exponent(cells: Sequence[float], values: Sequence[float]) -> float:
    """Slope of log(value) against log(cells): 1 is linear growth (NaN with < 2 finite points)."""
    x, y = np.log(np.asarray(cells, float)), np.log(np.asarray(values, float))
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])
