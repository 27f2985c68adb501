"""read_counts / detect_format on small files written in the real layouts by other tools."""

from __future__ import annotations

import csv
import gzip
import logging
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from bad_inputs import digest
from scdsec import InputError
from scdsec.io import _common, detect_format, read_counts

N_CELLS, N_GENES = 40, 30
DUP_FROM, DUP_AT = 3, 7  # gene DUP_AT repeats the symbol of gene DUP_FROM
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Truth:
    counts: np.ndarray  # cells × genes, int64
    cells: list[str]
    genes: list[str]  # as written, with one duplicated symbol
    unique_genes: list[str]  # what read_counts must return
    gene_ids: list[str]
    labels: list[str]
    batch: list[int]


@pytest.fixture(scope="module")
def truth() -> Truth:
    rng = np.random.default_rng(7)
    shape = (N_CELLS, N_GENES)
    counts = rng.negative_binomial(2, 0.4, shape) * (rng.random(shape) < 0.6)  # extra zeros
    cells = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(N_CELLS)]
    genes = [f"GENE{i}" for i in range(N_GENES)]
    genes[DUP_AT] = genes[DUP_FROM]
    unique_genes = list(genes)
    unique_genes[DUP_AT] = genes[DUP_FROM] + "-1"
    labels = list(np.array(["B cell", "T cell", "NK"])[rng.integers(0, 3, N_CELLS)])
    counts = counts.astype(np.int64)
    counts.setflags(write=False)  # tests must not alter the shared truth
    return Truth(
        counts=counts,
        cells=cells,
        genes=genes,
        unique_genes=unique_genes,
        gene_ids=[f"ENSG{i:011d}" for i in range(N_GENES)],
        labels=labels,
        batch=list(rng.integers(1, 3, N_CELLS)),
    )


@dataclass
class Case:
    path: Path
    fmt: str
    kwargs: dict = field(default_factory=dict)
    cells: bool = True  # the file names cells
    genes: bool = True  # the file names genes (with the duplicated symbol)
    labels: list[str] | None = None  # expected obs["scdsec_true_label"]
    gene_ids: bool = False  # var["gene_ids"] expected
    obs_columns: tuple[str, ...] = ()


def _bytes(values: list[str]) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype="S")


# --------------------------------------------------------------------------- writers


def write_h5ad(d: Path, t: Truth) -> Case:
    obs = pd.DataFrame({"cell_type": t.labels, "batch": t.batch}, index=t.cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about the duplicated var name
        adata = ad.AnnData(sp.csr_matrix(t.counts), obs=obs, var=pd.DataFrame(index=t.genes))
    adata.write_h5ad(d / "anndata_file")
    return Case(
        d / "anndata_file",
        "h5ad",
        {"labels": "cell_type", "metadata_columns": ["batch"]},
        labels=t.labels,
        obs_columns=("cell_type", "batch"),
    )


def _features(t: Truth) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """10x v3 features (two antibody ones interleaved) and the features × cells counts."""
    features = [(gid, g, "Gene Expression") for gid, g in zip(t.gene_ids, t.genes, strict=True)]
    features.insert(12, ("CD3_TotalSeqB", "CD3", "Antibody Capture"))
    features.insert(0, ("CD4_TotalSeqB", "CD4", "Antibody Capture"))
    is_gene = np.array([f[2] == "Gene Expression" for f in features])
    full = np.zeros((len(features), N_CELLS), dtype=np.int64)
    full[is_gene] = t.counts.T
    full[~is_gene] = np.arange(2 * N_CELLS).reshape(2, N_CELLS) + 100
    return features, full


def write_10x_h5_v3(d: Path, t: Truth) -> Case:
    features, full = _features(t)
    m = sp.csc_matrix(full)  # genes × cells, one indptr entry per cell
    with h5py.File(d / "tenx_v3", "w") as f:
        g = f.create_group("matrix")
        g["data"] = m.data.astype(np.int32)
        g["indices"] = m.indices.astype(np.int64)
        g["indptr"] = m.indptr.astype(np.int64)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["barcodes"] = _bytes(t.cells)
        fg = g.create_group("features")
        for key, column in zip(
            ("id", "name", "feature_type"), zip(*features, strict=True), strict=True
        ):
            fg[key] = _bytes(list(column))
        fg["genome"] = _bytes(["GRCh38"] * len(features))
    return Case(d / "tenx_v3", "10x_h5", gene_ids=True)


def write_10x_h5_v2(d: Path, t: Truth) -> Case:
    m = sp.csc_matrix(t.counts.T)
    with h5py.File(d / "tenx_v2", "w") as f:
        g = f.create_group("GRCh38")
        for key, value in (
            ("data", m.data),
            ("indices", m.indices),
            ("indptr", m.indptr),
            ("shape", np.array(m.shape)),
        ):
            g[key] = value
        g["barcodes"], g["genes"], g["gene_names"] = (
            _bytes(t.cells),
            _bytes(t.gene_ids),
            _bytes(t.genes),
        )
    return Case(d / "tenx_v2", "10x_h5", gene_ids=True)


def _write_mtx_folder(folder: Path, t: Truth, v3: bool = True, gz: bool = True) -> None:
    folder.mkdir(parents=True)
    features, full = _features(t)
    if not v3:
        features = [f[:2] for f in features if f[2] == "Gene Expression"]
        full = t.counts.T
    files = {
        "matrix.mtx": None,
        "features.tsv" if v3 else "genes.tsv": "".join("\t".join(f) + "\n" for f in features),
        "barcodes.tsv": "".join(c + "\n" for c in t.cells),
    }
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(full))
    for name, text in files.items():
        if text is not None:
            (folder / name).write_text(text)
        if gz:
            raw = (folder / name).read_bytes()
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            (folder / name).unlink()


