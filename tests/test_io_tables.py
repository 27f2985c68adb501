"""CSV/TSV tables: id columns are row names whatever their values; featureCounts tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scdsec.io import detect_format, read_counts


def _counts(n_genes: int, n_cells: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(1.0, size=(n_genes, n_cells))


@pytest.mark.parametrize(
    "corner",
    ["GeneID", "Geneid", "gene_id", "Entrez_ID", "EntrezGeneID", "Gene stable ID", "ID", "name"]
    + ["X", "Unnamed: 0", "...1"],  # what R, pandas and readr name an index without header
)
def test_numeric_gene_ids_under_an_id_corner_are_gene_names(tmp_path, corner: str) -> None:
    """An index column of numbers (Entrez ids) is the genes' names, never a cell."""
    counts = _counts(80, 30)
    ids = list(range(1000, 1080))
    cells = [f"ACGTACGTAC{i:04d}-1" for i in range(30)]
    frame = pd.DataFrame(counts, index=pd.Index(ids, name=corner), columns=cells)
    frame.to_csv(tmp_path / "t.csv")
    adata = read_counts(tmp_path / "t.csv")
    assert adata.shape == (30, 80)
    assert list(adata.var_names[:2]) == ["1000", "1001"] and corner not in adata.obs_names
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)


def test_numeric_cell_ids_as_rows(tmp_path) -> None:
    """The other axis: cells × genes with numeric cell ids under ``cell_id``."""
    counts = _counts(40, 25, seed=1)
    frame = pd.DataFrame(
        counts, index=pd.Index(range(1, 41), name="cell_id"), columns=[f"G{j}" for j in range(25)]
    )
    frame.to_csv(tmp_path / "cells.tsv", sep="\t")
    adata = read_counts(tmp_path / "cells.tsv")
    assert adata.shape == (40, 25) and "cell_id" not in adata.var_names
    assert adata.obs_names[0] == "1"
    np.testing.assert_array_equal(adata.X.toarray(), counts)


def test_first_gene_column_is_not_taken_for_an_index(tmp_path) -> None:
    """A header word that names no ids (a gene) leaves a numeric first column as counts."""
    counts = _counts(20, 30, seed=2).T  # cells × genes, no cell names
    frame = pd.DataFrame(counts, columns=[f"Pid{j}" for j in range(20)])
    frame.to_csv(tmp_path / "noindex.csv", index=False)
    adata = read_counts(tmp_path / "noindex.csv", cells_as="rows")
    assert adata.shape == (30, 20) and adata.var_names[0] == "Pid0"


def _featurecounts(path: Path, comment: bool, n_genes: int = 60, n_cells: int = 12) -> np.ndarray:
    counts = _counts(n_genes, n_cells, seed=3)
    cells = [f"/data/bam/plate1_{chr(65 + i // 12)}{i % 12 + 1:02d}.bam" for i in range(n_cells)]
    annotation = pd.DataFrame(
        {
            "Chr": [f"chr{1 + g % 5};chr{1 + g % 5}" for g in range(n_genes)],
            "Start": [f"{100 * g};{100 * g + 50}" for g in range(n_genes)],
            "End": [f"{100 * g + 40};{100 * g + 90}" for g in range(n_genes)],
            "Strand": ["+;+"] * n_genes,
            "Length": [800 + g for g in range(n_genes)],
        },
        index=pd.Index([f"ENSG{g:011d}" for g in range(n_genes)], name="Geneid"),
    )
    table = pd.concat(
        [annotation, pd.DataFrame(counts, index=annotation.index, columns=cells)], axis=1
    )
    with path.open("w") as fh:
        if comment:
            fh.write('# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "x.gtf"\n')
        table.to_csv(fh, sep="\t")
    return counts


