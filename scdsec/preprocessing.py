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

from ._checks import check_batch_key
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


EmptyDroplets = Literal["auto", "remove", "keep"]

#: Columns of ``obs`` that hold a file's own cell calls, each barcode's probability of holding
#: a cell, the first found used: CellBender's ``droplet_latents/cell_probability``, carried by
#: the 10x HDF5 reader and named so by CellBender's ``anndata_from_h5`` (v0.3), and the name
#: that v0.2 gave it.
CELL_PROBABILITY_COLUMNS = ("cell_probability", "latent_cell_probability")
#: Barcodes whose cell probability exceeds this are cells: CellBender's own cut
#: (``CELL_PROB_CUTOFF``), the one its ``out_filtered.h5`` is made with.
CELL_PROBABILITY_CUTOFF = 0.5
#: The cells (the components of the mixture on log10 totals above the low population) stand
#: apart from it where two neighbouring components have an Ashman's D (the distance of the
#: two means in units of their pooled spread, ``√2 |μ₁ − μ₂| / √(σ₁² + σ₂²)``) of at least
#: this; D > 2 is the usual mark of a clean separation. Cell matrices (the project's eight
#: real datasets, the filtered Cell Ranger and CellBender files of cases 07–08) gave at most
#: 2.5; raw ones with empty droplets 6–7 (cases 07–08) and 4–12 (simulated).
EMPTY_DROPLETS_MIN_D = 3.0
#: … and the cells' mean total at least this many decades (10×) above the low population's,
#: so that a group of doublets or of deep cells is never taken for the cells among empties.
EMPTY_DROPLETS_MIN_DECADES = 1.0
#: The low population is a majority of the barcodes ("mostly empty droplets") from this
#: fraction; from ``EMPTY_DROPLETS_MIN_FRACTION`` up to it, the matrix is ambiguous.
EMPTY_DROPLETS_MAJORITY = 0.5
#: A low population under this fraction of the barcodes is a few shallow cells, not empties.
EMPTY_DROPLETS_MIN_FRACTION = 0.1
#: Fewer barcodes with counts than this are too few to tell two populations apart.
EMPTY_DROPLETS_MIN_BARCODES = 50
#: The most components of the mixture fitted to the log10 totals (chosen by BIC) …
EMPTY_DROPLETS_MAX_COMPONENTS = 4
#: … fitted to a seeded sample of at most this many barcodes.
EMPTY_DROPLETS_MAX_FIT = 50_000
#: Under ``"auto"`` a low population is empty droplets only when its median total is at most
#: this: DropletUtils' ``emptyDrops`` assumes every barcode at or below 100 UMIs is empty
#: (its ``lower``). Above it, the low population is shallow cells (a filtered matrix with a
#: low-RNA type, a plate of cells beside control wells) and nothing is removed.
EMPTY_DROPLETS_MAX_MEDIAN = 100
#: A raw matrix: most barcodes hold fewer counts than this (no filtered matrix has such
#: cells). When no population of cells stands apart in one, the run stops under ``"auto"``.
EMPTY_DROPLETS_TINY = 10


