"""Cell data processor (METHOD.md §1): gene/cell filters, size factors, log, HVGs, scaling.

Functions take an AnnData of raw counts and return a new AnnData; the input is never
modified. What each step removed or chose is recorded in ``adata.uns``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger("scdsec")

HVGFlavor = Literal["seurat", "seurat_v3", "cell_ranger"]


def _as_csr(x) -> sp.csr_matrix:
    return (
        sp.csr_matrix(x, dtype=np.float32) if not sp.issparse(x) else x.tocsr().astype(np.float32)
    )


def mito_genes(var_names: pd.Index) -> np.ndarray:
    """Boolean mask of mitochondrial genes, by the usual ``MT-``/``mt-`` symbol prefix."""
    return np.asarray(var_names.str.upper().str.startswith("MT-"))


def qc_filter(
    adata: ad.AnnData,
    *,
    min_cells_fraction: float = 0.01,
    min_genes: int = 0,
    max_counts: float | None = None,
    max_mito_fraction: float | None = None,
) -> ad.AnnData:
    """Filter genes and cells of a raw-count AnnData.

    Cell filters run first (on all genes, as a biologist would state them), then the
    paper's gene filter, then cells left with no counts are dropped.

    Parameters
    ----------
    adata
        Raw counts, cells × genes.
    min_cells_fraction
        Keep genes detected (count > 0) in at least this fraction of the cells.
    min_genes
        Keep cells with at least this many detected genes (0 = off).
    max_counts
        Keep cells whose total count is at most this (``None`` = off).
    max_mito_fraction
        Keep cells whose fraction of counts in ``MT-`` genes is at most this
        (``None`` = off). Ignored, with a warning, when no gene name starts with ``MT-``.

    Returns
    -------
    A filtered copy with ``obs['n_counts']``, ``obs['n_genes']`` and
    ``uns['scdsec_qc']`` (the settings and how many cells/genes each filter removed).
    """
    x = _as_csr(adata.X)
    n_cells0, n_genes0 = x.shape
    report: dict = {
        "settings": {
            "min_cells_fraction": min_cells_fraction,
            "min_genes": min_genes,
            "max_counts": max_counts,
            "max_mito_fraction": max_mito_fraction,
        },
        "cells_in": int(n_cells0),
        "genes_in": int(n_genes0),
    }
    keep_cells = np.ones(n_cells0, dtype=bool)
    totals = np.asarray(x.sum(axis=1)).ravel()
    if min_genes:
        ok = np.diff(x.indptr) >= min_genes
        report["cells_removed_min_genes"] = int((keep_cells & ~ok).sum())
        keep_cells &= ok
    if max_counts is not None:
        ok = totals <= max_counts
        report["cells_removed_max_counts"] = int((keep_cells & ~ok).sum())
        keep_cells &= ok
    if max_mito_fraction is not None:
        mito = mito_genes(adata.var_names)
        if mito.any():
            frac = np.asarray(x[:, mito].sum(axis=1)).ravel() / np.maximum(totals, 1)
            ok = frac <= max_mito_fraction
            report["cells_removed_max_mito_fraction"] = int((keep_cells & ~ok).sum())
            keep_cells &= ok
        else:
            warnings.warn(
                "max_mito_fraction is set but no gene name starts with 'MT-': filter skipped",
                stacklevel=2,
            )
            report["cells_removed_max_mito_fraction"] = "skipped: no MT- genes"
    x = x[keep_cells]

    detected = np.asarray((x > 0).sum(axis=0)).ravel()
    keep_genes = detected >= min_cells_fraction * x.shape[0]
    report["genes_removed_min_cells_fraction"] = int((~keep_genes).sum())
    x = x[:, keep_genes]

    nonempty = np.asarray(x.sum(axis=1)).ravel() > 0
    report["cells_removed_empty"] = int((~nonempty).sum())
    cell_idx = np.flatnonzero(keep_cells)[nonempty]
    x = x[nonempty]
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"QC removed every cell or gene ({x.shape[0]} × {x.shape[1]} left): {report}"
        )

    out = ad.AnnData(
        X=x,
        obs=adata.obs.iloc[cell_idx].copy(),
        var=adata.var.iloc[np.flatnonzero(keep_genes)].copy(),
        uns={k: v for k, v in adata.uns.items()},
    )
    out.obs["n_counts"] = np.asarray(x.sum(axis=1)).ravel()
    out.obs["n_genes"] = np.diff(x.indptr)
    report["cells_out"], report["genes_out"] = map(int, x.shape)
    out.uns["scdsec_qc"] = report
    logger.info("QC: %d → %d cells, %d → %d genes", n_cells0, x.shape[0], n_genes0, x.shape[1])
    return out


def size_factors(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    """``s_i = n_i / median(n)`` with ``n_i`` the cell's total count (median 1)."""
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    return totals / np.median(totals)


