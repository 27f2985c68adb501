"""Cell metadata in a separate table, joined to the counts by cell name.

Labs often share a genes × cells matrix plus a table of the cells (cell type, sample, donor):
the dataset key ``metadata`` (``scdsec cluster --metadata``) names that table, and ``labels``
may then name one of its columns. The table is CSV or TSV (plain, ``.gz``, ``.bz2``, ``.xz``,
``.zip``), one row per cell, a header row, and the cell names in its first column (as R's
``write.csv`` and pandas' ``to_csv`` write them). Files that keep the sample only in the cell
names (``p1:A1``) give it with the dataset key ``batch_pattern`` (:func:`batch_from_cell_names`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import anndata as ad
import pandas as pd

from .._errors import InputError

__all__ = ["add_cell_metadata", "batch_from_cell_names", "read_cell_metadata"]

_log = logging.getLogger(__name__)
_COMPRESSED = {".gz", ".bz2", ".xz", ".zip", ".zst"}


def read_cell_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read a cell metadata table: one row per cell, the cell names in the first column.

    Parameters
    ----------
    path
        CSV or TSV file, optionally compressed: the separator is a comma for ``.csv``, a tab
        for ``.tsv``/``.tab``, else detected.

    Returns
    -------
    The table with the cell names (as strings) as index and the other columns as read by
    pandas.

    Raises
    ------
    InputError
        The file is missing or is not a table of a header and rows, has no column besides the
        cell names, or names a cell twice.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: cell metadata table not found")
    suffixes = [x.lower() for x in path.suffixes if x.lower() not in _COMPRESSED]
    sep = {".csv": ",", ".tsv": "\t", ".tab": "\t"}.get(suffixes[-1] if suffixes else "")
    try:  # the separator from the name where it tells, else detected (csv.Sniffer)
        table = pd.read_csv(path, sep=sep, engine=None if sep else "python", index_col=0)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{path}: not a CSV/TSV cell metadata table (a header, then one row per cell with "
            f"its name first): {first}"
        ) from None
    if table.shape[1] == 0 or len(table) == 0:
        raise InputError(
            f"{path}: the cell metadata table needs a header and, per cell, its name and at "
            f"least one column (found {len(table)} rows × {table.shape[1]} columns)"
        )
    table.index = table.index.astype(str).str.strip()
    repeated = table.index[table.index.duplicated()].unique()
    if len(repeated):
        raise InputError(
            f"{path}: {len(repeated)} cell names appear more than once in the first column "
            f"(e.g. {repeated[0]!r}); a metadata table needs one row per cell"
        )
    return table


def add_cell_metadata(adata: ad.AnnData, table: pd.DataFrame, *, source: str | os.PathLike) -> None:
    """Join ``table`` (:func:`read_cell_metadata`) to ``adata.obs`` by cell name, in place.

    Every column of the table becomes an ``obs`` column; cells the table does not list get
    missing values (unlabelled, if the labels come from it), and are counted in the log.

    Parameters
    ----------
    adata
        The counts, cells named by ``obs_names``.
    table
        Cells as rows, indexed by cell name.
    source
        The table's file, to name it in messages.

    Raises
    ------
    InputError
        No cell name of the table is a cell of the counts (the message gives both counts and
        an example of each), or a column of the table is already an ``obs`` column.
    """
    matched = adata.obs_names.isin(table.index)
    n_matched = int(matched.sum())
    if n_matched == 0:
        raise InputError(
            f"{source}: none of the cell metadata table's {len(table)} cell names (first column, "
            f"e.g. {table.index[0]!r}) is a cell of the counts ({adata.n_obs} cells, e.g. "
            f"{adata.obs_names[0]!r}); the table's first column must hold the cells' names"
        )
    clashes = [c for c in table.columns if c in adata.obs.columns]
    if clashes:
        raise InputError(
            f"{source}: column {clashes[0]!r} of the cell metadata table is already a cell "
            f"annotation of the counts; rename it in the table"
        )
    joined = table.reindex(adata.obs_names)
    for column in table.columns:
        adata.obs[column] = joined[column].to_numpy()
    extra = len(table) - int(table.index.isin(adata.obs_names).sum())
    _log.info(
        "%s: cell metadata (%s) for %d of %d cells%s",
        source,
        ", ".join(map(str, table.columns)),
        n_matched,
        adata.n_obs,
        f"; {extra} rows name no cell of the counts" if extra else "",
    )
    if n_matched < adata.n_obs:
        _log.warning(
            "%s: %d of %d cells are not in the cell metadata table: their metadata (and labels, "
            "if they come from it) are missing",
            source,
            adata.n_obs - n_matched,
            adata.n_obs,
        )


def read_counts_with_metadata(
    path: str | os.PathLike,
    *,
    metadata: str | os.PathLike | None = None,
    labels: str | None = None,
    **options,
) -> ad.AnnData:
    """:func:`scdsec.io.read_counts` of ``path``, with the cell metadata table ``metadata``
    (:func:`read_cell_metadata`) joined to its ``obs`` by cell name (:func:`add_cell_metadata`).

    ``labels`` may name a column of the table or a label of the counts file itself; either way
    its values are copied to ``obs['scdsec_true_label']`` as ``read_counts`` does. ``options``
    are ``read_counts``'s other keywords (``format``, ``cells_as``, ``layer``, …).

    Raises
    ------
    InputError
        What the reader and the two functions above raise; a ``labels`` found neither in the
        table nor in the counts names both.
    """
    from .readers import _as_labels, read_counts

    if metadata is None:
        return read_counts(path, labels=labels, **options)
    table = read_cell_metadata(metadata)
    from_table = labels is not None and labels in table.columns
    try:
        adata = read_counts(path, labels=None if from_table else labels, **options)
    except InputError as err:
        if labels is None or from_table or repr(labels) not in str(err):
            raise
        columns = ", ".join(repr(str(c)) for c in table.columns[:20])
        raise InputError(
            f"{err}; nor is it a column of the cell metadata table {metadata} ({columns})"
        ) from None
    add_cell_metadata(adata, table, source=metadata)
    if from_table:
        adata.obs["scdsec_true_label"] = _as_labels(adata.obs[labels])
    return adata


def batch_from_cell_names(
    adata: ad.AnnData, pattern: str, batch_key: str, *, setting: str = "batch_pattern"
) -> None:
    """Write each cell's batch, the first group of ``pattern`` searched in its name, to
    ``adata.obs[batch_key]`` (categorical), in place.

    For files that keep the sample, plate or donor only in the cell names, e.g. ``p1:A1``
    with the pattern ``^([^:]+):``, or a 10x barcode's suffix ``AAAC…-1`` with ``-(\\d+)$``.
    ``setting`` is how the messages name the pattern (``datasets.<name>.batch_pattern``,
    ``--batch-pattern``).

    Raises
    ------
    InputError
        ``pattern`` is not a regular expression with a group, ``batch_key`` is already an
        ``obs`` column, or a cell name has no match (the message gives how many and one of
        them).
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise InputError(f"{setting} '{pattern}' is not a regular expression: {err}") from None
    if regex.groups < 1:
        raise InputError(
            f"{setting} '{pattern}' has no group: put the batch in parentheses, e.g. ^([^:]+):"
        )
    if batch_key in adata.obs.columns:
        raise InputError(
            f"{setting}: obs[{batch_key!r}] already exists; give the batch key another name "
            f"for the column the pattern makes, or use the existing column without {setting}"
        )
    found = [regex.search(str(name)) for name in adata.obs_names]
    missing = [str(n) for n, m in zip(adata.obs_names, found, strict=True) if m is None]
    if missing:
        raise InputError(
            f"{setting} '{pattern}' matches no part of {len(missing)} of {adata.n_obs} "
            f"cell names (e.g. {missing[0]!r})"
        )
    batches = [m.group(1) for m in found]
    adata.obs[batch_key] = pd.Categorical(batches, categories=sorted(set(batches)))
    _log.info(
        "obs[%r] from the cell names (%s): %s",
        batch_key,
        pattern,
        ", ".join(f"{b} {n}" for b, n in adata.obs[batch_key].value_counts().items()),
    )
