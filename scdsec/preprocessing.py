"""Cell data processor (docs/method.md §1): gene/cell filters, size factors, log, HVGs, scaling.

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

from ._errors import InputError

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
    A filtered copy with ``obs['scdsec_total_counts']``, ``obs['scdsec_n_genes_by_counts']`` and
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
    has_counts = detected > 0  # a gene without counts is never kept, whatever the fraction
    keep_genes = has_counts & (detected >= min_cells_fraction * x.shape[0])
    report["genes_removed_no_counts"] = int((~has_counts).sum())
    report["genes_removed_min_cells_fraction"] = int((has_counts & ~keep_genes).sum())
    x = x[:, keep_genes]

    nonempty = np.asarray(x.sum(axis=1)).ravel() > 0
    report["cells_removed_empty"] = int((~nonempty).sum())
    cell_idx = np.flatnonzero(keep_cells)[nonempty]
    x = x[nonempty]
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(_nothing_left(report, x.shape, all_zero=not totals.any()))

    out = ad.AnnData(
        X=x,
        obs=adata.obs.iloc[cell_idx].copy(),
        var=adata.var.iloc[np.flatnonzero(keep_genes)].copy(),
        uns={k: v for k, v in adata.uns.items()},
    )
    out.obs["scdsec_total_counts"] = np.asarray(x.sum(axis=1)).ravel()
    out.obs["scdsec_n_genes_by_counts"] = np.diff(x.indptr)
    report["cells_out"], report["genes_out"] = map(int, x.shape)
    out.uns["scdsec_qc"] = report
    logger.info("QC: %d → %d cells, %d → %d genes", n_cells0, x.shape[0], n_genes0, x.shape[1])
    return out


def _nothing_left(report: dict, shape: tuple[int, int], *, all_zero: bool) -> str:
    """One line: what QC left of the cells and genes, and what removed them."""
    size = f"{report['cells_in']} cells × {report['genes_in']} genes"
    if all_zero:
        return f"QC left no cells and no genes: the counts are all zero ({size})"
    removed = [
        f"qc.{name} = {report['settings'][name]} removed {value} {key.split('_')[0]}"
        for key, value in report.items()
        if "_removed_" in key
        and isinstance(value, int)
        and value
        and (name := key.split("_removed_")[1]) in report["settings"]
    ]
    if report["genes_removed_no_counts"]:
        removed.append(
            f"{report['genes_removed_no_counts']} genes have no counts in the cells kept"
        )
    if report["cells_removed_empty"]:
        removed.append(f"{report['cells_removed_empty']} cells had no counts in the genes kept")
    return f"QC left {shape[0]} cells × {shape[1]} genes of {size}: {'; '.join(removed)}"


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
        Number of highly variable genes t, capped at the number of genes with counts (genes
        without counts cannot be variable: they never reach the selection nor the output).
    flavor
        scanpy's ``highly_variable_genes`` flavor: ``seurat`` / ``cell_ranger`` rank the
        log-normalised data, ``seurat_v3`` ranks the raw counts. When more than 5% of the
        genes share one mean (genes seen once, say), ``cell_ranger``'s percentile bins
        coincide, which scanpy refuses; they are then merged (:func:`_cell_ranger_hvg`).
    clip
        Clip the scaled values at ``±clip`` (``None`` = no clipping).

    Returns
    -------
    An AnnData of the t HVGs (columns in the original gene order) with
    ``X`` the scaled network input (dense float32), ``layers['counts']`` the raw counts
    (ZINB target), ``layers['log1p']`` the log-normalised values,
    ``obs['scdsec_size_factor']`` (from all kept genes, median 1),
    ``var['scdsec_mean']``/``var['scdsec_std']``
    (the scaling), and ``uns['scdsec_preprocess']`` with everything needed to prepare new
    cells the same way.

    Raises
    ------
    InputError
        No gene has counts, or a cell has none (it has no size factor): the message gives
        the counts.
    """
    counts = _as_csr(adata.X)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    with_counts = np.asarray(counts.sum(axis=0)).ravel() > 0
    if not with_counts.any() or not (totals > 0).all():
        raise InputError(
            f"{int(with_counts.sum())} of {counts.shape[1]} genes and "
            f"{int((totals > 0).sum())} of {counts.shape[0]} cells have counts: every cell "
            "needs counts (its size factor) and some gene must have counts (the QC step "
            "removes cells and genes without counts)"
        )
    sf = size_factors(counts)
    lognorm = sp.csr_matrix(sp.diags(1.0 / sf) @ counts, dtype=np.float32)
    np.log1p(lognorm.data, out=lognorm.data)

    n_candidates = int(with_counts.sum())
    t = min(int(n_top_genes), n_candidates)
    if t < int(n_top_genes):
        logger.info("Normalise: n_top_genes %d capped at the %d genes with counts", n_top_genes, t)
    hvg = with_counts.copy()
    if t < n_candidates:
        genes = np.flatnonzero(with_counts)
        data = counts if flavor == "seurat_v3" else lognorm
        hvg[genes] = _highly_variable(data[:, genes], adata.var_names[genes], t, flavor)
    logger.info(
        "Normalise: %d highly variable genes of %d with counts (flavor %s)",
        hvg.sum(),
        n_candidates,
        flavor,
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
    out.obs["scdsec_size_factor"] = sf
    out.var["scdsec_mean"] = mean.astype(np.float64)
    out.var["scdsec_std"] = safe_std.astype(np.float64)
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


def _highly_variable(
    x: sp.csr_matrix, var_names: pd.Index, t: int, flavor: HVGFlavor
) -> np.ndarray:
    """scanpy's ``highly_variable_genes`` mask of ``x`` (genes with counts only), top ``t``.

    Raises
    ------
    InputError
        When the flavor cannot rank these genes (too few, or too few that vary): one line
        naming ``normalize.flavor`` and ``normalize.n_top_genes`` and the counts.
    """
    import scanpy as sc

    n_cells, n_genes = x.shape
    if flavor == "seurat_v3":
        # scanpy fits a loess curve to the genes whose counts vary; skmisc's loess ends the
        # process (segmentation fault) on fewer than 4 of them, so refuse before calling it.
        x64 = x.astype(np.float64)
        mean = np.asarray(x64.mean(axis=0)).ravel()
        varying = int((np.asarray(x64.power(2).mean(axis=0)).ravel() - mean**2 > 0).sum())
        if varying < SEURAT_V3_MIN_VARYING_GENES:
            reason = f"its loess fit needs {SEURAT_V3_MIN_VARYING_GENES} genes whose counts vary"
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, f"{reason}; {varying} do"))
    probe = ad.AnnData(X=x, var=pd.DataFrame(index=var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sc.pp.highly_variable_genes(probe, n_top_genes=t, flavor=flavor)
        except ValueError as err:
            if flavor == "cell_ranger" and "Bin edges must be unique" in str(err):
                logger.info(
                    "Normalise: more than 5%% of the %d genes share a mean; cell_ranger's "
                    "percentile bins that coincide are merged",
                    n_genes,
                )
                return _cell_ranger_hvg(x, t)
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, _first_line(err))) from None
        except IndexError as err:  # no gene with a dispersion (all constant)
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, _first_line(err))) from None
    return np.asarray(probe.var["highly_variable"])