def write_mtx_folder(d: Path, t: Truth) -> Case:
    _write_mtx_folder(d / "outs" / "filtered_feature_bc_matrix", t)
    return Case(d / "outs", "10x_mtx", gene_ids=True)


def write_mtx_targz(d: Path, t: Truth) -> Case:
    _write_mtx_folder(d / "src" / "filtered_feature_bc_matrix", t)
    with tarfile.open(d / "tenx_archive", "w:gz") as tf:
        tf.add(d / "src", arcname="sample1")
    shutil.rmtree(d / "src")
    return Case(d / "tenx_archive", "10x_mtx", gene_ids=True)


def write_mtx_zip_v2(d: Path, t: Truth) -> Case:
    _write_mtx_folder(d / "src", t, v3=False, gz=False)
    with zipfile.ZipFile(d / "tenx_zip", "w") as zf:
        for p in sorted((d / "src").iterdir()):
            zf.write(p, f"hg19/{p.name}")
    shutil.rmtree(d / "src")
    return Case(d / "tenx_zip", "10x_mtx", gene_ids=True)


def write_mtx_bare(d: Path, t: Truth) -> Case:
    _write_mtx_folder(d / "m", t)
    return Case(d / "m" / "matrix.mtx.gz", "10x_mtx", gene_ids=True)


def _cells_by_genes_frame(t: Truth) -> pd.DataFrame:
    df = pd.DataFrame(t.counts, index=t.cells, columns=t.genes)
    df.insert(5, "cell_type", t.labels)
    df.insert(12, "batch", t.batch)
    return df


def write_csv_rows(d: Path, t: Truth) -> Case:
    _cells_by_genes_frame(t).rename_axis("cell").to_csv(d / "table_rows")
    return Case(
        d / "table_rows",
        "csv",
        {"labels": "cell_type", "metadata_columns": ["batch"]},
        labels=t.labels,
        obs_columns=("cell_type", "batch"),
    )


def write_csv_zip_rows(d: Path, t: Truth) -> Case:
    _cells_by_genes_frame(t).to_csv(
        d / "table_zip", compression={"method": "zip", "archive_name": "counts.csv"}
    )
    with zipfile.ZipFile(d / "table_zip", "a") as zf:  # as zipped on macOS
        zf.writestr("__MACOSX/._counts.csv", b"\x00\x05\x16\x07 resource fork")
    return Case(
        d / "table_zip",
        "csv",
        {"labels": "cell_type", "metadata_columns": ("batch",)},
        labels=t.labels,
        obs_columns=("cell_type", "batch"),
    )


def write_tsv_gz_columns(d: Path, t: Truth) -> Case:
    # genes × cells; no keys given: the barcode-like header orients it
    pd.DataFrame(t.counts.T, index=t.genes, columns=t.cells).to_csv(
        d / "table_gz", sep="\t", compression="gzip"
    )
    return Case(d / "table_gz", "tsv")