def normalize(
    adata: ad.AnnData,
    *,
    n_top_genes: int = 1000,
    flavor: HVGFlavor = "seurat",
    clip: float | None = 10.0,
) -> ad.AnnData:
    """Size-factor normalise, log, select HVGs and scale them into the network input.

    Parameters
    ----------
    adata
        QC'd raw counts, cells × genes.
    n_top_genes
        Number of highly variable genes t (capped at the number of genes).
    flavor
        scanpy's ``highly_variable_genes`` flavor: ``seurat`` / ``cell_ranger`` rank the
        log-normalised data, ``seurat_v3`` ranks the raw counts.
    clip
        Clip the scaled values at ``±clip`` (``None`` = no clipping).

    Returns
    -------
    An AnnData of the t HVGs (columns in the original gene order) with
    ``X`` the scaled network input (dense float32), ``layers['counts']`` the raw counts
    (ZINB target), ``layers['log1p']`` the log-normalised values,
    ``obs['size_factor']`` (from all kept genes, median 1), ``var['mean']``/``var['std']``
    (the scaling), and ``uns['scdsec_preprocess']`` with everything needed to prepare new
    cells the same way.
    """
    import scanpy as sc

    counts = _as_csr(adata.X)
    sf = size_factors(counts)
    lognorm = sp.csr_matrix(sp.diags(1.0 / sf) @ counts, dtype=np.float32)
    np.log1p(lognorm.data, out=lognorm.data)

    t = min(int(n_top_genes), counts.shape[1])
    if t < counts.shape[1]:
        probe = ad.AnnData(X=counts if flavor == "seurat_v3" else lognorm, var=adata.var[[]].copy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.pp.highly_variable_genes(probe, n_top_genes=t, flavor=flavor)
        hvg = np.asarray(probe.var["highly_variable"])
    else:
        hvg = np.ones(counts.shape[1], dtype=bool)
    logger.info(
        "Normalise: %d highly variable genes of %d (flavor %s)", hvg.sum(), hvg.size, flavor
    )

    log_hvg = lognorm[:, hvg]
    dense = log_hvg.toarray()
    mean = dense.mean(axis=0)
    std = dense.std(axis=0)
    safe_std = np.where(std > 0, std, 1.0)
    scaled = (dense - mean) / safe_std
    if clip is not None:
        np.clip(scaled, -clip, clip, out=scaled)

    out = ad.AnnData(
        X=scaled.astype(np.float32),
        obs=adata.obs.copy(),
        var=adata.var.iloc[np.flatnonzero(hvg)].copy(),
        uns={k: v for k, v in adata.uns.items()},
    )
    out.layers["counts"] = counts[:, hvg]
    out.layers["log1p"] = log_hvg
    out.obs["size_factor"] = sf
    out.var["mean"] = mean.astype(np.float64)
    out.var["std"] = safe_std.astype(np.float64)
    out.uns["scdsec_preprocess"] = {
        "n_top_genes": t,
        "flavor": flavor,
        "clip": clip if clip is not None else "none",
        "genes": list(map(str, out.var_names)),
        "mean": mean.astype(np.float64),
        "std": safe_std.astype(np.float64),
        "median_library_size": float(np.median(np.asarray(counts.sum(axis=1)).ravel())),
        "n_genes_before_hvg": int(counts.shape[1]),
    }
    return out
