"""HDF5 files of the clustering benchmarks: X/Y (``X`` with ``Y`` beside it) and Cell BLAST."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._errors import InputError
from ._common import _check_counts, _decoded, _dense_to_csr, _names, _Parsed

_log = logging.getLogger(__name__)


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
