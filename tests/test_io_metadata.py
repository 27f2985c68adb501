"""Cell metadata tables (scdsec.io.metadata): read and joined by cell name."""

from __future__ import annotations

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from scdsec import InputError
from scdsec.io.metadata import add_cell_metadata, read_cell_metadata


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cells.tsv", "cell\ttype\tdonor\nA\tT cell, CD4\td1\nB\tB cell\td2\n"),
        ("cells.csv", 'cell,type,donor\nA,"T cell, CD4",d1\nB,B cell,d2\n'),
        ("cells.txt", "cell\ttype\tdonor\nA\tT cell, CD4\td1\nB\tB cell\td2\n"),
        ("cells.tsv.gz", "\ttype\tdonor\nA\tT cell, CD4\td1\nB\tB cell\td2\n"),
    ],
)
def test_a_table_is_read_whatever_its_separator(tmp_path, name, text):
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    table = read_cell_metadata(path)
    assert list(table.index) == ["A", "B"] and list(table.columns) == ["type", "donor"]
    assert table.loc["A", "type"] == "T cell, CD4"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"cell\ttype\n", "needs a header and, per cell, its name and at least one column"),
        (b"cell\nA\nB\n", "needs a header and, per cell, its name and at least one column"),
        (b"cell\ttype\nA\tx\nA\ty\n", "1 cell names appear more than once"),
    ],
)
def test_a_table_that_is_not_one_row_per_cell_is_refused(tmp_path, content, expected):
    path = tmp_path / "cells.tsv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected) as err:
        read_cell_metadata(path)
    assert str(err.value).startswith(str(path)) and len(str(err.value).splitlines()) == 1


def test_join_by_name_counts_the_cells_and_never_overwrites(tmp_path, caplog):
    adata = ad.AnnData(np.ones((4, 2), dtype=np.float32))
    adata.obs_names = ["c1", "c2", "c3", "c4"]
    adata.obs["batch"] = "b"
    table = pd.DataFrame({"type": ["x", "y", "z"]}, index=["c3", "c1", "other"])
    with caplog.at_level("INFO"):
        add_cell_metadata(adata, table, source="cells.tsv")
    types = adata.obs["type"]
    assert types["c1"] == "y" and types["c3"] == "x"
    assert pd.isna(types["c2"]) and pd.isna(types["c4"])
    assert "cell metadata (type) for 2 of 4 cells; 1 rows name no cell" in caplog.text
    assert "2 of 4 cells are not in the cell metadata table" in caplog.text
    with pytest.raises(InputError, match="column 'batch' of the cell metadata table is already"):
        add_cell_metadata(adata, pd.DataFrame({"batch": ["q"]}, index=["c1"]), source="t.tsv")
    with pytest.raises(InputError, match=r"none of the cell metadata table's 1 cell names"):
        add_cell_metadata(adata, pd.DataFrame({"k": ["q"]}, index=["zz"]), source="t.tsv")
