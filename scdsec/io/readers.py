"""Read raw single-cell count matrices from the common file layouts into AnnData.

Every reader returns cells × genes raw counts as a float32 CSR matrix, with unique string
names, and raises :class:`scdsec.InputError` (one line, naming the file and the problem) on
input it cannot use. Formats are recognised from the file's content, never from its name.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import logging
import posixpath
import re
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
from anndata.utils import make_index_unique

from .._errors import InputError

__all__ = ["FORMATS", "detect_format", "read_counts"]

_log = logging.getLogger(__name__)

#: Values of ``format`` that :func:`read_counts` accepts besides ``"auto"``.
FORMATS = ("h5ad", "zarr", "loom", "10x_h5", "10x_mtx", "csv", "tsv", "xy_h5", "cellblast_h5")
# Formats that store an AnnData, whose counts may sit in a layer instead of X.
_ANNDATA_FORMATS = ("h5ad", "zarr", "loom")  # read by anndata; `layer` applies
# Loom attributes that name the cells and the genes (loompy's conventions, then anndata's).
_LOOM_CELL_NAMES = ("CellID", "obs_names", "cell_names", "Barcode")
_LOOM_GENE_NAMES = ("Gene", "var_names", "gene_names", "Accession")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_MTX_MAGIC = b"%%MatrixMarket"
_HEAD_BYTES = 1 << 16
# Dense matrices are read in blocks of about this many values (32 MiB as float64).
_BLOCK_VALUES = 1 << 22

_MATRIX_FILES = ("matrix.mtx.gz", "matrix.mtx")
_FEATURE_FILES = ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
_BARCODE_FILES = ("barcodes.tsv.gz", "barcodes.tsv")
_GENE_EXPRESSION = "Gene Expression"
# The feature types 10x Genomics' pipelines write (features.tsv column 3, features/feature_type).
# Other files put other things in column 3 (chromosomes, biotypes): only these make it types.
_FEATURE_TYPES = frozenset(
    {
        _GENE_EXPRESSION,
        "Antibody Capture",
        "Antigen Capture",
        "CRISPR Guide Capture",
        "Multiplexing Capture",
        "Peaks",
        "Custom",
    }
)

# What orients a CSV/TSV table (see read_counts): cell barcodes, Ensembl gene ids, the
# mitochondrial and ribosomal-protein gene symbols every transcriptome holds (human, mouse),
# and the word in the table's corner cell, which names what the rows are.
_BARCODE = re.compile(r"[ACGT]{10,}")
_GENE_ID = re.compile(r"ENS[A-Z]*G\d{6,}")
_HOUSEKEEPING_SYMBOL = re.compile(r"^(mt-|MT-|Mt-|RP[LS]\d|Rp[ls]\d)")
_MIN_HOUSEKEEPING_SYMBOLS = 3
_CELL_WORDS = frozenset("cell cells cellid cellname cellbarcode barcode barcodes".split())
_GENE_WORDS = frozenset(
    "gene genes geneid geneids genename genesymbol symbol feature features".split()
)


@dataclass
class _Parsed:
    """What a format reader found, before the common checks and naming."""

    X: sp.csr_matrix
    obs_names: list[str] | None = None
    var_names: list[str] | None = None
    obs: pd.DataFrame | None = None
    var: pd.DataFrame | None = None
    # Keys a ``labels``/``metadata_columns`` entry may name (default: the obs columns).
    available: list[str] | None = None
    # Lengths of annotations that could not join obs: their length is not the number of cells.
    misfits: dict[str, int] | None = None


def read_counts(
    path: str | Path,
    *,
    format: str = "auto",
    labels: str | None = None,
    metadata_columns: Sequence[str] = (),
    cells_as: str = "auto",
    layer: str | None = None,
    genome: str | None = None,
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
           ⇒ cells are columns.
        3. Names that look like cell barcodes (a run of ≥ 10 of A/C/G/T) fill at least half
           of the header, or the first column looks like genes (Ensembl ids ``ENS…G000…`` in
           at least half, or at least three mitochondrial / ribosomal-protein symbols such as
           ``MT-CO1``, ``Rpl13``) ⇒ cells are columns; the converse ⇒ cells are rows.

        When none decides, :class:`InputError` asks for ``cells_as`` (the shape is never
        used to guess). The orientation, its reason and the resulting numbers of cells and
        genes are logged.
    layer
        AnnData and loom files (``.h5ad``, ``.zarr``, ``.loom``) only: take the counts from
        ``layers[layer]`` instead of ``X`` (e.g. ``"counts"`` when ``X`` holds normalised
        values or is absent; ``"unspliced"`` in a velocyto loom).
    genome
        10x HDF5 only: the genome to keep from a file with several (required there).

    Returns
    -------
    anndata.AnnData
        ``X`` a float32 :class:`scipy.sparse.csr_matrix` of whole non-negative counts;
        unique ``obs_names``/``var_names`` (``cell_<i>``/``gene_<i>`` where the file has
        none; duplicates get ``-1``, ``-2``, … suffixes and a warning); the file's cell and
        gene annotations in ``obs``/``var`` (10x: ``var["gene_ids"]``, gene symbols as
        names, only "Gene Expression" features); ``obs["scdsec_true_label"]`` if ``labels``
        is given;
        ``uns["scdsec_source"] = {"path": ..., "format": ...}``.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown layout, empty matrix, negative or non-integer
        values (for AnnData files the message names the layers that hold whole numbers), no
        ``X`` and no ``layer``, a ``layer`` that is absent or given for another format,
        non-numeric columns not listed in ``metadata_columns``, a table whose orientation its
        content does not decide (with ``cells_as="auto"``), or a ``labels`` /
        ``metadata_columns`` key that is not in the file.
    """
    path = Path(path)
    if cells_as not in ("auto", "rows", "columns"):
        raise InputError(f"{path}: cells_as={cells_as!r}; expected 'auto', 'rows' or 'columns'")
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
        else:
            parsed = _READERS[fmt](path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise InputError(f"{path}: cannot read as {fmt}: {_one_line(exc)}") from exc
    return _finish(path, fmt, parsed, labels, requested)


def detect_format(path: str | Path) -> str:
    """Recognise a count file's layout from its content.

    Rules, in order:

    - a folder holding ``.zgroup`` or ``zarr.json``: ``zarr`` (an AnnData zarr store);
    - a folder holding ``matrix.mtx(.gz)`` (in it or a subfolder) with
      ``features.tsv(.gz)`` or ``genes.tsv(.gz)`` and ``barcodes.tsv(.gz)`` beside it, or a
      zip / tar / tar.gz archive (ustar magic at offset 257, possibly inside gzip) holding
      one: ``10x_mtx``; so is a Matrix Market file itself (``%%MatrixMarket``, maybe
      gzipped), whose annotation files sit beside it;
    - HDF5 (``\\x89HDF``): group ``matrix`` with ``data``/``indices``/``indptr``/``shape``/
      ``barcodes``/``features`` (10x v3), or a genome-named group with ``genes`` (10x v2):
      ``10x_h5``; ``obs`` and ``var`` with AnnData encoding attributes (``X`` may be
      absent when the counts sit in a layer): ``h5ad``; a 2-D dataset ``matrix`` with groups
      ``row_attrs`` and ``col_attrs``: ``loom``;
      ``exprs``, ``obs_names``, ``var_names``: ``cellblast_h5``; a 2-D top-level dataset
      ``X``: ``xy_h5``;
    - UTF-8 text (plain, gzip, or the only file of a zip) whose first line has tabs:
      ``tsv``; commas: ``csv`` (whichever separator is more frequent).

    Parameters
    ----------
    path
        File, folder or archive.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    InputError
        The path does not exist, cannot be read, or matches none of the rules.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    try:
        if path.is_dir() and ((path / ".zgroup").is_file() or (path / "zarr.json").is_file()):
            return "zarr"
        if path.is_dir():
            with _mtx_source(path) as (names, _, _):
                _find_matrix(names, path)
            return "10x_mtx"
        container, head = _content_head(path)
        if container == "plain" and (head.startswith(_HDF5_MAGIC) or h5py.is_hdf5(path)):
            return _detect_hdf5(path)
        if container == "zip":
            return _detect_zip(path)
        if _is_tar(head):
            with _mtx_source(path) as (names, _, _):
                _find_matrix(names, path)
            return "10x_mtx"
        if head.startswith(_HDF5_MAGIC):
            raise InputError(f"{path}: gzip-compressed HDF5; decompress it first")
        return _detect_text(head, path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise InputError(f"{path}: cannot read: {_one_line(exc)}") from exc


# --------------------------------------------------------------------------- detection


def _content_head(path: Path) -> tuple[str, bytes]:
    """Return the container (``plain``, ``gzip``, ``zip``) and the first bytes of the content."""
    with path.open("rb") as fh:
        raw = fh.read(_HEAD_BYTES)
    if raw.startswith(_GZIP_MAGIC):
        with gzip.open(path, "rb") as fh:
            return "gzip", fh.read(_HEAD_BYTES)
    if raw.startswith(_ZIP_MAGIC):
        return "zip", raw
    return "plain", raw


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


def _detect_text(head: bytes, path: Path) -> str:
    if head.startswith(_MTX_MAGIC):
        return "10x_mtx"
    unknown = (
        f"{path}: unrecognised format (not HDF5, a 10x matrix folder/archive, nor CSV/TSV text)"
    )
    if not head.strip():
        raise InputError(f"{path}: empty file")
    if b"\x00" in head:
        raise InputError(unknown)
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        raise InputError(unknown) from None
    first_line = text.splitlines()[0] if text.strip() else ""
    tabs, commas = first_line.count("\t"), first_line.count(",")
    if tabs == commas == 0:
        raise InputError(unknown)
    return "tsv" if tabs >= commas else "csv"


def _detect_hdf5(path: Path) -> str:
    with h5py.File(path, "r") as f:
        keys = sorted(f.keys())
        if _is_10x_group(f.get("matrix")):
            return "10x_h5"
        if {"obs", "var"} <= set(keys) and _is_anndata(f):  # X may be absent (layers only)
            return "h5ad"
        if isinstance(f.get("matrix"), h5py.Dataset) and {"row_attrs", "col_attrs"} <= set(keys):
            return "loom"
        if {"exprs", "obs_names", "var_names"} <= set(keys):
            return "cellblast_h5"
        x = f.get("X")
        if isinstance(x, h5py.Dataset) and x.ndim == 2:
            return "xy_h5"
        if any(_is_10x_group(f[k]) for k in keys):
            return "10x_h5"
    raise InputError(f"{path}: HDF5 file with an unrecognised layout (top-level keys: {keys})")


def _is_10x_group(group: object) -> bool:
    return (
        isinstance(group, h5py.Group)
        and {"data", "indices", "indptr", "shape", "barcodes"} <= set(group.keys())
        and ("features" in group or "genes" in group)
    )


def _is_anndata(f: h5py.File) -> bool:
    obs = f["obs"]
    if _attr(f, "encoding-type") == "anndata":
        return True
    if isinstance(obs, h5py.Dataset):  # anndata < 0.7 stored obs as a compound dataset
        return obs.dtype.names is not None
    return "encoding-type" in obs.attrs or "_index" in obs.attrs


def _attr(obj: h5py.HLObject, name: str) -> str | None:
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def _detect_zip(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        names = _zip_names(zf)
        if any(posixpath.basename(n) in _MATRIX_FILES for n in names):
            return "10x_mtx"
        if len(names) == 1:
            with zf.open(names[0]) as fh:
                return _detect_text(fh.read(_HEAD_BYTES), path)
    raise InputError(f"{path}: zip archive of {len(names)} files, none of them matrix.mtx(.gz)")


def _zip_names(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]


# --------------------------------------------------------------------------- common


def _finish(
    path: Path, fmt: str, parsed: _Parsed, labels: str | None, requested: list[str]
) -> ad.AnnData:
    """Check the matrix, name cells and genes, attach labels and provenance."""
    X = parsed.X
    n_cells, n_genes = X.shape
    if n_cells == 0 or n_genes == 0:
        raise InputError(f"{path}: empty count matrix ({n_cells} cells × {n_genes} genes)")
    if X.nnz == 0:
        raise InputError(f"{path}: the count matrix ({n_cells} × {n_genes}) is all zero")
    obs_names = _unique_names(parsed.obs_names, n_cells, "cell", path)
    var_names = _unique_names(parsed.var_names, n_genes, "gene", path)
    obs = pd.DataFrame(index=obs_names) if parsed.obs is None else parsed.obs.set_axis(obs_names)
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


def _unique_names(names: list[str] | None, n: int, what: str, path: Path) -> pd.Index:
    if names is None:
        return pd.Index([f"{what}_{i}" for i in range(n)])
    if len(names) != n:
        raise InputError(f"{path}: {len(names)} {what} names for {n} {what}s in the matrix")
    index = pd.Index([str(name) for name in names])
    n_dup = int(index.duplicated().sum())
    if n_dup:
        warnings.warn(
            f"{path}: {n_dup} duplicated {what} names made unique by appending '-1', '-2', ...",
            UserWarning,
            stacklevel=4,
        )
        index = make_index_unique(index)
    return index


def _list_keys(keys: Sequence[str], limit: int = 20) -> str:
    keys = [str(k) for k in keys]
    if not keys:
        return "none"
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


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


def _check_counts(values: np.ndarray, path: Path) -> None:
    """Raise unless ``values`` are finite, whole and non-negative."""
    if values.size == 0 or values.dtype.kind in "ub":
        return
    if values.dtype.kind not in "if":
        raise InputError(f"{path}: the count matrix has non-numeric type {values.dtype}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError(f"{path}: the count matrix has NaN or infinite values")
    low = values.min()
    if low < 0:
        raise InputError(
            f"{path}: negative values in the count matrix (min {low}); expected raw counts"
        )
    if values.dtype.kind == "f":
        fractional = values[np.rint(values) != values]
        if fractional.size:
            raise InputError(
                f"{path}: non-integer values in the count matrix (e.g. {fractional[0]}); "
                "it looks normalised, not raw counts"
            )


def _csr32(matrix: sp.spmatrix | np.ndarray, path: Path) -> sp.csr_matrix:
    """Check counts and convert to a canonical float32 CSR matrix."""
    if sp.issparse(matrix):
        _check_counts(matrix.data, path)
        out = sp.csr_matrix(matrix, dtype=np.float32)
    else:  # check only the non-zero values: count matrices are mostly zeros
        dense = np.asarray(matrix)
        rows, cols = np.nonzero(dense)
        values = dense[rows, cols]
        _check_counts(values, path)
        out = sp.csr_matrix((values.astype(np.float32), (rows, cols)), shape=dense.shape)
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def _dense_to_csr(dset: h5py.Dataset, transpose: bool, path: Path) -> sp.csr_matrix:
    """Read a dense 2-D dataset in blocks of cells into cells × genes float32 CSR.

    Cells are the rows of ``dset``, or its columns when ``transpose``.
    """
    axis = 1 if transpose else 0
    n, width = dset.shape[axis], dset.shape[1 - axis]
    step = max(1, _BLOCK_VALUES // max(width, 1))
    if dset.chunks:  # whole HDF5 chunks per block, so each is decompressed once
        chunk = dset.chunks[axis]
        step = max(chunk, step // chunk * chunk)
    blocks = [sp.csr_matrix((0, width), dtype=np.float32)]
    for start in range(0, n, step):
        block = dset[:, start : start + step].T if transpose else dset[start : start + step]
        blocks.append(_csr32(block, path))
    return sp.vstack(blocks, format="csr")


def _decoded(values: np.ndarray) -> np.ndarray:
    """Byte strings (fixed or variable length) as ``str``; other values unchanged."""
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8").astype(object)
    if values.dtype.kind == "O":
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else v for v in values], dtype=object
        )
    return values


def _names(values: np.ndarray) -> list[str]:
    return [str(v) for v in _decoded(np.asarray(values))]


_TRUNCATED_HDF5 = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def _one_line(exc: BaseException) -> str:
    """The error's message in one line, in a user's words where HDF5 has its own."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    truncated = _TRUNCATED_HDF5.search(text)
    if truncated:
        size, expected = (int(n) for n in truncated.groups())
        return (
            f"the HDF5 file is truncated ({size:,} of its {expected:,} bytes): the download "
            "or copy did not finish; fetch it again"
        )
    return text


# --------------------------------------------------------------------------- HDF5 readers


def _read_anndata(path: Path, fmt: str, layer: str | None) -> _Parsed:
    """An ``.h5ad``, AnnData ``.zarr`` or ``.loom`` file, read by anndata; counts from X or a
    layer."""
    with warnings.catch_warnings():  # duplicated names get our own warning in _finish
        warnings.filterwarnings("ignore", message=r".* names are not unique")
        if fmt == "loom":
            adata = _read_loom(path)
        else:
            adata = (ad.read_h5ad if fmt == "h5ad" else ad.read_zarr)(path)
    if layer is not None:
        if layer not in adata.layers:
            raise InputError(f"{path}: no layer {layer!r}; layers: {_list_keys(adata.layers)}")
        matrix, where = adata.layers[layer], f"layers[{layer!r}]"
    elif adata.X is None:
        raise InputError(f"{path}: the AnnData file has no X; {_counts_layers_hint(adata)}")
    else:
        matrix, where = adata.X, "X"
    try:
        X = _csr32(matrix, path)
    except InputError as err:
        hint = _counts_layers_hint(adata, exclude=layer)
        raise InputError(f"{err} (in {where}); {hint}") from None
    return _Parsed(
        X=X,
        obs_names=list(adata.obs_names),
        var_names=list(adata.var_names),
        obs=adata.obs.copy(),
        var=adata.var.copy(),
    )


def _read_loom(path: Path) -> ad.AnnData:
    """A loom file (genes × cells ``matrix``), read by anndata with loompy, cells named by the
    first of :data:`_LOOM_CELL_NAMES` in its column attributes and genes by the first of
    :data:`_LOOM_GENE_NAMES` in its row attributes (``cell_<i>``/``gene_<i>`` without one)."""
    try:
        import loompy  # noqa: F401  (anndata reads loom through it)
    except ImportError:
        raise InputError(f"{path}: reading loom files needs loompy (pip install loompy)") from None
    from anndata.io import read_loom

    with h5py.File(path, "r") as f:
        cells = next((n for n in _LOOM_CELL_NAMES if n in f["col_attrs"]), None)
        genes = next((n for n in _LOOM_GENE_NAMES if n in f["row_attrs"]), None)
    with warnings.catch_warnings():  # unnamed axes: named below
        warnings.filterwarnings("ignore", category=ad.ImplicitModificationWarning)
        adata = read_loom(path, sparse=True, obs_names=cells or "", var_names=genes or "")
    if cells is None:
        adata.obs_names = [f"cell_{i}" for i in range(adata.n_obs)]
    if genes is None:
        adata.var_names = [f"gene_{i}" for i in range(adata.n_vars)]
    return adata


def _counts_layers_hint(adata: ad.AnnData, exclude: str | None = None) -> str:
    """Which layers hold whole non-negative numbers, as advice to set ``layer``."""
    whole = [name for name in adata.layers if name != exclude and _holds_counts(adata.layers[name])]
    if whole:
        return (
            f"layers that hold whole numbers: {_list_keys(whole)} — name one with "
            f"layer: {whole[0]} (scdsec cluster --layer {whole[0]})"
        )
    return f"no layer holds whole numbers (layers: {_list_keys(list(adata.layers))})"


def _holds_counts(matrix: sp.spmatrix | np.ndarray) -> bool:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    try:
        _check_counts(np.asarray(values), Path())
    except InputError:
        return False
    return True


def _read_10x_h5(path: Path, genome: str | None) -> _Parsed:
    """Cell Ranger's HDF5 (v2 genome groups, v3 ``matrix``), read by scanpy.

    Several genomes (a barnyard or multi-species reference) need ``genome``; this reader
    adds that rule for v3 files (scanpy keeps every genome there), the count checks and the
    Gene Expression filter with its messages (see :func:`_tenx`).
    """
    import scanpy as sc

    with h5py.File(path, "r") as f:
        if _is_10x_group(f.get("matrix")):
            stored = f["matrix/features"].get("genome")
            genomes = sorted(set(_names(stored[()]))) if stored is not None else []
        else:
            genomes = sorted(k for k in f if _is_10x_group(f[k]))
    if genome is None and len(genomes) > 1:
        raise InputError(
            f"{path}: 10x HDF5 with several genomes ({_list_keys(genomes)}); choose one with "
            f"genome: {genomes[0]} in the dataset's entry (scdsec cluster --genome {genomes[0]})"
        )
    if genome is not None and genome not in genomes:
        raise InputError(f"{path}: no genome {genome!r}; genomes: {_list_keys(genomes)}")
    with warnings.catch_warnings():  # duplicated names get our own warning in _finish
        warnings.filterwarnings("ignore", message=r".* names are not unique")
        adata = sc.read_10x_h5(path, genome=genome, gex_only=False)
    types = list(adata.var["feature_types"]) if "feature_types" in adata.var else None
    return _tenx(
        path,
        _csr32(adata.X, path),
        list(adata.obs_names),
        list(adata.var["gene_ids"]),
        list(adata.var_names),
        types,
    )


def _tenx(
    path: Path,
    X: sp.csr_matrix,
    barcodes: list[str],
    ids: list[str],
    names: list[str],
    types: list[str] | None,
) -> _Parsed:
    """Keep Gene Expression features; symbols become names, ids go to ``var``."""
    if len(ids) != X.shape[1]:
        raise InputError(f"{path}: {len(ids)} features for {X.shape[1]} matrix rows")
    var = pd.DataFrame({"gene_ids": ids})
    if types is not None:
        var["feature_types"] = types
        keep = np.asarray(types) == _GENE_EXPRESSION
        if not keep.any():
            found = sorted(set(types))
            raise InputError(
                f"{path}: none of the {len(types)} features is {_GENE_EXPRESSION!r} (feature "
                f"types: {_list_keys(found)}); there is no gene expression to cluster"
            )
        if not keep.all():
            dropped = sorted(set(np.asarray(types)[~keep]))
            _log.info(
                "%s: dropped %d features that are not %r (%s)",
                path,
                int((~keep).sum()),
                _GENE_EXPRESSION,
                ", ".join(dropped),
            )
            X, var = X[:, keep], var[keep].reset_index(drop=True)
            names = [name for name, k in zip(names, keep, strict=True) if k]
    X.sum_duplicates()
    X.eliminate_zeros()
    return _Parsed(X=X, obs_names=barcodes, var_names=names, var=var, available=[])


def _read_xy_h5(path: Path) -> _Parsed:
    """``X`` (cells × genes, or genes × cells as R writes it) with cell vectors such as ``Y``;
    ``gene_names`` / ``cell_names`` datasets name the genes and cells, and ``label_names``
    (or ``<key>_names``) names the integer codes of ``Y`` (or ``<key>``), codes from 0."""
    with h5py.File(path, "r") as f:
        x = f["X"]
        # vectors, also stored as n × 1 or 1 × n (e.g. MATLAB)
        vectors = {
            k: d
            for k, d in f.items()
            if k != "X" and isinstance(d, h5py.Dataset) and d.ndim in (1, 2) and d.size in d.shape
        }
        gene_key = next((k for k in _XY_GENE_NAMES if k in vectors), None)
        cell_key = next((k for k in _XY_CELL_NAMES if k in vectors), None)
        code_names = {k: n for k in vectors for n in (f"{k}_names", "label_names") if n in vectors}
        code_names = {k: n for k, n in code_names.items() if k != gene_key and k != cell_key}
        naming = {gene_key, *code_names.values()} - {None}
        annotations = {k: d for k, d in vectors.items() if k not in naming}
        rows, cols = x.shape
        if gene_key is not None:  # the gene names say which axis holds the genes
            transpose = vectors[gene_key].size == rows != cols
        else:  # written genes × cells (e.g. from R): the annotations match the second axis only
            lengths = {d.size for d in annotations.values()}
            transpose = rows != cols and cols in lengths and rows not in lengths
        if transpose:
            _log.info("%s: X is stored genes × cells; transposing", path)
        X = _dense_to_csr(x, transpose, path)
        n_cells = X.shape[0]
        obs = pd.DataFrame(
            {
                k: _decoded(d[()].ravel())
                for k, d in annotations.items()
                if d.size == n_cells and k != cell_key
            },
        )
        for key, names_key in code_names.items():
            if key in obs:
                obs[key] = _named_codes(obs[key], _names(vectors[names_key][()].ravel()))
        misfits = {k: d.size for k, d in annotations.items() if d.size != n_cells}
        cell_names = _names(vectors[cell_key][()].ravel()) if cell_key else None
        gene_names = _names(vectors[gene_key][()].ravel()) if gene_key else None
    return _Parsed(
        X=X,
        obs_names=cell_names,
        var_names=gene_names,
        obs=obs,
        available=[k for k in annotations if k != cell_key],
        misfits=misfits,
    )


# Datasets of an X/Y file that name its genes and its cells.
_XY_GENE_NAMES = ("gene_names", "genes", "gene_symbols", "var_names")
_XY_CELL_NAMES = ("cell_names", "cells", "barcodes", "obs_names")


def _named_codes(codes: pd.Series, names: list[str]) -> pd.Series:
    """Integer codes 0 … len(names) − 1 replaced by their names; other codes kept as they are."""
    numeric = pd.to_numeric(codes, errors="coerce")
    whole = numeric.notna() & (numeric % 1 == 0) & (numeric >= 0) & (numeric < len(names))
    if not whole.all():
        return codes
    return pd.Series([names[int(c)] for c in numeric], index=codes.index)


def _read_cellblast_h5(path: Path) -> _Parsed:
    with h5py.File(path, "r") as f:
        obs_names, var_names = _names(f["obs_names"][()]), _names(f["var_names"][()])
        n_obs, n_var = len(obs_names), len(var_names)
        exprs = f["exprs"]
        if isinstance(exprs, h5py.Group):
            X = _cellblast_sparse(exprs, n_obs, n_var, path)
        elif exprs.shape in ((n_obs, n_var), (n_var, n_obs)):
            X = _dense_to_csr(exprs, exprs.shape != (n_obs, n_var), path)
        else:
            raise InputError(
                f"{path}: exprs has shape {exprs.shape} but there are {n_obs} obs_names "
                f"and {n_var} var_names"
            )
        obs, obs_keys, misfits = _group_frame(f.get("obs"), n_obs)
        var, _, _ = _group_frame(f.get("var"), n_var)
    return _Parsed(
        X=X,
        obs_names=obs_names,
        var_names=var_names,
        obs=obs,
        var=var,
        available=obs_keys,
        misfits=misfits,
    )


def _cellblast_sparse(group: h5py.Group, n_obs: int, n_var: int, path: Path) -> sp.csr_matrix:
    """Cell BLAST stores CSR cells × genes; accept the transposed layout too.

    The orientation is taken from ``indptr``'s length compared with the numbers of
    ``obs_names`` and ``var_names``, not from the stored ``shape``.
    """
    data, indices, indptr = group["data"][()], group["indices"][()], group["indptr"][()]
    _check_counts(data, path)
    if len(indptr) - 1 == n_obs:
        shape, transpose = (n_obs, n_var), False
    elif len(indptr) - 1 == n_var:
        shape, transpose = (n_var, n_obs), True
    else:
        raise InputError(
            f"{path}: exprs/indptr has {len(indptr)} entries; expected {n_obs + 1} "
            f"(one per cell + 1) or {n_var + 1} (one per gene + 1)"
        )
    X = sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=shape)
    X = X.T.tocsr() if transpose else X
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def _group_frame(
    group: h5py.Group | None, n: int
) -> tuple[pd.DataFrame | None, list[str], dict[str, int]]:
    """One column per 1-D dataset of length ``n`` in ``group``; all its keys; the lengths of
    its 1-D datasets of another length."""
    if not isinstance(group, h5py.Group):
        return None, [], {}
    vectors = {k: d for k, d in group.items() if isinstance(d, h5py.Dataset) and d.ndim == 1}
    columns = {k: _decoded(d[()]) for k, d in vectors.items() if len(d) == n}
    misfits = {k: len(d) for k, d in vectors.items() if len(d) != n}
    return pd.DataFrame(columns, index=pd.RangeIndex(n)), list(group.keys()), misfits


