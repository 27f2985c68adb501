"""AnnData files (``.h5ad``, ``.zarr``) and loom, read by anndata; counts from X or a layer."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

from .._errors import InputError
from ._common import _csr32, _is_whole, _list_keys, _Parsed

_log = logging.getLogger(__name__)

_ANNDATA_FORMATS = ("h5ad", "zarr", "loom")  # read by anndata; `layer` applies
# Loom attributes that name the cells and the genes (loompy's conventions, then anndata's).
_LOOM_CELL_NAMES = ("CellID", "obs_names", "cell_names", "Barcode")
_LOOM_GENE_NAMES = ("Gene", "var_names", "gene_names", "Accession")


#: The ``layer`` value that reads ``.raw.X`` (where other toolkits keep the counts beside
#: normalised values in X), unless the file has a layer of that name; ``raw.X`` always does.
RAW = "raw"
_RAW_ALWAYS = "raw.X"


def _read_anndata(path: Path, fmt: str, layer: str | None) -> _Parsed:
    """An ``.h5ad``, AnnData ``.zarr`` or ``.loom`` file, read by anndata; counts from X, a
    layer, or ``.raw`` (``layer="raw"`` when no layer has that name, or ``"raw.X"``)."""
    with warnings.catch_warnings():  # duplicated names get our own warning in _finish
        warnings.filterwarnings("ignore", message=r".* names are not unique")
        if fmt == "loom":
            adata = _read_loom(path)
        else:
            adata = (ad.read_h5ad if fmt == "h5ad" else ad.read_zarr)(path)
    var_names, var = list(adata.var_names), adata.var.copy()
    if layer == _RAW_ALWAYS or (layer == RAW and RAW not in adata.layers):
        if adata.raw is None:
            raise InputError(
                f"{path}: no layer {layer!r} and no .raw (counts as other toolkits export them "
                f"beside normalised X); layers: {_list_keys(adata.layers)}"
            )
        matrix, where = adata.raw.X, ".raw"
        var_names, var = list(adata.raw.var_names), adata.raw.var.copy()
        _log.info(
            "%s: counts read from .raw (%d genes; X has %d)", path, len(var_names), adata.n_vars
        )
    elif layer is not None:
        if layer not in adata.layers:
            raise InputError(
                f"{path}: no layer {layer!r}; layers: {_list_keys(adata.layers)}"
                + ("; .raw: layer: raw" if adata.raw is not None else "")
            )
        matrix, where = adata.layers[layer], f"layers[{layer!r}]"
    elif adata.X is None:
        raise InputError(f"{path}: the AnnData file has no X; {_counts_layers_hint(adata)}")
    else:
        matrix, where = adata.X, "X"
    hint = _counts_layers_hint(adata, exclude=".raw" if where == ".raw" else layer)
    try:
        X = _csr32(matrix, path)
    except InputError as err:
        raise InputError(f"{err} (in {where}); {hint}") from None
    return _Parsed(
        X=X,
        obs_names=list(adata.obs_names),
        var_names=var_names,
        obs=adata.obs.copy(),
        var=var,
        where=where,
        hint=hint,
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
        version = f.attrs.get("LOOM_SPEC_VERSION")
        version = version.decode() if isinstance(version, bytes) else str(version or "")
        # Loom 3 keeps the global attributes in an /attrs group; files that say 3.x without
        # one (written by hand or by other tools) are read without loompy's validation,
        # which stops on them, and their global attributes are read from the root's.
        no_attrs = version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3
        no_attrs = no_attrs and "attrs" not in f
    if no_attrs:
        _log.info(
            "%s: the loom file says LOOM_SPEC_VERSION %s but has no /attrs group (where loom 3 "
            "keeps its global attributes): read without them",
            path,
            version,
        )
    with warnings.catch_warnings():  # unnamed axes: named below
        warnings.filterwarnings("ignore", category=ad.ImplicitModificationWarning)
        adata = read_loom(
            path,
            sparse=True,
            obs_names=cells or "",
            var_names=genes or "",
            X_name="",  # X is the main matrix (anndata's default would take a spliced layer)
            **({"validate": False} if no_attrs else {}),
        )
    if cells is None:
        adata.obs_names = [f"cell_{i}" for i in range(adata.n_obs)]
    if genes is None:
        adata.var_names = [f"gene_{i}" for i in range(adata.n_vars)]
    return adata


def _counts_layers_hint(adata: ad.AnnData, exclude: str | None = None) -> str:
    """Which layers (and ``.raw``) hold whole non-negative numbers, as advice to set ``layer``;
    ``exclude`` is the layer (or ``".raw"``) already read."""
    whole = [
        name for name in adata.layers if name != exclude and _is_whole(_values(adata.layers[name]))
    ]
    raw = adata.raw is not None and exclude != ".raw" and _is_whole(_values(adata.raw.X))
    hints = []
    if raw:
        hints.append(
            ".raw holds whole numbers (the counts, as other toolkits export them) — read them "
            f"with layer: {RAW} (scdsec cluster --layer {RAW})"
        )
    if whole:
        hints.append(
            f"layers that hold whole numbers: {_list_keys(whole)} — name one with "
            f"layer: {whole[0]} (scdsec cluster --layer {whole[0]})"
        )
    if hints:
        return "; ".join(hints)
    return f"no layer holds whole numbers (layers: {_list_keys(list(adata.layers))})" + (
        ", nor does .raw" if adata.raw is not None and exclude != ".raw" else ""
    )


def _values(matrix: sp.spmatrix | np.ndarray) -> np.ndarray:
    return np.asarray(matrix.data if sp.issparse(matrix) else matrix)
