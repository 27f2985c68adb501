"""The scalability target's measures: the model's FLOP count, the machine's rate, the tables."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scdsec.scalability import (
    COLUMNS,
    THROUGHPUT_COLUMNS,
    flops_per_cell_epoch,
    growth_exponent,
    matmul_rate,
    scalability_table,
)


def test_flops_per_cell_epoch_counts_every_matrix_product():
    # t = 10 genes, widths 4-2, mean degree 3; by hand: each encoder stack 2·40 + 2·40 (first
    # layer: no input gradient) + 6·8 = 208; GCN propagation 3·2·4·(4 + 2) = 144; decoder
    # 6·(2·4) + 4 heads · 6·(4·10) = 1008.
    model = {"dims": [4, 2], "use_ae": True, "use_gcn": True}
    assert flops_per_cell_epoch(10, model, 3.0) == 208 + 208 + 144 + 1008
    assert flops_per_cell_epoch(10, {**model, "use_gcn": False}, 3.0) == 208 + 1008
    # the default model on 1,000 genes: about 10 MFLOP per cell and epoch
    default = {"dims": [256, 64, 10]}
    assert 8e6 < flops_per_cell_epoch(1000, default, 70.0) < 12e6


def test_matmul_rate_is_a_positive_rate():
    rate = matmul_rate("cpu", size=128, seconds=0.05)
    assert math.isfinite(rate) and rate > 1e8  # any CPU does more than 0.1 GFLOP/s


def test_growth_exponent():
    cells = [1e4, 2e4, 5e4]
    assert growth_exponent(cells, [2 * c for c in cells]) == pytest.approx(1.0)
    assert growth_exponent(cells, [c**2 for c in cells]) == pytest.approx(2.0)
    assert math.isnan(growth_exponent([1e4], [1.0]))


def _benchmark_file(path, seconds, rss):
    pd.DataFrame({"s": [seconds], "max_rss": [rss], "mean_load": [150.0]}).to_csv(
        path, sep="\t", index=False
    )
    return str(path)


def test_scalability_table_from_benchmark_files(tmp_path):
    n = 50
    result = ad.AnnData(sp.csr_matrix(np.ones((n, 10), dtype=np.float32)))
    result.uns["scdsec_graph"] = {"n_edges": 75}  # mean degree 3
    result.obs_names = [f"c{i}" for i in range(n)]
    result.obs["scdsec_true_label"] = np.repeat(["a", "b"], n // 2)
    result.obs["scdsec"] = np.repeat(["0", "1"], n // 2)  # the true partition
    result.obsm["X_pca"] = np.zeros((n, 2))
    history = {"seconds": [1.0, 2.0, 4.0, 5.0]}  # 4 epochs in 5 s
    result.uns["scdsec"] = {
        "device": "cpu",
        "threads": 2,
        "params": {"model": {"dims": [4, 2]}},
        "history": history,
        "batches": {"batch_size": 20, "edges_in_batches": 0.8},
    }
    result.write_h5ad(tmp_path / "scdsec.h5ad")
    missing_result = tmp_path / "scvi_leiden.h5ad"
    skipped = ad.AnnData(np.zeros((n, 0), dtype=np.float32))
    skipped.uns["scvi_leiden"] = {"status": "missing", "reason": "scvi-tools is not installed"}
    skipped.write_h5ad(missing_result)
    steps = [
        {"method": "data", "step": "download", "benchmark": _benchmark_file(tmp_path / "d", 1, 10)},
        {"method": "scdsec", "step": "qc", "benchmark": _benchmark_file(tmp_path / "q", 2, 100)},
        {"method": "scdsec", "step": "train", "benchmark": _benchmark_file(tmp_path / "t", 7, 300)},
        {"method": "leiden", "step": "qc", "benchmark": _benchmark_file(tmp_path / "q", 2, 100)},
        {"method": "leiden", "step": "cluster", "benchmark": str(tmp_path / "missing.tsv")},
        {
            "method": "scvi_leiden",
            "step": "cluster",
            "benchmark": _benchmark_file(tmp_path / "s", 0.5, 90),
            "result": missing_result,
        },
    ]
    entries = [{"dataset": "sim", "steps": steps, "train": tmp_path / "scdsec.h5ad"}]
    machine = {"device": "cpu", "matmul_flops_per_second": 1e6}
    scores, throughput = scalability_table(entries, machine)
    assert list(scores.columns) == COLUMNS and list(throughput.columns) == THROUGHPUT_COLUMNS
    total = scores[(scores["method"] == "scdsec") & (scores["step"] == "total")].iloc[0]
    assert total["seconds"] == 9 and total["max_rss_mb"] == 300 and total["cells"] == n
    assert total["nmi"] == pytest.approx(1.0) and total["ari"] == pytest.approx(1.0)
    assert scores.loc[scores["step"] != "total", "nmi"].isna().all()  # scores on totals only
    # a step without its benchmark file stays as a row with no figure, never dropped
    cluster = scores[(scores["method"] == "leiden") & (scores["step"] == "cluster")].iloc[0]
    assert math.isnan(cluster["seconds"])
    # a method that did not run has no figures, only its reason
    scvi = scores[scores["method"] == "scvi_leiden"].set_index("step")
    assert scvi["seconds"].isna().all() and scvi["max_rss_mb"].isna().all()
    assert scvi.loc["total", "status"] == "missing: scvi-tools is not installed"
    assert math.isnan(scvi.loc["total", "nmi"])
    assert (scores.loc[scores["method"] == "scdsec", "status"] == "ok").all()
    (row,) = throughput.to_dict("records")
    assert row["epochs"] == 4 and row["cell_epochs_per_second"] == pytest.approx(n * 4 / 5)
    flops = flops_per_cell_epoch(10, {"dims": [4, 2]}, 3.0)
    assert row["fraction_of_matmul_rate"] == pytest.approx(n * 4 / 5 * flops / 1e6)
    assert row["batch_size"] == 20 and row["edges_in_batches"] == 0.8


def test_scalability_figure_draws_one_line_per_method_on_log_axes():
    from scdsec.plotting import scalability_figure

    rows = [
        {"cells": c, "method": m, "step": "total", "seconds": c / f, "max_rss_mb": c / f / 10}
        for m, f in (("scdsec", 10), ("leiden", 100))
        for c in (1e4, 2e4, 5e4)
    ]
    fig = scalability_figure(pd.DataFrame(rows))
    time_ax, memory_ax = fig.axes[:2]
    assert time_ax.get_xscale() == "log" and memory_ax.get_yscale() == "log"
    assert sorted(line.get_label() for line in time_ax.get_lines()) == ["leiden", "scdsec"]