# --------------------------------------------------------------------------- 10x mtx


@contextmanager
def _mtx_source(
    path: Path,
) -> Iterator[tuple[list[str], Callable[[str], IO[bytes]], str | None]]:
    """Yield the file names of a folder / zip / tar(.gz), an opener, and a forced matrix name.

    A Matrix Market file itself yields its folder's files and its own name.
    """
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        yield names, lambda name: (path / name).open("rb"), None
        return
    container, head = _content_head(path)
    if container == "zip":
        with zipfile.ZipFile(path) as zf:
            yield _zip_names(zf), zf.open, None
    elif _is_tar(head):
        with tarfile.open(path, "r:*") as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
            yield names, tf.extractfile, None
    else:
        folder = path.parent
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        yield names, lambda name: (folder / name).open("rb"), path.name


def _describe_files(names: list[str], limit: int = 5) -> str:
    """What a folder or archive holds, in a few words: its first names and how many."""
    if not names:
        return "no files"
    shown = ", ".join(names[:limit]) + (", …" if len(names) > limit else "")
    return f"{len(names)} file{'s' if len(names) > 1 else ''} ({shown}): point to the count file"


def _find_matrix(names: list[str], path: Path) -> str:
    found = [n for n in names if posixpath.basename(n) in _MATRIX_FILES]
    if not found:
        raise InputError(
            f"{path}: not a 10x matrix folder or archive (no matrix.mtx(.gz)); it holds "
            f"{_describe_files(names)}"
        )
    if len(found) > 1:
        raise InputError(f"{path}: several matrix files ({', '.join(found)}); point to one folder")
    return found[0]