def qc_filter(
    adata: ad.AnnData,
    *,
    min_cells_fraction: float = 0.01,
    empty_droplets: EmptyDroplets = "auto",
    min_counts: int = 0,
    min_genes: int = 0,
    max_counts: float | None = None,
    max_mito_fraction: float | None = None,
) -> ad.AnnData:
    """Filter genes and cells of a raw-count AnnData.

    Empty droplets go first (:func:`call_cells`), then the other cell filters (on all genes,
    as a biologist would state them), then the paper's gene filter, then cells left with no
    counts are dropped. Each filter logs the cells before and after it.

    Parameters
    ----------
    adata
        Raw counts, cells (or barcodes) × genes.
    min_cells_fraction
        Keep genes detected (count > 0) in at least this fraction of the cells.
    empty_droplets
        ``"auto"``: remove empty droplets when the file says which barcodes are cells
        (``obs['cell_probability']``, e.g. CellBender's ``out.h5``; see
        :data:`CELL_PROBABILITY_COLUMNS`) or when most barcodes form
        a population of low total counts well apart from the cells (a raw Cell Ranger
        matrix); stop when a population apart from the cells is not a majority (ambiguous).
        ``"remove"``: remove that population also when it is a minority. ``"keep"``: every
        barcode is a cell (a filtered matrix). See :func:`call_cells`.
    min_counts
        Keep cells with a total count of at least this (0 = off).
    min_genes
        Keep cells with at least this many detected genes (0 = off).
    max_counts
        Keep cells whose total count is at most this (``None`` = off).
    max_mito_fraction
        Keep cells whose fraction of counts in ``MT-`` genes is at most this
        (``None`` = off). Ignored, with a warning, when no gene name starts with ``MT-``.

    Returns
    -------
    A filtered copy with ``obs['scdsec_total_counts']``, ``obs['scdsec_n_genes_by_counts']``
    and ``uns['scdsec_qc']``: the settings, ``cells_in``/``genes_in``, for each cell filter
    that ran ``cells_removed_<filter>`` and ``cells_after_<filter>`` (cells left after it),
    ``empty_droplets`` (what :func:`call_cells` found: rule, threshold, counts),
    ``genes_removed_*``, ``cells_removed_empty`` and ``cells_out``/``genes_out``.

    Raises
    ------
    InputError
        Nothing left after the filters, or empty droplets that cannot be told from cells
        under ``empty_droplets="auto"`` (the message says to give the filtered matrix).
    """
    if empty_droplets not in ("auto", "remove", "keep"):
        raise InputError(
            f"qc.empty_droplets = {empty_droplets!r}; expected 'auto', 'remove' or 'keep'"
        )
    x = _as_csr(adata.X)
    n_cells0, n_genes0 = x.shape
    report: dict = {
        "settings": {
            "min_cells_fraction": min_cells_fraction,
            "empty_droplets": empty_droplets,
            "min_counts": min_counts,
            "min_genes": min_genes,
            "max_counts": max_counts,
            "max_mito_fraction": max_mito_fraction,
        },
        "cells_in": int(n_cells0),
        "genes_in": int(n_genes0),
    }
    logger.info("QC: %d cells × %d genes in", n_cells0, n_genes0)
    keep_cells = np.ones(n_cells0, dtype=bool)
    totals = np.asarray(x.sum(axis=1)).ravel()

    def apply(name: str, ok: np.ndarray, rule: str) -> None:
        nonlocal keep_cells
        before = int(keep_cells.sum())
        keep_cells &= ok
        after = int(keep_cells.sum())
        report[f"cells_removed_{name}"] = before - after
        report[f"cells_after_{name}"] = after
        logger.info("QC: %s: %d → %d cells (%d removed)", rule, before, after, before - after)

    column = next((c for c in CELL_PROBABILITY_COLUMNS if c in adata.obs), None)
    probability = adata.obs[column] if column else None
    calls = call_cells(totals, probability, mode=empty_droplets, column=column or "")
    report["empty_droplets"] = {k: v for k, v in calls.items() if k != "keep"}
    apply("empty_droplets", calls["keep"], f"empty droplets [{calls['rule']}]")
    if min_counts:
        apply("min_counts", totals >= min_counts, f"qc.min_counts = {min_counts}")
    if min_genes:
        apply("min_genes", np.diff(x.indptr) >= min_genes, f"qc.min_genes = {min_genes}")
    if max_counts is not None:
        apply("max_counts", totals <= max_counts, f"qc.max_counts = {max_counts}")
    if max_mito_fraction is not None:
        mito = mito_genes(adata.var_names)
        if mito.any():
            frac = np.asarray(x[:, mito].sum(axis=1)).ravel() / np.maximum(totals, 1)
            ok = frac <= max_mito_fraction
            apply("max_mito_fraction", ok, f"qc.max_mito_fraction = {max_mito_fraction}")
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
    if report["cells_removed_empty"]:
        logger.info(
            "QC: cells without counts in the genes kept: %d removed", report["cells_removed_empty"]
        )
    logger.info("QC: %d → %d cells, %d → %d genes", n_cells0, x.shape[0], n_genes0, x.shape[1])
    return out