#: The fewest genes whose counts vary that ``seurat_v3`` is given (see :func:`_highly_variable`).
SEURAT_V3_MIN_VARYING_GENES = 4


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.removeprefix("b'").removesuffix("'")[:120]


def _cannot_rank(flavor: str, n_genes: int, n_cells: int, t: int, reason: str) -> str:
    return (
        f"normalize.flavor = {flavor} cannot pick normalize.n_top_genes = {t} of the {n_genes} "
        f"genes with counts in {n_cells} cells ({reason}); set normalize.n_top_genes to at "
        f"least {n_genes} to keep them all, or choose another normalize.flavor"
    )


def _cell_ranger_hvg(lognorm: sp.csr_matrix, t: int) -> np.ndarray:
    """The top ``t`` genes by scanpy's ``cell_ranger`` normalised dispersion, coinciding bins
    merged.

    As scanpy: each gene's mean and dispersion (variance / mean) on the log-normalised data,
    genes binned by their mean at the 10th, 15th, … 100th percentiles, and the dispersion
    normalised in its bin by the median and the MAD. When more than 5% of the genes share a
    mean, two percentile edges coincide and scanpy stops; here such edges make one bin. The
    ``t`` highest normalised dispersions are kept (genes whose bin has no spread, which get
    none, last; ties in gene order), so exactly ``t`` genes.
    """
    from statsmodels.robust import mad

    x = lognorm.astype(np.float64)
    n = x.shape[0]
    mean = np.asarray(x.mean(axis=0)).ravel()
    var = (np.asarray(x.power(2).mean(axis=0)).ravel() - mean**2) * n / max(n - 1, 1)
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    edges = np.r_[-np.inf, np.percentile(mean, np.arange(10, 105, 5)), np.inf]
    bins = pd.cut(mean, np.unique(edges))
    grouped = pd.Series(dispersion).groupby(bins, observed=True)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        norm = (dispersion - grouped.transform("median").to_numpy()) / grouped.transform(
            lambda d: mad(d.to_numpy())
        ).to_numpy()
    score = np.where(np.isfinite(norm), norm, -np.inf)
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[np.argsort(-score, kind="stable")[:t]] = True
    return mask