def _sibling(names: list[str], folder: str, candidates: tuple[str, ...]) -> str | None:
    present = set(names)
    return next(
        (posixpath.join(folder, c) for c in candidates if posixpath.join(folder, c) in present),
        None,
    )


@contextmanager
def _gunzipped(stream: IO[bytes]) -> Iterator[IO[bytes]]:
    """The stream, decompressed if its content is gzip (recognised by magic bytes)."""
    with stream:
        if stream.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stream) as gz:
                yield gz
        else:
            yield stream


def _read_10x_mtx(path: Path) -> _Parsed:
    with _mtx_source(path) as (names, open_member, forced):
        matrix = forced or _find_matrix(names, path)
        folder = posixpath.dirname(matrix)
        features = _sibling(names, folder, _FEATURE_FILES)
        barcodes = _sibling(names, folder, _BARCODE_FILES)
        for found, wanted in (
            (features, "features.tsv(.gz) or genes.tsv(.gz)"),
            (barcodes, "barcodes.tsv(.gz)"),
        ):
            if found is None:
                raise InputError(f"{path}: no {wanted} beside {matrix}")
        with _gunzipped(open_member(matrix)) as fh:
            if not fh.peek(len(_MTX_MAGIC)).startswith(_MTX_MAGIC):
                raise InputError(f"{path}: {matrix} is not a Matrix Market file")
            genes_by_cells = scipy.io.mmread(fh)
        with _gunzipped(open_member(features)) as fh:
            feature_table = _read_tsv(fh)
        with _gunzipped(open_member(barcodes)) as fh:
            cell_names = _read_tsv(fh)[0].tolist()
    if len(cell_names) != genes_by_cells.shape[1]:
        raise InputError(
            f"{path}: {len(cell_names)} barcodes for {genes_by_cells.shape[1]} matrix columns"
        )
    ids = feature_table[0].tolist()
    symbols = feature_table[1].tolist() if feature_table.shape[1] > 1 else ids
    types = _feature_types(feature_table, f"{path}: {features}")
    X = _csr32(sp.csr_matrix(genes_by_cells).T, path)
    return _tenx(path, X, cell_names, ids, symbols, types)