def call_cells(
    totals: np.ndarray,
    cell_probability: pd.Series | np.ndarray | None = None,
    *,
    mode: EmptyDroplets = "auto",
    column: str = "cell_probability",
) -> dict:
    """Which barcodes hold cells: the file's own cell calls, else two populations of counts.

    1. **The file's calls.** When ``cell_probability`` is given (``obs['cell_probability']``
       or ``obs['latent_cell_probability']``, :data:`CELL_PROBABILITY_COLUMNS`: CellBender's
       posterior probability that a droplet holds a cell), the barcodes whose
       probability exceeds :data:`CELL_PROBABILITY_CUTOFF` (0.5, CellBender's own cut for its
       filtered output) are cells; a missing probability (a barcode CellBender did not
       analyse, below its UMI cut) is not a cell.
    2. **Otherwise, the counts.** Each barcode's total count is what Cell Ranger and
       DropletUtils call cells by: in a raw matrix most barcodes are empty droplets holding a
       few ambient molecules, far below the cells, and the barcode-rank curve (total against
       rank, log–log) falls off a cliff between the two (Lun et al. 2019, *Genome Biology*
       20:63, ``DropletUtils::barcodeRanks``; 10x Genomics, Cell Ranger's cell calling). Here
       the populations are found by Gaussian mixtures on the log10 totals of the barcodes with
       counts (scikit-learn, seeded; 1 to 4 components, the lowest BIC kept; see
       :func:`_low_population`): the cells are the components above the widest gap between
       two neighbouring components where Ashman's D is at least :data:`EMPTY_DROPLETS_MIN_D`
       and the means lie at least :data:`EMPTY_DROPLETS_MIN_DECADES` decade apart; under
       ``"auto"`` the barcodes below are empty droplets only when their median total is at
       most :data:`EMPTY_DROPLETS_MAX_MEDIAN` (DropletUtils' bound), else shallow cells; the
       cut (the bottom of the cliff) is the total at which a barcode becomes likelier a cell
       than not. The barcodes under it must be at least :data:`EMPTY_DROPLETS_MIN_FRACTION`
       of all (fewer are a few shallow cells, left to ``min_counts``/``min_genes``), and
       fewer than
       :data:`EMPTY_DROPLETS_MIN_BARCODES` barcodes with counts are too few to tell. Under
       ``"auto"`` they must be a majority (:data:`EMPTY_DROPLETS_MAJORITY`, "mostly empty
       droplets") to be removed; a minority stops with :class:`InputError`, which
       ``"remove"`` overrides, and so does a matrix whose barcodes mostly hold fewer than
       :data:`EMPTY_DROPLETS_TINY` counts (a raw matrix) without a population of cells
       apart. A filtered matrix (one population) is
       left whole. Barcodes without counts are removed with the empties.

    Parameters
    ----------
    totals
        Total count of each barcode, shape ``(n_barcodes,)``.
    cell_probability
        Each barcode's probability of holding a cell, same length, or ``None``.
    mode
        ``"auto"``, ``"remove"`` or ``"keep"`` (every barcode is a cell; nothing is computed).
    column
        Where ``cell_probability`` comes from, for the log (an ``obs`` column).

    Returns
    -------
    ``{"keep": bool array (n_barcodes,), "rule": str (for the log), "method": "file" |
    "counts" | "none", "removed": int, "threshold": float (the cut: a probability or a total
    count; NaN when nothing was cut)}`` and, for ``"counts"``, ``"ashman_d"``,
    ``"components"``, ``"low_fraction"``, ``"low_median"`` and ``"cell_median"`` (totals).

    Raises
    ------
    InputError
        Under ``"auto"``, when a low population apart from the cells holds between
        :data:`EMPTY_DROPLETS_MIN_FRACTION` and :data:`EMPTY_DROPLETS_MAJORITY` of the
        barcodes, or when most barcodes hold fewer than :data:`EMPTY_DROPLETS_TINY` counts
        and no population of cells stands apart; the message says to give the filtered
        matrix or set ``qc.empty_droplets``.
    """
    totals = np.asarray(totals, dtype=np.float64).ravel()
    n = len(totals)
    keep_all = np.ones(n, dtype=bool)
    nothing = {"removed": 0, "threshold": float("nan")}
    if mode == "keep":
        return {"keep": keep_all, "rule": "qc.empty_droplets = keep", "method": "none", **nothing}
    if cell_probability is not None:
        p = pd.to_numeric(pd.Series(np.asarray(cell_probability)), errors="coerce").to_numpy()
        keep = p > CELL_PROBABILITY_CUTOFF  # NaN (not analysed) is not a cell
        rule = f"the file's cell calls: obs['{column}'] > {CELL_PROBABILITY_CUTOFF}"
        return {
            "keep": keep,
            "rule": rule,
            "method": "file",
            "removed": int((~keep).sum()),
            "threshold": CELL_PROBABILITY_CUTOFF,
        }
    with_counts = int((totals > 0).sum())
    if with_counts < EMPTY_DROPLETS_MIN_BARCODES:
        rule = (
            f"{with_counts} barcodes with counts are too few to tell empty droplets: none removed"
        )
        return {"keep": keep_all, "rule": rule, "method": "none", **nothing}
    found = _low_population(totals)
    if found is None:
        tiny = float((totals < EMPTY_DROPLETS_TINY).mean())
        if mode == "auto" and tiny >= EMPTY_DROPLETS_MAJORITY:
            raise InputError(
                f"{100 * tiny:.0f}% of the {n} barcodes hold fewer than {EMPTY_DROPLETS_TINY} "
                "counts, as in a raw matrix of empty droplets, but no population of cells "
                "stands apart from them; give the filtered matrix (Cell Ranger's "
                "filtered_feature_bc_matrix, CellBender's out_filtered.h5), or set "
                "qc.empty_droplets: keep (every barcode is a cell) with qc.min_counts"
            )
        rule = "one population of total counts: none removed"
        return {"keep": keep_all, "rule": rule, "method": "none", **nothing}
    cut, stats = found
    keep = totals >= cut
    low = float((~keep).mean())
    stats["low_fraction"] = low
    if mode == "auto" and stats["low_median"] > EMPTY_DROPLETS_MAX_MEDIAN:
        rule = (
            f"{int((~keep).sum())} barcodes under {cut:.0f} counts (median "
            f"{stats['low_median']:.0f}) hold more than empty droplets do (at most "
            f"{EMPTY_DROPLETS_MAX_MEDIAN}): shallow cells, none removed"
        )
        return {"keep": keep_all, "rule": rule, "method": "none", **nothing, **stats}
    if low < EMPTY_DROPLETS_MIN_FRACTION:
        rule = (
            f"{int((~keep).sum())} barcodes under {cut:.0f} counts are too few to be empty "
            "droplets: none removed"
        )
        return {"keep": keep_all, "rule": rule, "method": "none", **nothing, **stats}
    if mode == "auto" and low < EMPTY_DROPLETS_MAJORITY:
        raise InputError(
            f"{int((~keep).sum())} of {n} barcodes ({100 * low:.0f}%) form a population of "
            f"low total counts (median {stats['low_median']:.0f}, against "
            f"{stats['cell_median']:.0f} for the others): they may be empty droplets, or "
            "cells; give the filtered matrix (Cell Ranger's filtered_feature_bc_matrix, "
            "CellBender's out_filtered.h5), or set qc.empty_droplets: remove (drop the barcodes "
            f"under {cut:.0f} counts) or keep (every barcode is a cell)"
        )
    rule = (
        f"two populations of total counts (Ashman's D {stats['ashman_d']:.1f}): barcodes under "
        f"{cut:.0f} counts are empty droplets"
    )
    return {
        "keep": keep,
        "rule": rule,
        "method": "counts",
        "removed": int((~keep).sum()),
        "threshold": float(cut),
        **stats,
    }