def write_csv_r_style_columns(d: Path, t: Truth) -> Case:
    # R's write.csv of a genes × cells table with a label row: quoted names, no corner cell
    with (d / "table_r").open("w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(t.cells)
        w.writerow(["cell_type", *t.labels])
        for gene, row in zip(t.genes, t.counts.T, strict=True):
            w.writerow([gene, *row.tolist()])
    return Case(
        d / "table_r", "csv", {"labels": "cell_type"}, labels=t.labels, obs_columns=("cell_type",)
    )


def write_csv_columns_explicit(d: Path, t: Truth) -> Case:
    pd.DataFrame(t.counts.T, index=t.genes, columns=t.cells).to_csv(d / "table_cols")
    return Case(d / "table_cols", "csv", {"cells_as": "columns"})


def write_xy(d: Path, t: Truth) -> Case:
    codes = {"B cell": 1, "NK": 2, "T cell": 3}
    with h5py.File(d / "xy_file", "w") as f:
        f.create_dataset("X", data=t.counts.astype(np.float32), compression="gzip", chunks=(8, 30))
        f["Y"] = np.array([codes[v] for v in t.labels], dtype=np.int32)
    return Case(
        d / "xy_file",
        "xy_h5",
        {"labels": "Y"},
        cells=False,
        genes=False,
        labels=[str(codes[v]) for v in t.labels],
        obs_columns=("Y",),
    )


def write_xy_transposed(d: Path, t: Truth) -> Case:
    # as R's rhdf5 writes a cells × genes matrix: genes × cells on disk, float64 labels
    codes = {"B cell": 1.0, "NK": 2.0, "T cell": 3.0}
    with h5py.File(d / "xy_t", "w") as f:
        f.create_dataset("X", data=t.counts.T.astype(np.float64), compression="gzip")
        f["Y"] = np.array([codes[v] for v in t.labels])
        f["B"] = np.array(t.batch)[:, None]  # a column vector, as MATLAB writes it
    return Case(
        d / "xy_t",
        "xy_h5",
        {"labels": "Y", "metadata_columns": ["B"]},
        cells=False,
        genes=False,
        labels=[str(int(codes[v])) for v in t.labels],
        obs_columns=("Y", "B"),
    )


def _cellblast(path: Path, t: Truth, exprs: Callable[[h5py.File], None]) -> Case:
    with h5py.File(path, "w") as f:
        exprs(f)
        obs = f.create_group("obs")
        obs["cell_type1"] = _bytes(t.labels)
        obs["organ"] = _bytes(["Lung"] * N_CELLS)
        var = f.create_group("var")
        var["gene_id"] = _bytes(t.gene_ids)
        f.create_group("uns")
        f["obs_names"] = _bytes(t.cells)
        f["var_names"] = _bytes(t.genes)
    return Case(
        path,
        "cellblast_h5",
        {"labels": "cell_type1"},
        labels=t.labels,
        obs_columns=("cell_type1", "organ"),
    )


def _sparse_group(f: h5py.File, m: sp.csr_matrix) -> None:
    g = f.create_group("exprs")
    g["data"], g["indices"], g["indptr"] = m.data.astype(np.float32), m.indices, m.indptr
    g["shape"] = np.array(m.shape)


def write_cellblast_csr(d: Path, t: Truth) -> Case:
    return _cellblast(d / "cb_csr", t, lambda f: _sparse_group(f, sp.csr_matrix(t.counts)))


def write_cellblast_genes_by_cells(d: Path, t: Truth) -> Case:
    return _cellblast(d / "cb_t", t, lambda f: _sparse_group(f, sp.csr_matrix(t.counts.T)))


def write_cellblast_dense(d: Path, t: Truth) -> Case:
    return _cellblast(d / "cb_dense", t, lambda f: f.create_dataset("exprs", data=t.counts))


WRITERS = [
    write_h5ad,
    write_10x_h5_v3,
    write_10x_h5_v2,
    write_mtx_folder,
    write_mtx_targz,
    write_mtx_zip_v2,
    write_mtx_bare,
    write_csv_rows,
    write_csv_zip_rows,
    write_tsv_gz_columns,
    write_csv_r_style_columns,
    write_csv_columns_explicit,
    write_xy,
    write_xy_transposed,
    write_cellblast_csr,
    write_cellblast_genes_by_cells,
    write_cellblast_dense,
]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__.removeprefix("write_"))
def test_reads_each_layout(writer, truth: Truth, tmp_path: Path) -> None:
    case = writer(tmp_path, truth)
    before = digest(case.path)
    assert detect_format(case.path) == case.fmt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = read_counts(case.path, **case.kwargs)
    assert digest(case.path) == before  # input untouched

    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    assert adata.shape == (N_CELLS, N_GENES)
    np.testing.assert_array_equal(adata.X.toarray(), truth.counts)
    assert adata.uns["scdsec_source"] == {"path": str(case.path), "format": case.fmt}

    expected_cells = truth.cells if case.cells else [f"cell_{i}" for i in range(N_CELLS)]
    expected_genes = truth.unique_genes if case.genes else [f"gene_{i}" for i in range(N_GENES)]
    assert list(adata.obs_names) == expected_cells
    assert list(adata.var_names) == expected_genes
    assert adata.obs_names.is_unique and adata.var_names.is_unique

    dup_warnings = [str(w.message) for w in caught if "duplicated gene names" in str(w.message)]
    if case.genes:
        assert dup_warnings == [
            f"{case.path}: 1 duplicated gene names made unique by appending '-1', '-2', ..."
        ]
    else:
        assert dup_warnings == []

    if case.labels is None:
        assert "scdsec_true_label" not in adata.obs
    else:
        assert isinstance(adata.obs["scdsec_true_label"].dtype, pd.CategoricalDtype)
        assert all(isinstance(c, str) for c in adata.obs["scdsec_true_label"].cat.categories)
        assert adata.obs["scdsec_true_label"].tolist() == case.labels
    for column in case.obs_columns:
        assert column in adata.obs
    if case.gene_ids:
        assert adata.var["gene_ids"].tolist() == truth.gene_ids
    # provenance and labels survive an h5ad round trip
    adata.write_h5ad(tmp_path / "roundtrip.h5ad")