def _feature_types(table: pd.DataFrame, where: str) -> list[str] | None:
    """Column 3 of a features file when it holds 10x feature types, else None (all genes).

    Cell Ranger writes id, symbol, type; other tools write id, symbol and then chromosome,
    position, strand or biotype. Column 3 counts as feature types only when every value is
    one of :data:`_FEATURE_TYPES`; otherwise it is ignored, with a log line that says so.
    """
    if table.shape[1] < 3:
        return None
    values = table[2].tolist()
    if set(values) <= _FEATURE_TYPES:
        return values
    examples = list(dict.fromkeys(values))[:3]
    _log.info(
        "%s: column 3 holds no 10x feature types (values such as %s): all %d features are "
        "kept as genes",
        where,
        ", ".join(repr(v) for v in examples),
        len(values),
    )
    return None


def _read_tsv(stream: IO[bytes]) -> pd.DataFrame:
    return pd.read_csv(
        stream, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
    )


_READERS: dict[str, Callable[[Path], _Parsed]] = {
    "10x_mtx": _read_10x_mtx,
    "xy_h5": _read_xy_h5,
    "cellblast_h5": _read_cellblast_h5,
}


# --------------------------------------------------------------------------- CSV / TSV


@contextmanager
def _open_table(path: Path) -> Iterator[IO[bytes]]:
    """Open a plain, gzip or single-file zip table as a binary stream."""
    container, _ = _content_head(path)
    with ExitStack() as stack:
        if container == "zip":
            zf = stack.enter_context(zipfile.ZipFile(path))
            members = _zip_names(zf)
            if len(members) != 1:
                raise InputError(f"{path}: zip archive of {len(members)} files; expected one table")
            yield stack.enter_context(zf.open(members[0]))
        elif container == "gzip":
            yield stack.enter_context(gzip.open(path, "rb"))
        else:
            yield stack.enter_context(path.open("rb"))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mostly(names: list[str] | None, pattern: re.Pattern[str]) -> bool:
    """True if at least half of ``names`` match ``pattern`` (searched anywhere)."""
    return bool(names) and 2 * sum(bool(pattern.search(n)) for n in names) >= len(names)


