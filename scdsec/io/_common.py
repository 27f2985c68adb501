"""What every reader shares: the parsed result, the count checks, HDF5 helpers, messages."""

from __future__ import annotations

import gzip
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

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_MTX_MAGIC = b"%%MatrixMarket"
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