def _low_population(totals: np.ndarray) -> tuple[float, dict] | None:
    """The cut between the cells and the barcodes of lower totals, or ``None``.

    Gaussian mixtures of 1 to :data:`EMPTY_DROPLETS_MAX_COMPONENTS` components are fitted to
    the log10 totals of the barcodes with at least :data:`EMPTY_DROPLETS_TINY` counts (fewer
    are never cells; a seeded sample of at most
    :data:`EMPTY_DROPLETS_MAX_FIT` of them) and the one of lowest BIC is kept: empty droplets
    are not one Gaussian (a spike at 1–2 molecules and a tail of ambient ones), and neither
    are cells of types of different depth, so each may take several components. ``None`` when
    one component is kept, or no two neighbouring components stand apart (see
    :func:`call_cells`). Otherwise the cut at the widest gap that does: the smallest whole
    total between the two means at which a barcode is likelier in the components above it
    than in those below, and the mixture's figures.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    # Barcodes under EMPTY_DROPLETS_TINY counts are never cells: left out of the fit, so that
    # the hundreds of thousands of them in a raw matrix do not drown the cells.
    logs = np.log10(totals[totals >= EMPTY_DROPLETS_TINY])
    if len(logs) < EMPTY_DROPLETS_MIN_BARCODES or np.ptp(logs) == 0:
        return None
    rng = np.random.default_rng(0)
    sample = (
        logs if len(logs) <= EMPTY_DROPLETS_MAX_FIT else rng.choice(logs, EMPTY_DROPLETS_MAX_FIT)
    )
    sample = sample.reshape(-1, 1)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(1, EMPTY_DROPLETS_MAX_COMPONENTS + 1):
            gm = GaussianMixture(k, random_state=0).fit(sample)
            bic = gm.bic(sample)
            if best is None or bic < best[0]:
                best = (bic, gm)
    gm = best[1]
    if gm.n_components == 1:
        return None
    mean = gm.means_.ravel()
    sd = np.sqrt(gm.covariances_.ravel())
    order = np.argsort(mean)
    # The cells need not be one Gaussian (types of different depth): every gap between two
    # neighbouring components is a candidate, the widest one that stands apart (Ashman's D,
    # decades) separates the low population from the cells above it.
    best_gap = None
    for i in range(len(order) - 1):
        low, high = order[i], order[i + 1]
        d = float(np.sqrt(2) * (mean[high] - mean[low]) / np.hypot(sd[low], sd[high]))
        apart = d >= EMPTY_DROPLETS_MIN_D and mean[high] - mean[low] >= EMPTY_DROPLETS_MIN_DECADES
        if apart and (best_gap is None or d > best_gap[0]):
            best_gap = (d, i)
    if best_gap is None:
        return None
    d, i = best_gap
    low, high = order[i], order[i + 1]
    above = order[i + 1 :]
    grid = np.linspace(mean[low], mean[high], 1001)
    upper = gm.predict_proba(grid.reshape(-1, 1))[:, above].sum(axis=1) >= 0.5
    cut = float(np.ceil(10 ** grid[int(np.argmax(upper))]))  # totals are whole numbers
    stats = {
        "ashman_d": d,
        "components": int(gm.n_components),
        "low_median": float(np.median(totals[totals < cut])),
        "cell_median": float(np.median(totals[totals >= cut])),
    }
    return cut, stats


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
    batch_key: str | None = None,
    hvg_per_batch: bool = False,
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
    batch_key
        A column of ``obs`` naming each cell's batch (sample, donor, plate, platform;
        checked by :func:`scdsec._checks.check_batch_key`), or ``None``. With
        ``hvg_per_batch`` true the highly variable genes are chosen as scanpy's
        ``highly_variable_genes(batch_key=...)`` chooses them: each batch's genes with counts
        are ranked within the batch, and the genes are ordered by the number of batches in
        which they are among the top ``t`` (``seurat``, ``cell_ranger``; ties by their mean
        normalised dispersion) or by their median rank across batches (``seurat_v3``; ties
        by that number), so that a gene variable within batches wins over one that only
        differs between them. ``cell_ranger`` on a batch whose percentile bins coincide
        merges them, as without batches (:func:`_cell_ranger_hvg`). The size factors,
        the log and the scaling stay pooled over all cells.
    hvg_per_batch
        Rank the genes per batch (above); ``False`` (default) ranks them on all cells pooled,
        as without a batch key. Acts only with ``batch_key``. Default ``False``: chosen in
        every leave-one-dataset-out fold of the four datasets with batches, seeds 0–4
        (docs/choosing-defaults.md, step 6): per batch lost 0.119 NMI on simulated batches
        of equal composition and 0.022 on batches of different composition, and gained
        0.011 on the CellBench platforms.

    Returns
    -------
    An AnnData of the t HVGs (columns in the original gene order) with
    ``X`` the scaled network input (dense float32), ``layers['counts']`` the raw counts
    (ZINB target), ``layers['log1p']`` the log-normalised values,
    ``obs['scdsec_size_factor']`` (from all kept genes, median 1),
    ``var['scdsec_mean']``/``var['scdsec_std']``
    (the scaling), and ``uns['scdsec_preprocess']`` with everything needed to prepare new
    cells the same way (with a batch key also ``batch_key`` and ``hvg_per_batch``; without
    one these keys are absent).

    Raises
    ------
    InputError
        No gene has counts, or a cell has none (it has no size factor): the message gives
        the counts. A batch key whose column is missing, has missing values or one value
        (:func:`scdsec._checks.check_batch_key`); a batch too small for the per-batch ranking
        (fewer than :data:`HVG_MIN_BATCH_CELLS` cells, or one the flavor cannot rank): the
        message names the batch and its cell count.
    """
    batches = check_batch_key(adata.obs, batch_key) if batch_key is not None else None
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
        hvg[genes] = _highly_variable(
            data[:, genes],
            adata.var_names[genes],
            t,
            flavor,
            batches=batches if hvg_per_batch else None,
            batch_key=batch_key,
        )
    logger.info(
        "Normalise: %d highly variable genes of %d with counts (flavor %s%s)",
        hvg.sum(),
        n_candidates,
        flavor,
        f", ranked in each of the {len(batches.categories)} batches of obs['{batch_key}']"
        if batches is not None and hvg_per_batch
        else "",
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
    if batch_key is not None:
        out.uns["scdsec_preprocess"].update(batch_key=batch_key, hvg_per_batch=bool(hvg_per_batch))
    return out


#: The fewest cells a batch needs for the per-batch ranking of highly variable genes: a gene's
#: variance (the numerator of every flavor's dispersion) needs two cells.
HVG_MIN_BATCH_CELLS = 2


def _highly_variable(
    x: sp.csr_matrix,
    var_names: pd.Index,
    t: int,
    flavor: HVGFlavor,
    *,
    batches: pd.Categorical | None = None,
    batch_key: str | None = None,
) -> np.ndarray:
    """scanpy's ``highly_variable_genes`` mask of ``x`` (genes with counts only), top ``t``.

    With ``batches`` (each cell's batch, from :func:`scdsec._checks.check_batch_key`) scanpy
    ranks the genes in each batch and combines the ranks (its ``batch_key``); ``batch_key``
    names the column in messages.

    Raises
    ------
    InputError
        When the flavor cannot rank these genes (too few, or too few that vary): one line
        naming ``normalize.flavor`` and ``normalize.n_top_genes`` and the counts. With
        batches, when a batch cannot be ranked (:func:`_check_batches_rankable`): the message
        names the batch and its cells.
    """
    import scanpy as sc

    n_cells, n_genes = x.shape
    if batches is not None:
        _check_batches_rankable(x, batches, flavor, t, batch_key)
    elif flavor == "seurat_v3":
        # scanpy fits a loess curve to the genes whose counts vary; skmisc's loess ends the
        # process (segmentation fault) on fewer than 4 of them, so refuse before calling it.
        x64 = x.astype(np.float64)
        mean = np.asarray(x64.mean(axis=0)).ravel()
        varying = int((np.asarray(x64.power(2).mean(axis=0)).ravel() - mean**2 > 0).sum())
        if varying < SEURAT_V3_MIN_VARYING_GENES:
            reason = f"its loess fit needs {SEURAT_V3_MIN_VARYING_GENES} genes whose counts vary"
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, f"{reason}; {varying} do"))
    obs = None
    if batches is not None:
        obs = pd.DataFrame({"batch": batches}, index=pd.RangeIndex(n_cells).astype(str))
    probe = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=var_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sc.pp.highly_variable_genes(
                probe,
                n_top_genes=t,
                flavor=flavor,
                batch_key="batch" if batches is not None else None,
            )
        except ValueError as err:
            if flavor == "cell_ranger" and "Bin edges must be unique" in str(err):
                logger.info(
                    "Normalise: more than 5%% of the %d genes%s share a mean; cell_ranger's "
                    "percentile bins that coincide are merged",
                    n_genes,
                    "" if batches is None else " of a batch",
                )
                return _cell_ranger_hvg(x, t, batches)
            if batches is not None:
                _raise_for_failing_batch(x, var_names, batches, flavor, t, batch_key)
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, _first_line(err))) from None
        except IndexError as err:  # no gene with a dispersion (all constant)
            if batches is not None:
                _raise_for_failing_batch(x, var_names, batches, flavor, t, batch_key)
            raise InputError(_cannot_rank(flavor, n_genes, n_cells, t, _first_line(err))) from None
    return np.asarray(probe.var["highly_variable"])