def _look_like_genes(names: list[str] | None) -> bool:
    if not names:
        return False
    housekeeping = sum(bool(_HOUSEKEEPING_SYMBOL.match(n)) for n in names)
    return _mostly(names, _GENE_ID) or housekeeping >= _MIN_HOUSEKEEPING_SYMBOLS


def _orientation(
    col_names: list[str] | None,
    row_names: list[str] | None,
    corner: str | None,
    requested: list[str],
) -> tuple[str | None, str]:
    """The ``cells_as="auto"`` rule documented in :func:`read_counts`: (choice, reason).

    The choice is None when the table does not decide; the reason then says why.
    """
    wanted = set(requested)
    if col_names and wanted & set(col_names):
        return "rows", f"the header holds {sorted(wanted & set(col_names))[0]!r}"
    if row_names and wanted & set(row_names):
        return "columns", f"the first column holds {sorted(wanted & set(row_names))[0]!r}"
    word = re.sub(r"[^a-z]", "", (corner or "").lower())
    if word in _CELL_WORDS or word in _GENE_WORDS:
        choice = "rows" if word in _CELL_WORDS else "columns"
        return choice, f"the corner cell reads {corner!r}"
    columns_say = {
        "columns": _mostly(col_names, _BARCODE) or _look_like_genes(row_names),
        "rows": _mostly(row_names, _BARCODE) or _look_like_genes(col_names),
    }
    if columns_say["columns"] != columns_say["rows"]:
        choice = "columns" if columns_say["columns"] else "rows"
        genes = row_names if choice == "columns" else col_names
        what = "gene names" if _look_like_genes(genes) else "cell barcodes"
        return choice, f"{what} label the {'rows' if choice == 'columns' else 'columns'}"
    absent = (
        f"; {requested[0]!r} (asked for as labels or metadata_columns) is neither in the "
        "header nor in the first column"
        if requested
        else ""
    )
    return None, (
        "the table does not say whether cells are rows or columns (row names "
        f"{_examples(row_names)}, column names {_examples(col_names)}, corner cell "
        f"{corner!r}){absent}; set cells_as: rows or columns (scdsec cluster --cells-as)"
    )


