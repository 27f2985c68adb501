"""What every reader shares: the parsed result, the count checks, HDF5 helpers, messages."""

from __future__ import annotations

import gzip
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError

_log = logging.getLogger(__name__)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_HEAD_BYTES = 1 << 16
# Dense matrices are read in blocks of about this many values (32 MiB as float64).
_BLOCK_VALUES = 1 << 22


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
    # Where the counts were read ("X", ".raw", "layers['counts']") and where else whole numbers are,
    # for the message on non-integer values.
    where: str = ""
    hint: str = ""


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


def _zip_names(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]


def _list_keys(keys: Sequence[str], limit: int = 20) -> str:
    keys = [str(k) for k in keys]
    if not keys:
        return "none"
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _check_counts(values: np.ndarray, path: Path) -> None:
    """Raise unless ``values`` are finite and non-negative numbers (whole numbers are checked
    on the whole matrix by :func:`_whole_counts`)."""
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


def _is_whole(values: np.ndarray) -> bool:
    """True if ``values`` are finite, non-negative whole numbers."""
    values = np.asarray(values)
    if values.size == 0 or values.dtype.kind in "ub":
        return True
    if values.dtype.kind not in "if" or not np.isfinite(values).all() or values.min() < 0:
        return False
    return values.dtype.kind == "i" or bool((np.rint(values) == values).all())


#: Values of ``counts`` (see :func:`scdsec.io.read_counts`).
COUNTS = ("integer", "round")
# Values above this cannot be log-scaled counts (log1p of 10^10 is 23).
_LOG_MAX = 25.0
# Cells tested for values that are whole multiples of one factor per cell.
_SCALE_TEST_CELLS = 2000


def _non_integer_kind(X: sp.csr_matrix) -> str:
    """What a non-negative matrix with non-integer values holds: ``"log"``, ``"normalised"``
    or ``"corrected"``.

    Log-scaled values are all at most :data:`_LOG_MAX`; normalised counts (scaled per cell:
    counts per 10,000 or per million, size factors) have equal cell totals, or each cell's
    values are whole multiples of one factor (its smallest value over 1 … 6); other
    non-integer values (non-negative, not log-scaled, not scaled per cell) look like
    ambient-RNA-corrected counts, as SoupX or DecontX write them.
    """
    if X.data.max() <= _LOG_MAX:
        return "log"
    totals = np.asarray(X.sum(axis=1)).ravel()
    totals = totals[totals > 0]
    if totals.size > 1 and totals.std() <= 1e-3 * totals.mean():
        return "normalised"
    sample = X[: _SCALE_TEST_CELLS * 2]
    lengths = np.diff(sample.indptr)
    rows = np.flatnonzero(lengths >= 3)[:_SCALE_TEST_CELLS]
    if rows.size:
        scaled = 0
        for row in rows:
            values = sample.data[sample.indptr[row] : sample.indptr[row + 1]].astype(np.float64)
            ratio = values / values.min()  # the smallest value may be 1, 2, … times the factor
            scaled += any(
                bool((np.abs(m * ratio - np.rint(m * ratio)) <= 1e-3 + 1e-6 * m * ratio).all())
                for m in range(1, 7)
            )
        if scaled >= 0.9 * rows.size:
            return "normalised"
    return "corrected"


def _whole_counts(
    X: sp.csr_matrix, path: Path, counts: str = "integer", where: str = "", hint: str = ""
) -> sp.csr_matrix:
    """``X`` (cells × genes, finite, non-negative) if its values are whole numbers; with
    ``counts="round"``, corrected counts rounded to the nearest whole number (logged).

    Raises :class:`InputError` on non-integer values, saying whether they look log-scaled,
    normalised or like corrected counts (and then naming ``counts: round``); ``where``
    (e.g. ``"X"``) and ``hint`` (where whole numbers are) complete the message.
    """
    fractional = np.flatnonzero(np.rint(X.data) != X.data)
    if not fractional.size:
        return X
    kind = _non_integer_kind(X)
    if kind == "corrected" and counts == "round":
        total = float(X.data.sum())
        X = X.copy()
        np.rint(X.data, out=X.data)
        X.eliminate_zeros()
        _log.info(
            "%s: rounded %d non-integer values %s to whole numbers (counts: round): total "
            "counts %.6g before, %.6g after",
            path,
            fractional.size,
            f"in {where}" if where else "in the count matrix",
            total,
            float(X.data.sum()),
        )
        return X
    found = (
        f"{path}: non-integer values in {where or 'the count matrix'} "
        f"(e.g. {X.data[fractional[0]]:.6g}; {fractional.size:,} of {X.nnz:,} non-zero values)"
    )
    if kind == "corrected":
        advice = (
            "they look like ambient-RNA-corrected counts (non-negative, not log-scaled, not "
            "scaled per cell, as SoupX or DecontX write them); to round them to whole numbers "
            "set counts: round (scdsec cluster --counts round)"
        )
    elif kind == "log":
        advice = f"they look log-transformed (largest value {X.data.max():.3g}), not raw counts" + (
            " (counts: round applies only to corrected counts)" if counts == "round" else ""
        )
    else:
        advice = "they look normalised (scaled per cell), not raw counts" + (
            " (counts: round applies only to corrected counts)" if counts == "round" else ""
        )
    raise InputError(f"{found}: {advice}" + (f"; {hint}" if hint else ""))


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
_MISSING_HDF5 = re.compile(r"object '([^']+)' doesn't exist")


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
    missing = _MISSING_HDF5.search(text)
    if missing:
        return f"the file has no {missing[1]!r}, which this format needs"
    return text