def test_10x_drops_non_gene_features_and_logs(truth, tmp_path, caplog) -> None:
    case = write_10x_h5_v3(tmp_path, truth)
    with caplog.at_level(logging.INFO, logger="scdsec.io"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_counts(case.path)
    assert "CD3" not in adata.var_names and "CD4" not in adata.var_names
    assert set(adata.var["feature_types"]) == {"Gene Expression"}
    assert "dropped 2 features" in caplog.text and "Antibody Capture" in caplog.text


def test_xy_without_labels(truth, tmp_path) -> None:
    with h5py.File(tmp_path / "x_only", "w") as f:
        f["X"] = truth.counts
    adata = read_counts(tmp_path / "x_only")
    np.testing.assert_array_equal(adata.X.toarray(), truth.counts)
    assert list(adata.obs.columns) == []


def test_csv_with_byte_order_mark(tmp_path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff,G1,G2\n1,1,0\n2,0,3\n".encode())  # empty corner after the BOM
    adata = read_counts(path, cells_as="rows")
    assert list(adata.obs_names) == ["1", "2"] and list(adata.var_names) == ["G1", "G2"]
    np.testing.assert_array_equal(adata.X.toarray(), [[1, 0], [0, 3]])


def test_dense_blocks_give_the_same_matrix(truth, tmp_path, monkeypatch) -> None:
    """Reading dense X in many small blocks (both orientations) changes nothing."""
    monkeypatch.setattr(_common, "_BLOCK_VALUES", 50)
    for writer in (write_xy, write_xy_transposed, write_cellblast_dense):
        case = writer(tmp_path, truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = read_counts(case.path)
        np.testing.assert_array_equal(adata.X.toarray(), truth.counts)


# --------------------------------------------------------------------------- CSV orientation


def _gene_table(tmp_path: Path, index: list[str], columns: list[str], values) -> Path:
    path = tmp_path / "orient.csv"
    pd.DataFrame(values, index=index, columns=columns).to_csv(path)
    return path


def test_orientation_is_never_guessed_from_the_shape(tmp_path) -> None:
    """A tall table of generic names does not decide: stop and ask; cells_as decides."""
    values = np.arange(30 * 12).reshape(30, 12) % 5
    path = _gene_table(
        tmp_path, [f"Gene{i}" for i in range(30)], [f"s{j}" for j in range(12)], values
    )
    _assert_input_error(path, "does not say whether cells are rows or columns", "cells_as")
    adata = read_counts(path, cells_as="columns")
    assert adata.shape == (12, 30)
    assert list(adata.obs_names) == [f"s{j}" for j in range(12)]
    np.testing.assert_array_equal(adata.X.toarray(), values.T)
    assert read_counts(path, cells_as="rows").shape == (30, 12)


@pytest.mark.parametrize(
    ("corner", "shape"),
    [
        ("cell", (40, 25)),
        ("Cell_ID", (40, 25)),
        ("barcode", (40, 25)),
        ("gene", (25, 40)),
        ("gene_symbol", (25, 40)),
    ],
)
def test_corner_cell_names_the_rows(tmp_path, corner: str, shape) -> None:
    values = np.arange(40 * 25).reshape(40, 25) % 6
    path = _gene_table(tmp_path, [f"x{i}" for i in range(40)], [f"y{j}" for j in range(25)], values)
    frame = pd.read_csv(path, index_col=0).rename_axis(corner)
    frame.to_csv(path)
    assert read_counts(path).shape == shape


def test_housekeeping_symbols_mark_the_genes(tmp_path) -> None:
    values = np.arange(12 * 30).reshape(12, 30) % 5
    genes = ["MT-CO1", "MT-ND1", "RPL13", "RPS6"] + [f"G{i}" for i in range(26)]
    path = _gene_table(tmp_path, [f"s{i}" for i in range(12)], genes, values)
    adata = read_counts(path)  # the header holds the genes: cells are rows
    assert adata.shape == (12, 30) and adata.var_names[0] == "MT-CO1"
    mouse = _gene_table(
        tmp_path,
        ["mt-Co1", "Rpl13", "Rps6"] + [f"g{i}" for i in range(27)],
        [f"s{j}" for j in range(8)],
        np.ones((30, 8)),
    )
    assert read_counts(mouse).shape == (8, 30)


def test_orientation_is_logged_with_the_counts(tmp_path, caplog) -> None:
    values = np.ones((10, 4))
    path = _gene_table(tmp_path, [f"c{i}" for i in range(10)], [f"g{j}" for j in range(4)], values)
    with caplog.at_level(logging.INFO, logger="scdsec"):
        read_counts(path, cells_as="rows")
    assert "cells are the table's rows (cells_as='rows'): 10 cells × 4 genes" in caplog.text


def test_ensembl_ids_in_first_column_mean_cells_are_columns(tmp_path) -> None:
    values = np.arange(30 * 40).reshape(30, 40) % 7  # wider than tall
    path = _gene_table(
        tmp_path, [f"ENSMUSG{i:011d}" for i in range(30)], [f"s{j}" for j in range(40)], values
    )
    assert read_counts(path).shape == (40, 30)


def test_unnamed_numeric_table_needs_cells_as(tmp_path) -> None:
    values = np.arange(20 * 6).reshape(20, 6) % 4
    path = tmp_path / "bare.tsv"
    pd.DataFrame(values).to_csv(path, sep="\t", header=False, index=False)
    assert detect_format(path) == "tsv"
    _assert_input_error(path, "row names absent, column names absent", "cells_as")
    adata = read_counts(path, cells_as="rows")
    np.testing.assert_array_equal(adata.X.toarray(), values)
    assert adata.obs_names[0] == "cell_0" and adata.var_names[-1] == "gene_5"


def test_numeric_row_names_are_names_not_counts(tmp_path) -> None:
    values = np.arange(20 * 6).reshape(20, 6) % 4
    genes = [f"G{j}" for j in range(6)]
    pandas_style = tmp_path / "pandas.csv"  # empty corner cell, index 0..19
    pd.DataFrame(values, columns=genes).to_csv(pandas_style)
    r_style = tmp_path / "r.tsv"  # R write.table: header one field short, row names 1..20
    lines = ["\t".join(genes)] + [
        "\t".join([str(i + 1), *map(str, row)]) for i, row in enumerate(values)
    ]
    r_style.write_text("\n".join(lines) + "\n")
    for path, first in ((pandas_style, "0"), (r_style, "1")):
        adata = read_counts(path, cells_as="rows")
        np.testing.assert_array_equal(adata.X.toarray(), values)
        assert adata.obs_names[0] == first and list(adata.var_names) == genes


@pytest.mark.parametrize("corner", [True, False], ids=["empty-corner", "short-header"])
def test_numeric_header_is_still_a_header(tmp_path, corner: bool) -> None:
    values = np.arange(6 * 20).reshape(6, 20) % 4
    entrez = [str(1001 + j) for j in range(20)]  # gene names that parse as numbers
    header = ([""] if corner else []) + entrez
    lines = [",".join(header)] + [
        ",".join([f"c{i}", *map(str, row)]) for i, row in enumerate(values)
    ]
    (tmp_path / "entrez.csv").write_text("\n".join(lines) + "\n")
    adata = read_counts(tmp_path / "entrez.csv", cells_as="rows")
    np.testing.assert_array_equal(adata.X.toarray(), values)
    assert list(adata.var_names) == entrez and adata.obs_names[0] == "c0"


# --------------------------------------------------------------------------- errors


def _assert_input_error(path: Path, *fragments: str, **kwargs) -> None:
    with pytest.raises(InputError) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_counts(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file(tmp_path) -> None:
    _assert_input_error(tmp_path / "nope.h5", "no such file")
    with pytest.raises(InputError, match="nope"):
        detect_format(tmp_path / "nope.h5")


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02 binary junk \xff\xfe" * 10, b"just some words\nwithout separators\n", b""],
    ids=["binary", "text", "empty"],
)
def test_unknown_format(tmp_path, content: bytes) -> None:
    path = tmp_path / "mystery.csv"
    path.write_bytes(content)
    _assert_input_error(path)


def test_unknown_hdf5_layout(tmp_path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    _assert_input_error(tmp_path / "other.h5", "unrecognised layout", "something")


def test_wrong_explicit_format(truth, tmp_path) -> None:
    case = write_xy(tmp_path, truth)
    _assert_input_error(case.path, "cannot read as csv", format="csv")
    _assert_input_error(case.path, "unknown format", format="mtx")
    _assert_input_error(case.path, "cannot read as loom", format="loom")


def test_negative_values(truth, tmp_path) -> None:
    df = pd.DataFrame(truth.counts.copy(), index=truth.cells, columns=truth.unique_genes)
    df.iloc[3, 4] = -2
    df.to_csv(tmp_path / "neg.csv")
    _assert_input_error(tmp_path / "neg.csv", "negative")


def test_non_integer_values(truth, tmp_path) -> None:
    adata = ad.AnnData(np.log1p(truth.counts.astype(np.float32)))
    adata.write_h5ad(tmp_path / "norm.h5ad")
    _assert_input_error(tmp_path / "norm.h5ad", "non-integer values in X", "log-transformed")
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f["X"] = truth.counts + 0.5
    _assert_input_error(tmp_path / "half.h5", "non-integer")


def test_missing_values(truth, tmp_path) -> None:
    df = pd.DataFrame(truth.counts, index=truth.cells, columns=truth.unique_genes).astype(float)
    df.iloc[0, 0] = np.nan
    df.to_csv(tmp_path / "nan.csv")
    _assert_input_error(tmp_path / "nan.csv", "NaN")


def test_missing_label_key_lists_available(truth, tmp_path) -> None:
    h5ad = write_h5ad(tmp_path, truth).path
    _assert_input_error(h5ad, "'celltype'", "'cell_type'", "'batch'", labels="celltype")
    xy = write_xy(tmp_path, truth).path
    _assert_input_error(xy, "'labels'", "available keys: 'Y'", labels="labels")
    tenx = write_10x_h5_v3(tmp_path, truth).path
    _assert_input_error(tenx, "'cell_type'", "available keys: none", labels="cell_type")
    csv_path = write_csv_rows(tmp_path, truth).path
    _assert_input_error(
        csv_path,
        "metadata column 'donor' not found",
        labels="cell_type",
        metadata_columns=["batch", "donor"],
    )
    # Not blamed on the text column that is there: the missing name is the problem.
    _assert_input_error(
        csv_path, "label key 'celltype' not found", "holding text): 'cell_type'", labels="celltype"
    )
    r_style = write_csv_r_style_columns(tmp_path, truth).path
    _assert_input_error(
        r_style,
        "label key 'celltype' not found",
        "'cell_type'",
        labels="celltype",
        cells_as="columns",
    )


def test_unlisted_text_column(truth, tmp_path) -> None:
    path = write_csv_rows(tmp_path, truth).path
    _assert_input_error(path, "column 'cell_type' is not numeric", "metadata_columns")
    r_style = write_csv_r_style_columns(tmp_path, truth).path
    _assert_input_error(r_style, "row 'cell_type' is not numeric", cells_as="columns")


def test_mtx_archive_without_barcodes(truth, tmp_path) -> None:
    _write_mtx_folder(tmp_path / "src", truth)
    with zipfile.ZipFile(tmp_path / "partial.zip", "w") as zf:
        for name in ("matrix.mtx.gz", "features.tsv.gz"):
            zf.write(tmp_path / "src" / name, f"mtx/{name}")
    _assert_input_error(tmp_path / "partial.zip", "barcodes.tsv", "mtx/matrix.mtx.gz")


def test_matrix_that_is_not_matrix_market(truth, tmp_path) -> None:
    _write_mtx_folder(tmp_path / "m", truth)
    (tmp_path / "m" / "matrix.mtx.gz").write_bytes(gzip.compress(b"hello, world\n1 2 3\n"))
    _assert_input_error(tmp_path / "m", "matrix.mtx.gz is not a Matrix Market file")


def test_ambiguous_10x_inputs(truth, tmp_path) -> None:
    _write_mtx_folder(tmp_path / "outs" / "raw", truth)
    _write_mtx_folder(tmp_path / "outs" / "filtered", truth)
    _assert_input_error(tmp_path / "outs", "several matrix files", "raw/matrix.mtx.gz")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_multi_genome_10x_h5_needs_genome(truth, tmp_path) -> None:
    """v2 genome groups and v3 genome columns alike: several genomes need ``genome``."""
    v2 = write_10x_h5_v2(tmp_path, truth).path
    with h5py.File(v2, "a") as f:
        f.copy("GRCh38", "mm10")
    v3 = write_10x_h5_v3(tmp_path, truth).path
    with h5py.File(v3, "a") as f:
        genomes = f["matrix/features/genome"]
        genomes[::2] = b"mm10"
    for path in (v2, v3):
        _assert_input_error(path, "several genomes ('GRCh38', 'mm10')", "genome: GRCh38")
        _assert_input_error(path, "no genome 'hg19'", genome="hg19")
    np.testing.assert_array_equal(read_counts(v2, genome="mm10").X.toarray(), truth.counts)
    mouse = read_counts(v3, genome="mm10")
    with h5py.File(v3, "r") as f:
        features = f["matrix/features"]
        columns = (features[key][()] for key in ("id", "genome", "feature_type"))
        kept = zip(*columns, strict=True)
        expected = [i.decode() for i, g, t in kept if g == b"mm10" and t == b"Gene Expression"]
    assert list(mouse.var["gene_ids"]) == expected and 0 < mouse.n_vars < N_GENES
    _assert_input_error(
        write_csv_rows(tmp_path, truth).path,
        "genome='mm10' applies to 10x",
        genome="mm10",
        labels="cell_type",
        metadata_columns=["batch"],
    )


def test_folder_without_matrix(tmp_path) -> None:
    (tmp_path / "empty_dir").mkdir()
    _assert_input_error(tmp_path / "empty_dir", "no matrix.mtx")


def test_empty_and_all_zero_matrices(truth, tmp_path) -> None:
    (tmp_path / "header_only.csv").write_text("cell,G1,G2\n")
    _assert_input_error(tmp_path / "header_only.csv", "empty")
    with h5py.File(tmp_path / "zeros.h5", "w") as f:
        f["X"] = np.zeros((4, 3))
    _assert_input_error(tmp_path / "zeros.h5", "all zero")


def test_bad_cells_as(truth, tmp_path) -> None:
    path = write_csv_rows(tmp_path, truth).path
    _assert_input_error(path, "cells_as", cells_as="diagonal")


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
def test_real_10x_pbmc() -> None:
    path = SHARED_DATA / "10X_PBMC_top2000.h5"
    assert detect_format(path) == "xy_h5"
    adata = read_counts(path, labels="Y")
    assert adata.shape == (4271, 2000)
    assert len(adata.obs["scdsec_true_label"].cat.categories) == 8
    assert (
        adata.obs["scdsec_true_label"].value_counts()["1"] == 1292
    )  # class sizes from MANIFEST.md
    data = adata.X.data
    assert data.min() > 0 and np.array_equal(data, np.rint(data))


# --------------------------------------------------------------------------- users' cases
# ../shared/cases (README there): each case through its own file (skips when absent) and
# through a file of the same shape written here.


def _mtx_folder_with_features(
    folder: Path, counts: np.ndarray, feature_rows: list[list[str]]
) -> Path:
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(counts.T))
    (folder / "features.tsv").write_text("\n".join("\t".join(r) for r in feature_rows) + "\n")
    barcodes = [
        f"{''.join('ACGT'[(i >> (2 * k)) % 4] for k in range(12))}-1" for i in range(len(counts))
    ]
    (folder / "barcodes.tsv").write_text("\n".join(barcodes) + "\n")
    return folder


def test_features_with_seven_columns_keep_every_gene(tmp_path, caplog) -> None:
    """Column 3 is a chromosome, not a 10x feature type: every gene stays (case 01)."""
    counts = np.random.default_rng(0).poisson(1.0, size=(30, 20))
    rows = [
        [
            f"ENSG{i:011d}",
            f"GENE{i}",
            str(i % 22 + 1),
            str(1000 * i),
            str(1000 * i + 500),
            "+",
            "protein_coding",
        ]
        for i in range(20)
    ]
    folder = _mtx_folder_with_features(tmp_path / "seven", counts, rows)
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(folder)
    assert adata.shape == (30, 20) and adata.var_names[0] == "GENE0"
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert "column 3 holds no 10x feature types" in caplog.text and "features.tsv" in caplog.text


def test_features_without_gene_expression_name_the_types(tmp_path) -> None:
    """Real feature types but none is Gene Expression: say so, never 'empty'."""
    counts = np.ones((10, 4))
    rows = [[f"ab{i}", f"CD{i}", "Antibody Capture"] for i in range(4)]
    folder = _mtx_folder_with_features(tmp_path / "adt", counts, rows)
    _assert_input_error(folder, "none of the 4 features is 'Gene Expression'", "Antibody Capture")


def test_case_01_features_7_columns(shared_cases) -> None:
    adata = read_counts(shared_cases / "01-features-7-columns")
    assert adata.shape == (300, 300) and adata.X.nnz > 0
    assert adata.var_names[0] == "GENE0" and adata.obs_names[0].endswith("-1")


def _h5ad_counts_in_layer(path: Path, x: np.ndarray | None) -> np.ndarray:
    counts = np.random.default_rng(1).poisson(2.0, size=(50, 30)).astype(np.float32)
    adata = ad.AnnData(
        X=x,
        obs=pd.DataFrame(index=[f"c{i}" for i in range(50)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(30)]),
    )
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.layers["log1p"] = np.log1p(counts)
    adata.write_h5ad(path)
    return counts


def test_h5ad_without_x_reads_the_named_layer(tmp_path) -> None:
    """No X, counts in a layer (case 02): recognised as AnnData; layer= reads them."""
    path = tmp_path / "no_x.h5ad"
    counts = _h5ad_counts_in_layer(path, None)
    assert detect_format(path) == "h5ad"
    _assert_input_error(
        path, "has no X", "layers that hold whole numbers: 'counts'", "layer: counts"
    )
    np.testing.assert_array_equal(read_counts(path, layer="counts").X.toarray(), counts)
    _assert_input_error(path, "no layer 'raw'", "'counts'", layer="raw")


def test_h5ad_with_normalised_x_points_to_the_counts_layer(tmp_path) -> None:
    path = tmp_path / "normalised.h5ad"
    counts = _h5ad_counts_in_layer(path, np.zeros((50, 30), dtype=np.float32) + 0.5)
    _assert_input_error(path, "non-integer values in X", "layer: counts")
    _assert_input_error(path, "non-integer", "in layers['log1p']", layer="log1p")
    np.testing.assert_array_equal(read_counts(path, layer="counts").X.toarray(), counts)


def test_layer_is_refused_for_formats_without_layers(truth, tmp_path) -> None:
    case = write_csv_rows(tmp_path, truth)
    _assert_input_error(
        case.path, "layer='counts' applies to AnnData and loom files", layer="counts", **case.kwargs
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_anndata_zarr_store(tmp_path) -> None:
    counts = np.random.default_rng(2).poisson(1.0, size=(20, 10)).astype(np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    adata.obs["cell_type"] = ["a", "b"] * 10
    adata.write_zarr(tmp_path / "store.zarr")
    assert detect_format(tmp_path / "store.zarr") == "zarr"
    back = read_counts(tmp_path / "store.zarr", labels="cell_type")
    np.testing.assert_array_equal(back.X.toarray(), counts)
    assert list(back.obs["scdsec_true_label"][:2]) == ["a", "b"]


def test_loom_is_read_by_anndata_with_its_names_labels_and_layers(tmp_path) -> None:
    import loompy

    counts = np.random.default_rng(4).poisson(1.0, size=(20, 10)).astype(np.float32)
    genes, cells = np.array([f"G{j}" for j in range(10)]), np.array([f"c{i}" for i in range(20)])
    layers = {"": counts.T, "unspliced": 2 * counts.T, "ratio": counts.T / 3}
    loompy.create(
        str(tmp_path / "velocyto.loom"),
        layers,
        {"Gene": genes},
        {"CellID": cells, "ClusterName": np.array(["a", "b"] * 10)},
    )
    path = tmp_path / "velocyto.loom"
    assert detect_format(path) == "loom"
    back = read_counts(path, labels="ClusterName")
    np.testing.assert_array_equal(back.X.toarray(), counts)
    assert list(back.obs_names) == list(cells) and list(back.var_names) == list(genes)
    assert list(back.obs["scdsec_true_label"][:2]) == ["a", "b"]
    unspliced = read_counts(path, layer="unspliced")
    np.testing.assert_array_equal(unspliced.X.toarray(), 2 * counts)
    _assert_input_error(path, "non-integer", "layers['ratio']", layer="ratio")
    _assert_input_error(path, "no layer 'spliced'", "unspliced", layer="spliced")

    loompy.create(str(tmp_path / "bare.loom"), counts.T, {"x": np.arange(10)}, {"y": np.arange(20)})
    bare = read_counts(tmp_path / "bare.loom")
    assert bare.obs_names[0] == "cell_0" and bare.var_names[-1] == "gene_9"


def test_case_02_h5ad_without_x(shared_cases) -> None:
    path = shared_cases / "02-h5ad-without-X" / "no_X_counts_in_layer.h5ad"
    _assert_input_error(path, "has no X", "'counts'")
    adata = read_counts(path, layer="counts", labels="cell_type")
    assert adata.shape == (300, 300) and adata.X.nnz > 0


def _cells_as_rows_csv(path: Path, corner: str) -> np.ndarray:
    """As case 03: gzipped, cells as rows, generic names, no label column."""
    counts = np.random.default_rng(3).poisson(1.5, size=(60, 25))
    frame = pd.DataFrame(
        counts, index=[f"cell{i}" for i in range(60)], columns=[f"GENE{j}" for j in range(25)]
    ).rename_axis(corner or None)
    frame.to_csv(path, compression="gzip")
    return counts


def test_csv_cells_as_rows_with_generic_names(tmp_path) -> None:
    """Case 03's kind: the corner word decides; without one, stop and ask for cells_as."""
    named, bare = tmp_path / "named.csv.gz", tmp_path / "bare.csv.gz"
    counts = _cells_as_rows_csv(named, "cell")
    np.testing.assert_array_equal(read_counts(named).X.toarray(), counts)
    _cells_as_rows_csv(bare, "")
    _assert_input_error(
        bare, "does not say whether cells are rows or columns", "'cell0'", "'GENE0'", "cells_as"
    )
    adata = read_counts(bare, cells_as="rows")
    assert adata.shape == (60, 25) and adata.obs_names[0] == "cell0"


def test_case_03_csv_cells_as_rows(shared_cases, caplog) -> None:
    path = shared_cases / "03-csv-cells-as-rows" / "cells_by_genes.csv.gz"
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(path)
    assert adata.shape == (400, 200)
    assert "cells are the table's rows" in caplog.text and "400 cells × 200 genes" in caplog.text


@pytest.mark.parametrize("genes_by_cells", [False, True], ids=["cells-x-genes", "genes-x-cells"])
def test_xy_names_survive(tmp_path, genes_by_cells: bool) -> None:
    """gene_names / cell_names beside X name the genes and cells; label_names names Y's codes."""
    counts = np.random.default_rng(5).poisson(1.0, size=(40, 25)).astype(np.float32)
    with h5py.File(tmp_path / "named.h5", "w") as f:
        f["X"] = counts.T if genes_by_cells else counts
        f["Y"] = np.arange(40) % 3
        f["cell_names"] = _bytes([f"AAACCTG{i:04d}-1" for i in range(40)])
        f["gene_names"] = _bytes([f"Gene{j}" for j in range(25)])
        f["label_names"] = _bytes(["B cell", "NK", "T cell"])
    adata = read_counts(tmp_path / "named.h5", labels="Y")
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert adata.obs_names[1] == "AAACCTG0001-1" and adata.var_names[2] == "Gene2"
    assert list(adata.obs["scdsec_true_label"][:4]) == ["B cell", "NK", "T cell", "B cell"]


def test_real_xy_with_names(shared_data) -> None:
    adata = read_counts(shared_data / "zheng_sorted_pbmc.h5", labels="Y")
    assert adata.shape == (2140, 8863)
    assert not adata.obs_names[0].startswith("cell_") and "ISG15" in adata.var_names
    assert (
        adata.obs["scdsec_true_label"].cat.categories.size == 9
        and "nk" in adata.obs["scdsec_true_label"].cat.categories
    )