def _examples(names: list[str] | None) -> str:
    if not names:
        return "absent"
    return ", ".join(repr(n) for n in names[:3]) + (", …" if len(names) > 3 else "")


def _read_table(
    path: Path, sep: str, cells_as: str, requested: list[str], labels: str | None
) -> _Parsed:
    with _open_table(path) as stream:
        lines = csv.reader(
            io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), delimiter=sep
        )
        first, second = next(lines, None), next(lines, None)
    if first is None or second is None:
        raise InputError(f"{path}: empty count matrix (fewer than two lines)")
    short_header = len(first) == len(second) - 1  # R's write.table: no corner cell
    has_header = first[0] == "" or short_header or not all(_is_number(v) for v in first[1:])
    if has_header:
        has_index = (
            first[0] == ""
            or short_header
            or (first[0] not in requested and not _is_number(second[0]))
        )
        col_names = first if short_header or not has_index else first[1:]
    else:
        has_index, col_names = not _is_number(first[0]), None
    with _open_table(path) as stream:
        df = pd.read_csv(
            stream,
            sep=sep,
            header=None,
            skiprows=1 if has_header else 0,
            index_col=0 if has_index else None,
            low_memory=False,
        )
    if col_names is not None:
        if len(col_names) != df.shape[1]:
            raise InputError(
                f"{path}: the header has {len(col_names)} names but rows have {df.shape[1]} values"
            )
        df.columns = col_names
    row_names = [str(v) for v in df.index] if has_index else None
    reason = f"cells_as={cells_as!r}"
    if cells_as == "auto":
        corner = first[0] if has_header and has_index and not short_header else None
        choice, reason = _orientation(col_names, row_names, corner, requested)
        if choice is None:
            raise InputError(f"{path}: {reason}")
        cells_as = choice
    table = df.set_axis(col_names, axis=1) if col_names else df
    _check_requested(path, requested, labels, table if cells_as == "rows" else table.T)
    if cells_as == "rows":
        parsed = _table_cells_as_rows(path, df, row_names, col_names, requested)
    else:
        parsed = _table_cells_as_columns(path, df, row_names, col_names, requested)
    _log.info(
        "%s: cells are the table's %s (%s): %d cells × %d genes",
        path,
        cells_as,
        reason,
        *parsed.X.shape,
    )
    return parsed