@pytest.mark.parametrize("comment", [True, False], ids=["with-comment", "without-comment"])
def test_featurecounts_table(tmp_path, caplog, comment: bool) -> None:
    """The ``#`` line is skipped; Chr Start End Strand Length go to var and are logged."""
    path = tmp_path / "counts.txt"
    counts = _featurecounts(path, comment)
    assert detect_format(path) == "tsv"
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(path)
    assert adata.shape == (12, 60)
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)
    assert list(adata.var.columns) == ["Chr", "Start", "End", "Strand", "Length"]
    assert adata.var["Length"].iloc[1] == 801 and adata.var_names[0] == "ENSG00000000000"
    assert not any(name in adata.obs_names for name in ("Chr", "Start", "Length"))
    assert "Chr, Start, End, Strand, Length" in caplog.text
    assert ("comment line" in caplog.text) == comment


def test_annotation_columns_decide_orientation_without_a_corner_word(tmp_path) -> None:
    """Gene annotation columns in the header make the rows genes, even under a bare corner."""
    counts = _counts(50, 8, seed=4)
    frame = pd.DataFrame(counts, columns=[f"s{i}" for i in range(8)])
    frame.insert(0, "gene_biotype", "protein_coding")
    frame.insert(0, "Length", np.arange(50) + 500)
    frame.index = [f"g{i}" for i in range(50)]
    frame.to_csv(tmp_path / "bulkish.csv")
    adata = read_counts(tmp_path / "bulkish.csv")
    assert adata.shape == (8, 50) and list(adata.var.columns) == ["Length", "gene_biotype"]
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)


def test_case_11_numeric_gene_ids(shared_cases) -> None:
    case = shared_cases / "11-numeric-gene-ids-csv"
    adata = read_counts(case / "entrez_genes_by_cells.csv")
    mtx = read_counts(case / "entrez_mtx")
    assert adata.shape == (300, 250) and "GeneID" not in adata.obs_names
    assert list(adata.var_names) == list(mtx.var_names)
    assert list(adata.obs_names) == list(mtx.obs_names)
    np.testing.assert_array_equal(adata.X.toarray(), mtx.X.toarray())


@pytest.mark.parametrize("name", ["counts.txt", "counts_nocomment.txt"])
def test_case_12_featurecounts(shared_cases, name: str) -> None:
    case = shared_cases / "12-featurecounts-table"
    adata = read_counts(case / name)
    truth = pd.read_csv(case / "truth.tsv", sep="\t")
    assert adata.shape == (200, 300) and list(adata.obs_names) == list(truth["cell"])
    assert {"Chr", "Start", "End", "Strand", "Length"} <= set(adata.var.columns)


@pytest.mark.parametrize("cells_as", ["rows", "columns"])
def test_log_names_the_axis_the_barcodes_label(tmp_path, caplog, cells_as: str) -> None:
    """Kind 9: when barcodes decide, the log says they label the axis that holds the cells."""
    counts = _counts(20, 15, seed=5)  # generic gene names, barcodes for cells
    frame = pd.DataFrame(
        counts,
        index=[f"g{i}" for i in range(20)],
        columns=[f"ACGTACGTAC{i:03d}" for i in range(15)],
    )
    (frame if cells_as == "columns" else frame.T).to_csv(tmp_path / "b.csv")
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(tmp_path / "b.csv")
    assert adata.shape == (15, 20)
    assert f"cells are the table's {cells_as} (cell barcodes label the {cells_as})" in caplog.text


def test_numbered_cells_under_an_id_corner(tmp_path) -> None:
    """Numbers on both axes: the id corner makes the first line a header and column 1 ids."""
    counts = _counts(40, 12, seed=6)
    frame = pd.DataFrame(
        counts, index=pd.Index(range(501, 541), name="GeneID"), columns=range(1, 13)
    )
    frame.to_csv(tmp_path / "numbers.csv")
    adata = read_counts(tmp_path / "numbers.csv")
    assert adata.shape == (12, 40)
    assert adata.obs_names[0] == "1" and adata.var_names[0] == "501"
    np.testing.assert_array_equal(adata.X.toarray(), counts.T)
