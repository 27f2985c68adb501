"""Which layout a count file has, recognised from its content (never from its name)."""

from __future__ import annotations

import codecs
import posixpath
import tarfile
import zipfile
from pathlib import Path

import h5py

from .._errors import InputError
from ._common import (
    _HDF5_MAGIC,
    _HEAD_BYTES,
    _content_head,
    _is_tar,
    _one_line,
    _zip_names,
)
from ._tenx import _MATRIX_NAME, _MTX_MAGIC, _find_samples, _is_10x_group, _mtx_source


def detect_format(path: str | Path) -> str:
    """Recognise a count file's layout from its content.

    Rules, in order:

    - a folder holding ``.zgroup`` or ``zarr.json``: ``zarr`` (an AnnData zarr store);
    - a folder holding ``matrix.mtx(.gz)``, maybe with a sample prefix as public archives
      name it (``GSM…_matrix.mtx.gz``; in it or a subfolder) with
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
    - UTF-8 text (plain, gzip, or the only file of a zip) whose first line (after any
      ``#`` comment lines) has tabs: ``tsv``; commas: ``csv`` (whichever separator is more
      frequent).

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
                _find_samples(names, path)
            return "10x_mtx"
        container, head = _content_head(path)
        if container == "plain" and (head.startswith(_HDF5_MAGIC) or h5py.is_hdf5(path)):
            return _detect_hdf5(path)
        if container == "zip":
            return _detect_zip(path)
        if _is_tar(head):
            with _mtx_source(path) as (names, _, _):
                _find_samples(names, path)
            return "10x_mtx"
        if head.startswith(_HDF5_MAGIC):
            raise InputError(f"{path}: gzip-compressed HDF5; decompress it first")
        return _detect_text(head, path)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise InputError(f"{path}: cannot read: {_one_line(exc)}") from exc


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
    # leading '#' lines are comments (featureCounts writes its command line there)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    first_line = lines[0] if lines else ""
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
        if any(_MATRIX_NAME.match(posixpath.basename(n)) for n in names):
            return "10x_mtx"
        if len(names) == 1:
            with zf.open(names[0]) as fh:
                return _detect_text(fh.read(_HEAD_BYTES), path)
    raise InputError(
        f"{path}: zip archive of {len(names)} files, none of them (<sample>_)matrix.mtx(.gz)"
    )