def _table_cells_as_rows(
    path: Path,
    df: pd.DataFrame,
    row_names: list[str] | None,
    col_names: list[str] | None,
    requested: list[str],
) -> _Parsed:
    keys = col_names or []
    is_meta = np.array([k in requested for k in keys], dtype=bool) if keys else None
    if is_meta is None:
        counts, obs, gene_names = df, None, None
    else:
        counts, obs = df.loc[:, ~is_meta], df.loc[:, is_meta].reset_index(drop=True)
        gene_names = [k for k, meta in zip(keys, is_meta, strict=True) if not meta]
    for i, dtype in enumerate(counts.dtypes):
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            name = gene_names[i] if gene_names else f"number {i + 1}"
            example = counts.iloc[:, i].dropna().iloc[0]
            raise InputError(
                f"{path}: column {name!r} is not numeric (e.g. {example!r}); "
                "if it describes cells, list it in metadata_columns "
                "(scdsec cluster: --metadata-columns)"
            )
    return _Parsed(
        X=_csr32(counts.to_numpy(), path),
        obs_names=row_names,
        var_names=gene_names,
        obs=obs,
        available=keys,
    )


def _check_requested(
    path: Path, requested: list[str], labels: str | None, cells: pd.DataFrame
) -> None:
    """A ``labels``/``metadata_columns`` name that the table (``cells``: cells as rows) lacks
    is the error to report, before a text column is blamed for not being listed."""
    keys = [str(k) for k in cells.columns]
    missing = [k for k in requested if k not in keys]
    if missing:
        columns = (cells.iloc[:, i] for i in range(len(keys)))  # names may repeat
        text = [
            k
            for k, col in zip(keys, columns, strict=True)
            if (pd.to_numeric(col, errors="coerce").isna() & col.notna()).any()
        ]
        what = "label key" if missing[0] == labels else "metadata column"
        raise InputError(
            f"{path}: {what} {missing[0]!r} not found; the table's cell annotations (names "
            f"holding text): {_list_keys(text)}"
        )