def _varying_genes(x: sp.csr_matrix) -> int:
    """How many columns of ``x`` take more than one value."""
    x64 = x.astype(np.float64)
    mean = np.asarray(x64.mean(axis=0)).ravel()
    return int((np.asarray(x64.power(2).mean(axis=0)).ravel() - mean**2 > 0).sum())


def _check_batches_rankable(
    x: sp.csr_matrix, batches: pd.Categorical, flavor: HVGFlavor, t: int, batch_key: str | None
) -> None:
    """Refuse batches the per-batch ranking cannot use, before scanpy is called.

    Every batch needs :data:`HVG_MIN_BATCH_CELLS` cells; under ``seurat_v3`` also
    :data:`SEURAT_V3_MIN_VARYING_GENES` genes whose counts vary within it (its loess fit,
    run per batch, ends the process on fewer).
    """
    codes = np.asarray(batches.codes)
    sizes = np.bincount(codes, minlength=len(batches.categories))
    for code in np.argsort(sizes, kind="stable"):
        batch, size = batches.categories[code], int(sizes[code])
        if size < HVG_MIN_BATCH_CELLS:
            raise InputError(
                _batch_too_small(
                    batch, size, flavor, t, batch_key, f"needs {HVG_MIN_BATCH_CELLS} cells"
                )
            )
        if flavor == "seurat_v3":
            varying = _varying_genes(x[codes == code])
            if varying < SEURAT_V3_MIN_VARYING_GENES:
                reason = (
                    f"its loess fit needs {SEURAT_V3_MIN_VARYING_GENES} genes whose counts "
                    f"vary in the batch; {varying} do"
                )
                raise InputError(_batch_too_small(batch, size, flavor, t, batch_key, reason))


