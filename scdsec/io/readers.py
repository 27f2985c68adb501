"""Read raw single-cell count matrices from the common file layouts into AnnData.

Every reader returns cells × genes raw counts as a float32 CSR matrix, with unique string
names, and raises :class:`scdsec.InputError` (one line, naming the file and the problem) on
input it cannot use. Formats are recognised from the file's content, never from its name
(:mod:`._detect`). The readers live by format family: :mod:`._anndata` (h5ad, zarr, loom),
:mod:`._tenx` (10x HDF5 and Matrix Market), :mod:`._tables` (CSV/TSV), :mod:`._xy_h5` (X/Y
and Cell BLAST HDF5); :mod:`._common` holds what they share.
"""

from __future__ import annotations

import logging
import tarfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd
from anndata.utils import make_index_unique

from .._errors import InputError
from ._anndata import _ANNDATA_FORMATS, _read_anndata
from ._common import COUNTS, _list_keys, _one_line, _Parsed, _whole_counts
from ._detect import detect_format
from ._tables import _read_table
from ._tenx import _read_10x_h5, _read_10x_mtx
from ._xy_h5 import _read_cellblast_h5, _read_xy_h5

__all__ = ["FORMATS", "detect_format", "read_counts"]

_log = logging.getLogger(__name__)

#: The obs column that keeps the cells' names as the file gives them when duplicated names
#: are made unique (``-1``, ``-2`` … appended), so that every cell maps back to its input row.
ORIGINAL_OBS_NAME = "original_obs_name"

#: Values of ``format`` that :func:`read_counts` accepts besides ``"auto"``.
FORMATS = ("h5ad", "zarr", "loom", "10x_h5", "10x_mtx", "csv", "tsv", "xy_h5", "cellblast_h5")