def _table_cells_as_columns(
    path: Path,
    df: pd.DataFrame,
    row_names: list[str] | None,
    col_names: list[str] | None,
    requested: list[str],
) -> _Parsed:
    keys = row_names or []
    is_meta = np.array([k in requested for k in keys], dtype=bool) if keys else None
    if is_meta is None:
        counts, obs, gene_names = df, None, None
    else:
        counts = df.loc[~is_meta]
        obs = df.loc[is_meta].T.reset_index(drop=True).apply(_maybe_numeric)
        obs.columns = [k for k, meta in zip(keys, is_meta, strict=True) if meta]
        gene_names = [k for k, meta in zip(keys, is_meta, strict=True) if not meta]
    if any(not pd.api.types.is_numeric_dtype(dt) for dt in counts.dtypes):
        numeric = counts.apply(pd.to_numeric, errors="coerce")
        bad = (numeric.isna() & counts.notna()).to_numpy()
        if bad.any():
            i, j = np.argwhere(bad)[0]
            name = gene_names[i] if gene_names else f"number {i + 1}"
            raise InputError(
                f"{path}: row {name!r} is not numeric (e.g. {counts.iat[i, j]!r}); "
                "if it describes cells, list it in metadata_columns "
                "(scdsec cluster: --metadata-columns)"
            )
        counts = numeric
    return _Parsed(
        X=_csr32(counts.to_numpy().T, path),
        obs_names=col_names,
        var_names=gene_names,
        obs=obs,
        available=keys,
    )


def _maybe_numeric(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column