def _raise_for_failing_batch(
    x: sp.csr_matrix,
    var_names: pd.Index,
    batches: pd.Categorical,
    flavor: HVGFlavor,
    t: int,
    batch_key: str | None,
) -> None:
    """After scanpy's per-batch ranking failed: rank each batch alone, smallest first, and
    raise :class:`InputError` naming the first that fails (seurat_v3's loess is singular on
    a small batch, whose few cells give the genes few distinct means)."""
    import scanpy as sc

    codes = np.asarray(batches.codes)
    sizes = np.bincount(codes, minlength=len(batches.categories))
    for code in np.argsort(sizes, kind="stable"):
        cells = codes == code
        genes = np.asarray((x[cells] != 0).sum(axis=0)).ravel() > 0
        probe = ad.AnnData(X=x[cells][:, genes], var=pd.DataFrame(index=var_names[genes]))
        try:
            sc.pp.highly_variable_genes(probe, n_top_genes=min(t, int(genes.sum())), flavor=flavor)
        except (ValueError, IndexError) as err:
            if flavor == "cell_ranger" and "Bin edges must be unique" in str(err):
                continue
            batch, size = batches.categories[code], int(sizes[code])
            reason = f"scanpy: {_first_line(err)}"
            raise InputError(_batch_too_small(batch, size, flavor, t, batch_key, reason)) from None