def read_counts(
    path: str | Path,
    *,
    format: str = "auto",
    labels: str | None = None,
    metadata_columns: Sequence[str] = (),
    cells_as: str = "auto",
    layer: str | None = None,
    genome: str | None = None,
    counts: str = "integer",
    sample: str | None = None,
) -> ad.AnnData:
    """Read a raw count matrix as cells × genes AnnData.

    Parameters
    ----------
    path
        A file, a folder or an archive (see :func:`detect_format` for the layouts).
    format
        ``"auto"`` (detect from the content) or one of :data:`FORMATS`.
    labels
        Where the true cell types are: an ``obs`` column (h5ad, Cell BLAST), a CSV/TSV
        column (or row, when cells are columns), or a top-level dataset such as ``Y``
        (X/Y HDF5). Copied to ``obs["scdsec_true_label"]`` (the column itself is left as it
        is) as a categorical of strings (integer codes become their decimal strings). 10x
        files carry no labels.
    metadata_columns
        Non-count columns of a CSV/TSV table that describe cells; they go to ``obs``
        instead of ``X``. For other formats, names that must exist among the cell
        annotations (which are all kept in ``obs``).
    cells_as
        CSV/TSV only: ``"rows"``, ``"columns"`` or ``"auto"``. The ``"auto"`` rule decides
        only from what the table says; the first rule that decides wins:

        1. ``labels`` or a ``metadata_columns`` name is in the header ⇒ cells are rows;
           in the first column ⇒ cells are columns.
        2. The corner cell (above the row names) names the rows: ``cell``, ``cell_id``,
           ``barcode`` … ⇒ cells are rows; ``gene``, ``gene_id``, ``symbol``, ``feature`` …
           ⇒ cells are columns. The header holds well-known gene annotation columns
           (featureCounts' ``Chr Start End Strand Length``, ``seqnames``, ``width``,
           ``gene_biotype``, ``description`` …) ⇒ cells are columns; those columns go to
           ``var`` (logged), never into the counts.
        3. Names that look like cell barcodes (a run of ≥ 10 of A/C/G/T) fill at least half
           of the header, or the first column looks like genes (Ensembl ids ``ENS…G000…`` in
           at least half, or at least three mitochondrial / ribosomal-protein symbols such as
           ``MT-CO1``, ``Rpl13``) ⇒ cells are columns; the converse ⇒ cells are rows.

        When none decides, :class:`InputError` asks for ``cells_as`` (the shape is never
        used to guess). The orientation, its reason and the resulting numbers of cells and
        genes are logged. Leading ``#`` lines (featureCounts' command line) are skipped.
        The first column holds row names when the corner cell is empty (or absent, as R
        writes it), when its values are not numbers, or when the corner names ids
        (``GeneID``, ``gene_id``, ``cell_id``, ``ID``, ``Name`` …) whatever its values.
    layer
        AnnData and loom files (``.h5ad``, ``.zarr``, ``.loom``) only: take the counts from
        ``layers[layer]`` instead of ``X`` (e.g. ``"counts"`` when ``X`` holds normalised
        values or is absent; ``"unspliced"`` in a velocyto loom).
        ``"raw"`` reads ``.raw.X`` (with ``.raw``'s genes), where other toolkits keep the
        counts beside normalised values in ``X``, unless the file has a layer named
        ``raw``; ``"raw.X"`` always reads ``.raw``.
    genome
        10x HDF5 only: the genome to keep from a file with several (required there).
    sample
        10x Matrix Market only: which sample to read from a folder or archive that holds
        several (public archives such as GEO's ``GSE…_RAW.tar`` hold one
        ``GSM…_matrix.mtx.gz`` triplet per sample; required there): the sample's prefix
        (``GSM…_donor1``, or only as much of it as names one, e.g. ``GSM…``) or, for
        unprefixed triplets, its folder; ``"all"`` reads every sample together, each cell
        named ``<barcode>-<sample>`` with its sample in ``obs["sample"]`` (the samples must
        list the same genes).
    counts
        ``"integer"`` (default): the values must be whole numbers. ``"round"``: values that
        look like ambient-RNA-corrected counts (non-integer, non-negative, not log-scaled,
        not scaled per cell, as SoupX or DecontX write them) are rounded to the nearest whole
        number (logged with the totals before and after). Log-transformed or normalised
        values are refused either way.

    Returns
    -------
    anndata.AnnData
        ``X`` a float32 :class:`scipy.sparse.csr_matrix` of whole non-negative counts;
        unique ``obs_names``/``var_names`` (``cell_<i>``/``gene_<i>`` where the file has
        none; duplicates get ``-1``, ``-2``, … suffixes and a warning, and duplicated cell
        names are kept as given in ``obs["original_obs_name"]``); the file's cell and
        gene annotations in ``obs``/``var`` (10x: ``var["gene_ids"]``, gene symbols as
        names, only "Gene Expression" features); ``obs["scdsec_true_label"]`` if ``labels``
        is given;
        ``uns["scdsec_source"] = {"path": ..., "format": ...}``.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown layout, empty matrix, negative or non-integer
        values (the message says whether they look log-transformed, normalised, or like
        corrected counts and then names ``counts: round``; for AnnData files it names the
        layers, and ``.raw``, that hold whole numbers), no ``X`` and no ``layer``, a
        ``layer`` that is absent or given for another format, an unknown ``counts``,
        non-numeric columns not listed in ``metadata_columns``, a table whose orientation its
        content does not decide (with ``cells_as="auto"``), or a ``labels`` /
        ``metadata_columns`` key that is not in the file.
    """
    path = Path(path)
    if cells_as not in ("auto", "rows", "columns"):
        raise InputError(f"{path}: cells_as={cells_as!r}; expected 'auto', 'rows' or 'columns'")
    if counts not in COUNTS:
        raise InputError(f"{path}: counts={counts!r}; expected one of {COUNTS}")
    if isinstance(metadata_columns, str):
        metadata_columns = (metadata_columns,)
    requested = ([labels] if labels is not None else []) + list(metadata_columns)
    if format == "auto":
        fmt = detect_format(path)
    elif format in FORMATS:
        fmt = format
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
    else:
        raise InputError(f"{path}: unknown format {format!r}; expected 'auto' or one of {FORMATS}")
    if genome is not None and fmt != "10x_h5":
        raise InputError(f"{path}: genome={genome!r} applies to 10x HDF5 files; this file is {fmt}")
    if sample is not None and fmt != "10x_mtx":
        raise InputError(
            f"{path}: sample={sample!r} applies to 10x Matrix Market folders and archives "
            f"(matrix.mtx triplets); this file is {fmt}"
        )
    if layer is not None and fmt not in _ANNDATA_FORMATS:
        raise InputError(
            f"{path}: layer={layer!r} applies to AnnData and loom files (.h5ad, .zarr, .loom); "
            f"this file is {fmt}"
        )
    try:
        if fmt in ("csv", "tsv"):
            sep = "\t" if fmt == "tsv" else ","
            parsed = _read_table(path, sep, cells_as, requested, labels)
        elif fmt in _ANNDATA_FORMATS:
            parsed = _read_anndata(path, fmt, layer)
        elif fmt == "10x_h5":
            parsed = _read_10x_h5(path, genome)
        elif fmt == "10x_mtx":
            parsed = _read_10x_mtx(path, sample)
        else:
            parsed = _READERS[fmt](path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise InputError(f"{path}: cannot read as {fmt}: {_one_line(exc)}") from exc
    return _finish(path, fmt, parsed, labels, requested, counts)


_READERS = {
    "xy_h5": _read_xy_h5,
    "cellblast_h5": _read_cellblast_h5,
}


def _finish(
    path: Path,
    fmt: str,
    parsed: _Parsed,
    labels: str | None,
    requested: list[str],
    counts: str = "integer",
) -> ad.AnnData:
    """Check the matrix, name cells and genes, attach labels and provenance."""
    X = parsed.X
    n_cells, n_genes = X.shape
    if n_cells == 0 or n_genes == 0:
        raise InputError(f"{path}: empty count matrix ({n_cells} cells × {n_genes} genes)")
    if X.nnz == 0:
        raise InputError(f"{path}: the count matrix ({n_cells} × {n_genes}) is all zero")
    X = _whole_counts(X, path, counts, parsed.where, parsed.hint)
    # where the cells' names as given go if they must be made unique (a user's column stays)
    column = _free_column(parsed.obs, ORIGINAL_OBS_NAME)
    obs_names = _unique_names(parsed.obs_names, n_cells, "cell", path, kept_in=column)
    var_names = _unique_names(parsed.var_names, n_genes, "gene", path)
    obs = pd.DataFrame(index=obs_names) if parsed.obs is None else parsed.obs.set_axis(obs_names)
    if parsed.obs_names is not None and not pd.Index(map(str, parsed.obs_names)).is_unique:
        obs[column] = [str(name) for name in parsed.obs_names]
    var = pd.DataFrame(index=var_names) if parsed.var is None else parsed.var.set_axis(var_names)
    for key in requested:
        if key not in obs.columns and key in (parsed.misfits or {}):
            what = "labels" if key == labels else "metadata column"
            raise InputError(
                f"{path}: {what} {key!r} hold {parsed.misfits[key]} values but the matrix has "
                f"{n_cells} cells"
            )
        if key not in obs.columns:
            available = obs.columns if parsed.available is None else parsed.available
            what = "label key" if key == labels else "metadata column"
            raise InputError(
                f"{path}: {what} {key!r} not found; available keys: {_list_keys(available)}"
            )
    if labels is not None:
        obs["scdsec_true_label"] = _as_labels(obs[labels])
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["scdsec_source"] = {"path": str(path), "format": fmt}
    _log.info("%s: %d cells × %d genes (%s)", path, n_cells, n_genes, fmt)
    return adata


def _free_column(frame: pd.DataFrame | None, name: str) -> str:
    """``name``, or ``name_1``, ``name_2`` … when ``frame`` already has a column of that name."""
    taken = set() if frame is None else set(map(str, frame.columns))
    i, candidate = 0, name
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    return candidate


def _unique_names(
    names: list[str] | None, n: int, what: str, path: Path, kept_in: str | None = None
) -> pd.Index:
    """``names`` as strings, duplicates made unique with a warning (naming ``kept_in``, the
    obs column that keeps the names as given); ``<what>_<i>`` without names."""
    if names is None:
        return pd.Index([f"{what}_{i}" for i in range(n)])
    if len(names) != n:
        raise InputError(f"{path}: {len(names)} {what} names for {n} {what}s in the matrix")
    index = pd.Index([str(name) for name in names])
    n_dup = int(index.duplicated().sum())
    if n_dup:
        warnings.warn(
            f"{path}: {n_dup} duplicated {what} names made unique by appending '-1', '-2', ..."
            + (f" (the names as given are kept in obs[{kept_in!r}])" if kept_in else ""),
            UserWarning,
            stacklevel=4,
        )
        index = make_index_unique(index)
    return index


def _as_labels(values: pd.Series) -> pd.Categorical:
    """Labels as a categorical of strings; numeric codes keep their numeric order."""
    s = values.reset_index(drop=True)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_float_dtype(s) and bool((s.dropna() % 1 == 0).all()):
        s = s.astype("Int64")
    present = s.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        order = [str(v) for v in sorted(present.unique())]
    else:
        order = sorted(present.astype(str).unique())
    strings = [None if pd.isna(v) else str(v) for v in s]
    return pd.Categorical(strings, categories=order)
