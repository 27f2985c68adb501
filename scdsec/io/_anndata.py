"""AnnData files (``.h5ad``, ``.zarr``) and loom, read by anndata; counts from X or a layer."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from ._common import _check_counts, _csr32, _list_keys, _Parsed

_ANNDATA_FORMATS = ("h5ad", "zarr", "loom")  # read by anndata; `layer` applies
# Loom attributes that name the cells and the genes (loompy's conventions, then anndata's).
_LOOM_CELL_NAMES = ("CellID", "obs_names", "cell_names", "Barcode")
_LOOM_GENE_NAMES = ("Gene", "var_names", "gene_names", "Accession")


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