def _batch_too_small(
    batch: str, size: int, flavor: str, t: int, batch_key: str | None, reason: str
) -> str:
    cells = "cell" if size == 1 else "cells"
    return (
        f"batch {batch!r} of obs[{batch_key!r}] has {size} {cells}: too few for "
        f"normalize.flavor = {flavor} to rank normalize.n_top_genes = {t} highly variable "
        f"genes within it ({reason}); remove or merge that batch, or set "
        "normalize.hvg_per_batch: false (rank the genes on all cells pooled)"
    )


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


def _cell_ranger_hvg(
    lognorm: sp.csr_matrix, t: int, batches: pd.Categorical | None = None
) -> np.ndarray:
    """The top ``t`` genes by scanpy's ``cell_ranger`` normalised dispersion, coinciding bins
    merged.

    As scanpy: each gene's mean and dispersion (variance / mean) on the log-normalised data,
    genes binned by their mean at the 10th, 15th, … 100th percentiles, and the dispersion
    normalised in its bin by the median and the MAD. When more than 5% of the genes share a
    mean, two percentile edges coincide and scanpy stops; here such edges make one bin. The
    ``t`` highest normalised dispersions are kept (genes whose bin has no spread, which get
    none, last; ties in gene order), so exactly ``t`` genes.

    With ``batches`` (each cell's batch) the batches are combined as scanpy's ``batch_key``
    combines them: in each batch, its genes with counts are ranked as above and its top
    ``t`` marked (a gene without counts in a batch is not marked and counts 0 towards the
    mean); the genes are ordered by the number of batches that mark them, ties by their
    normalised dispersion averaged over the batches (where it is defined; none last), and
    the first ``t`` kept.
    """
    if batches is None:
        score = _cell_ranger_dispersion_norm(lognorm)
        score = np.where(np.isfinite(score), score, -np.inf)
        mask = np.zeros(lognorm.shape[1], dtype=bool)
        mask[np.argsort(-score, kind="stable")[:t]] = True
        return mask
    codes = np.asarray(batches.codes)
    n_genes = lognorm.shape[1]
    marked = np.zeros(n_genes, dtype=np.int64)
    norms = []
    for code in range(len(batches.categories)):
        x = lognorm[codes == code]
        expressed = np.asarray((x != 0).sum(axis=0)).ravel() > 0
        norm = np.zeros(n_genes)
        score = _cell_ranger_dispersion_norm(x[:, expressed])
        norm[expressed] = np.where(np.isfinite(score), score, np.nan)
        top = np.argsort(-np.where(np.isfinite(score), score, -np.inf), kind="stable")[:t]
        marked[np.flatnonzero(expressed)[top]] += 1
        norms.append(norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a gene without a dispersion anywhere
        mean_norm = np.nanmean(np.vstack(norms), axis=0)
    # np.lexsort sorts by its last key first, stably: by batches marked, then dispersion.
    order = np.lexsort((-np.nan_to_num(mean_norm, nan=-np.inf), -marked))
    mask = np.zeros(n_genes, dtype=bool)
    mask[order[:t]] = True
    return mask


def _cell_ranger_dispersion_norm(lognorm: sp.csr_matrix) -> np.ndarray:
    """Each gene's ``cell_ranger`` normalised dispersion, coinciding bins merged (see
    :func:`_cell_ranger_hvg`); not finite where the gene's bin has no spread."""
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
    return norm
