"""CSV / TSV text tables (plain, gzip or a one-file zip), cells as rows or as columns."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .._errors import InputError
from ._common import _content_head, _csr32, _list_keys, _Parsed, _zip_names

_log = logging.getLogger(__name__)

# What orients a CSV/TSV table (see read_counts): cell barcodes, Ensembl gene ids, the
# mitochondrial and ribosomal-protein gene symbols every transcriptome holds (human, mouse),
# and the word in the table's corner cell, which names what the rows are.
_BARCODE = re.compile(r"[ACGT]{10,}")
_GENE_ID = re.compile(r"ENS[A-Z]*G\d{6,}")
_HOUSEKEEPING_SYMBOL = re.compile(r"^(mt-|MT-|Mt-|RP[LS]\d|Rp[ls]\d)")
_MIN_HOUSEKEEPING_SYMBOLS = 3
_CELL_WORDS = frozenset("cell cells cellid cellname cellbarcode barcode barcodes".split())
_GENE_WORDS = frozenset(
    "gene genes geneid geneids genename genesymbol symbol feature features "
    "entrez entrezid ensembl ensemblid".split()
)
# A corner cell that names identifiers makes the first column the row names, whether its values
# are words or numbers (Entrez gene ids, cell numbers): its last word is one of these (GeneID,
# gene_id, EntrezGeneID, gene_short_name, Gene stable ID, cell_name, ID, Name, …).
_ID_WORDS = frozenset("id ids identifier name names index symbol symbols accession".split())
# Words of such a corner that say what the rows are.
_CELL_CORNER_WORDS = frozenset("cell cells barcode barcodes".split())
_GENE_CORNER_WORDS = frozenset(
    "gene genes feature features transcript transcripts probe probes entrez ensembl symbol "
    "symbols".split()
)


def _corner_words(corner: str | None) -> list[str]:
    """The corner cell's words, lower-case: split at non-letters and camelCase (``GeneID`` →
    ``gene``, ``id``); none when it holds a digit (a gene such as ``Pid1`` is no corner word)."""
    text = (corner or "").strip()
    if not text or any(c.isdigit() for c in text) or len(text) > 40:
        return []
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", text)]


# What tools name an index column whose header was empty, when they write the table again:
# R's read.csv (``X``), pandas (``Unnamed: 0``), readr (``...1``). Such a corner is empty.
_UNNAMED_CORNER = re.compile(r"X|Unnamed: ?\d+|\.\.\.1")


def _unnamed(corner: str | None) -> bool:
    """True if the corner cell is empty, or the name a tool gives an index without a header."""
    text = (corner or "").strip()
    return not text or _UNNAMED_CORNER.fullmatch(text) is not None


def _names_ids(corner: str | None) -> bool:
    """True if the corner cell names the rows: a word of :data:`_CELL_WORDS` or
    :data:`_GENE_WORDS` (``Geneid``, ``cell``), or words that end in one of
    :data:`_ID_WORDS`."""
    if re.sub(r"[^a-z]", "", (corner or "").lower()) in _CELL_WORDS | _GENE_WORDS:
        return True
    words = _corner_words(corner)
    return bool(words) and len(words) <= 4 and words[-1] in _ID_WORDS


# Gene annotation columns that tools write beside the counts of a genes × cells table
# (featureCounts: Chr Start End Strand Length; R/Bioconductor: seqnames width; biomaRt-style
# symbols, biotypes, descriptions): compared lower-case with everything but letters removed.
_GENE_ANNOTATIONS = frozenset(
    "chr chrom chromosome seqnames seqname start end stop strand length width genelength "
    "effectivelength biotype genebiotype genetype description genename genesymbol symbol "
    "externalgenename hgncsymbol mgisymbol".split()
)


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
    annotations: Sequence[str] = (),
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
    words = set(_corner_words(corner)) if _names_ids(corner) else set()
    cells, genes = bool(words & _CELL_CORNER_WORDS), bool(words & _GENE_CORNER_WORDS)
    if word in _CELL_WORDS or word in _GENE_WORDS or cells != genes:
        choice = "rows" if word in _CELL_WORDS or (cells and not genes) else "columns"
        return choice, f"the corner cell reads {corner!r}"
    if annotations:
        return "columns", f"the header holds gene annotation columns ({', '.join(annotations)})"
    columns_say = {
        "columns": _mostly(col_names, _BARCODE) or _look_like_genes(row_names),
        "rows": _mostly(row_names, _BARCODE) or _look_like_genes(col_names),
    }
    if columns_say["columns"] != columns_say["rows"]:
        choice = "columns" if columns_say["columns"] else "rows"
        genes = row_names if choice == "columns" else col_names
        other = "rows" if choice == "columns" else "columns"
        if _look_like_genes(genes):  # the genes lie on the axis the cells do not
            return choice, f"gene names label the {other}"
        return choice, f"cell barcodes label the {choice}"
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


def _annotation_columns(col_names: list[str] | None, requested: list[str]) -> list[str]:
    """The header's well-known gene annotation columns (:data:`_GENE_ANNOTATIONS`)."""
    return [
        n
        for n in col_names or []
        if n not in requested and re.sub(r"[^a-z]", "", n.lower()) in _GENE_ANNOTATIONS
    ]


