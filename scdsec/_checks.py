"""Checks of settings against the data's shape, light enough for the Snakefile to import
when it loads the config (no numpy, no anndata)."""

from __future__ import annotations

import numbers

from ._errors import InputError

__all__ = ["check_batch_key", "check_cell_count"]


def check_cell_count(
    n_cells: int,
    *,
    n_neighbors: int | None = None,
    n_clusters: int | str | None = None,
    where: str | None = None,
    cells: str = "cells",
    neighbors_key: str = "n_neighbors",
    clusters_key: str = "n_clusters",
) -> None:
    """Refuse ``n_cells`` cells when they are too few for the graph or the clusters asked for.

    A kNN graph of ``n_neighbors`` neighbours needs at least ``n_neighbors + 1`` cells, and
    ``n_clusters`` clusters at least ``n_clusters`` cells. The command line, the workflow's
    steps (as soon as the cells after QC are known), :func:`build_knn_graph` and
    :class:`scdsec.model.SCDSEC` all check with this one function.

    Parameters
    ----------
    n_cells
        The number of cells.
    n_neighbors, n_clusters
        What the cells must hold; None (or ``"auto"`` clusters) is not checked.
    where
        What the cells are, to begin the message (``"dataset pbmc"``, a file name).
    cells
        How the message calls the cells (``"cells after QC"``).
    neighbors_key, clusters_key
        The setting the user changes, as the message names it (``"graph.n_neighbors"``,
        ``"datasets.pbmc.n_clusters"``, ``"--n-clusters"``).

    Raises
    ------
    InputError
        One line: ``where``, the cell count, the key, its value and the largest value that fits.
    """
    prefix = f"{where}: " if where else ""
    if n_neighbors is not None and n_cells < int(n_neighbors) + 1:
        fits = (
            f"set {neighbors_key} to at most {n_cells - 1}"
            if n_cells >= 2
            else "a graph needs at least 2 cells"
        )
        raise InputError(
            f"{prefix}{n_cells} {cells}, too few for {neighbors_key} = {n_neighbors}: a kNN "
            f"graph of K neighbours needs at least K + 1 cells ({int(n_neighbors) + 1}); {fits}"
        )
    if isinstance(n_clusters, numbers.Integral) and n_cells < int(n_clusters):
        raise InputError(
            f"{prefix}{n_cells} {cells}, fewer than {clusters_key} = {n_clusters} clusters; "
            f"set {clusters_key} to at most {n_cells}"
        )


def h5ad_n_obs(path) -> int | None:
    """The number of cells of an ``.h5ad`` file, read from its ``obs`` index alone (h5py,
    imported here); None for another file, a folder or anything unreadable — the caller then
    learns the cells when the file is read."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() != ".h5ad" or not path.is_file():
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            obs = f["obs"]
            index = obs[obs.attrs["_index"]] if isinstance(obs, h5py.Group) else obs
            return int(index.shape[0])
    except Exception:  # noqa: BLE001 - any surprise: not known before reading
        return None


def check_batch_key(obs, key: str, *, setting: str = "batch_key", min_batches: int = 2):
    """The batches of the cells: ``obs[key]`` as a categorical of strings, checked.

    The one check of a batch column (scanpy's and scvi-tools' ``batch_key``: a sample, donor,
    plate or platform per cell) that every step given one makes, so that all refuse the same
    columns with the same message.

    Parameters
    ----------
    obs
        The cells' annotations (``adata.obs``), a :class:`pandas.DataFrame`.
    key
        The column that holds each cell's batch.
    setting
        The setting the user changes, as the message names it (``"batch_key"``,
        ``"datasets.pbmc.batch_key"``, ``"--batch-key"``).
    min_batches
        The fewest batches the cells may hold: 2 for a batch key given to fit (one batch is
        no batch), 1 for new cells of a model that knows its batches already.

    Returns
    -------
    A :class:`pandas.Categorical` of length ``n_cells``: each cell's batch as a string, the
    categories the batches present, sorted (as strings: ``"1" < "10" < "2"``).

    Raises
    ------
    InputError
        ``key`` is not a column of ``obs``, a cell has no batch (NaN, None, empty), or the
        cells hold fewer than ``min_batches`` batches; one line naming the column and what
        is wrong with it.
    """
    import pandas as pd

    if not isinstance(key, str) or not key:
        raise InputError(f"{setting} = {key!r}: expected the name of a column of obs")
    if key not in obs.columns:
        shown = ", ".join(map(repr, list(map(str, obs.columns))[:10]))
        more = f" (and {len(obs.columns) - 10} more)" if len(obs.columns) > 10 else ""
        raise InputError(
            f"{setting} = {key!r}: obs has no column {key!r}; its columns are "
            f"{shown or 'none'}{more}"
        )
    values = obs[key]
    missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise InputError(
            f"obs[{key!r}] has no batch for {int(missing.sum())} of {len(values)} cells "
            f"(missing or empty values; {setting} = {key!r}): give every cell a batch, or "
            "remove those cells"
        )
    text = values.astype(str).to_numpy()
    batches = sorted(set(text))
    if len(batches) < min_batches:
        one = f"one value ({batches[0]!r})" if batches else "no values (no cells)"
        raise InputError(
            f"obs[{key!r}] has {one}: a batch key needs at least 2 batches "
            f"({setting} = {key!r}; leave it unset for a single batch)"
        )
    return pd.Categorical(text, categories=batches)