def _first_lines(path: Path, sep: str) -> tuple[int, list[str] | None, list[str] | None]:
    """The number of leading ``#`` comment lines (featureCounts' command line), then the first
    two lines of the table, split into fields."""
    with _open_table(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        n_comments, head = 0, []
        for line in text:
            if not head and line.startswith("#"):
                n_comments += 1
                continue
            head.append(line)
            if len(head) == 2:
                break
    rows = list(csv.reader(head, delimiter=sep))
    rows += [None] * (2 - len(rows))
    return n_comments, rows[0], rows[1]


def _read_table(
    path: Path, sep: str, cells_as: str, requested: list[str], labels: str | None
) -> _Parsed:
    n_comments, first, second = _first_lines(path, sep)
    if first is None or second is None:
        raise InputError(f"{path}: empty count matrix (fewer than two lines)")
    if n_comments:
        _log.info("%s: skipped %d comment line(s) starting with '#'", path, n_comments)
    short_header = len(first) == len(second) - 1  # R's write.table: no corner cell
    has_header = (
        _unnamed(first[0])
        or short_header
        or not all(_is_number(v) for v in first[1:])
        or _names_ids(first[0])  # GeneID over cells numbered 1, 2, …
    )
    if has_header:
        # An index is an index whether its values are words or numbers: the corner cell names
        # it (GeneID, cell_id, …) or its values are not numbers.
        has_index = (
            _unnamed(first[0])
            or short_header
            or (first[0] not in requested and (not _is_number(second[0]) or _names_ids(first[0])))
        )
        col_names = first if short_header or not has_index else first[1:]
        if has_index and _is_number(second[0]) and not _unnamed(first[0]) and not short_header:
            _log.info(
                "%s: the first column (%r) holds row names, not counts: its header names ids",
                path,
                first[0],
            )
    else:
        has_index, col_names = not _is_number(first[0]), None
    with _open_table(path) as stream:
        df = pd.read_csv(
            stream,
            sep=sep,
            header=None,
            skiprows=n_comments + (1 if has_header else 0),
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
    annotations = _annotation_columns(col_names, requested)
    reason = f"cells_as={cells_as!r}"
    if cells_as == "auto":
        corner = first[0] if has_header and has_index and not short_header else None
        choice, reason = _orientation(col_names, row_names, corner, requested, annotations)
        if choice is None:
            raise InputError(f"{path}: {reason}")
        cells_as = choice
    var = None
    if cells_as == "columns" and annotations:
        # Gene annotations beside the counts (featureCounts' Chr Start End Strand Length):
        # set aside in var, never read as cells.
        keep = [n not in annotations for n in col_names]
        var = df.loc[:, [not k for k in keep]].reset_index(drop=True)
        df = df.loc[:, keep]
        col_names = [n for n, k in zip(col_names, keep, strict=True) if k]
        _log.info(
            "%s: set aside %d gene annotation column(s) (%s): kept in var, not read as cells",
            path,
            len(annotations),
            ", ".join(annotations),
        )
    table = df.set_axis(col_names, axis=1) if col_names else df
    _check_requested(path, requested, labels, table if cells_as == "rows" else table.T)
    if cells_as == "rows":
        parsed = _table_cells_as_rows(path, df, row_names, col_names, requested)
    else:
        parsed = _table_cells_as_columns(path, df, row_names, col_names, requested, var)
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
    var: pd.DataFrame | None = None,
) -> _Parsed:
    """Cells are the columns; ``var`` holds the gene annotation columns set aside."""
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
    if var is not None and is_meta is not None:
        var = var.loc[~is_meta].reset_index(drop=True)
    return _Parsed(
        X=_csr32(counts.to_numpy().T, path),
        obs_names=col_names,
        var_names=gene_names,
        obs=obs,
        var=var,
        available=keys,
    )


def _maybe_numeric(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column
