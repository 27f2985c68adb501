"""Where the counts are: ``.raw`` as a source of counts; corrected counts told apart from
normalised and log values (``counts: round``)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from bad_inputs import digest
from scdsec import InputError
from scdsec.io import read_counts


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_counts(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _counts(n_cells: int = 80, n_genes: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(2, 0.05, size=(n_cells, n_genes)).astype(np.float32)


def _export_with_raw(path: Path, n_hvg: int | None = None) -> np.ndarray:
    """As scanpy/Seurat exports write it: log-normalised X, the counts in .raw (all genes)."""
    counts = _counts()
    adata = ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"cell_type": ["a", "b"] * 40}, index=[f"c{i}" for i in range(80)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(60)]),
    )
    adata.raw = adata.copy()
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    adata.X = sp.csr_matrix(logged)
    if n_hvg is not None:
        adata = adata[:, :n_hvg].copy()
    adata.write_h5ad(path)
    return counts


def test_counts_in_raw(tmp_path) -> None:
    """X log-normalised, counts in .raw: refused naming .raw; layer: raw reads .raw's genes."""
    path = tmp_path / "export.h5ad"
    counts = _export_with_raw(path, n_hvg=20)
    before = digest(path)
    message = _error(path)
    assert "log-transformed" in message and ".raw holds whole numbers" in message
    assert "layer: raw" in message and "--layer raw" in message
    adata = read_counts(path, layer="raw", labels="cell_type")
    assert adata.shape == (80, 60) and adata.var_names[-1] == "g59"
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    np.testing.assert_array_equal(read_counts(path, layer="raw.X").X.toarray(), counts)
    assert digest(path) == before


def test_raw_asked_but_absent(tmp_path) -> None:
    path = tmp_path / "plain.h5ad"
    ad.AnnData(X=sp.csr_matrix(_counts())).write_h5ad(path)
    assert "no layer 'raw' and no .raw" in _error(path, layer="raw")


def test_a_layer_named_raw_wins(tmp_path) -> None:
    path = tmp_path / "layer_raw.h5ad"
    counts = _counts()
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts)))
    adata.layers["raw"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    np.testing.assert_array_equal(read_counts(path, layer="raw").X.toarray(), counts)


def _write_mtx(folder: Path, values: np.ndarray) -> Path:
    folder.mkdir()
    scipy.io.mmwrite(folder / "matrix.mtx", sp.coo_matrix(values.T))
    pd.Series([f"ACGTACGTAC{i:04d}-1" for i in range(values.shape[0])]).to_csv(
        folder / "barcodes.tsv", index=False, header=False
    )
    genes = pd.DataFrame({"id": [f"ENSG{j:011d}" for j in range(values.shape[1])]})
    genes["name"] = [f"G{j}" for j in range(values.shape[1])]
    genes["type"] = "Gene Expression"
    genes.to_csv(folder / "features.tsv", sep="\t", index=False, header=False)
    return folder


def _corrected(counts: np.ndarray, seed: int = 1) -> np.ndarray:
    """Counts less a random share of ambient RNA, as SoupX or DecontX leave them."""
    rng = np.random.default_rng(seed)
    return (counts * rng.uniform(0.6, 1.0, size=counts.shape)).astype(np.float64)


def test_corrected_counts_are_named_and_rounded_when_asked(tmp_path, caplog) -> None:
    counts = _counts(seed=2)
    folder = _write_mtx(tmp_path / "soupx", _corrected(counts))
    message = _error(folder)
    assert "look like ambient-RNA-corrected counts" in message
    assert "counts: round" in message and "--counts round" in message
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(folder, counts="round")
    expected = np.rint(_corrected(counts).astype(np.float32))
    np.testing.assert_array_equal(adata.X.toarray(), expected)
    assert "rounded" in caplog.text and "counts: round" in caplog.text


@pytest.mark.parametrize(
    "kind, transform",
    [
        ("log-transformed", lambda c: np.log1p(c / c.sum(1, keepdims=True) * 1e4)),
        ("normalised", lambda c: c / c.sum(1, keepdims=True) * 1e4),  # CP10k, not logged
        ("normalised", lambda c: c / np.linspace(0.3, 3.1, len(c))[:, None]),  # size factors
    ],
    ids=["log1p-cp10k", "cp10k", "size-factors"],
)
def test_normalised_values_are_still_refused(tmp_path, kind: str, transform) -> None:
    """Log and normalised values are refused, with counts: round too."""
    folder = _write_mtx(tmp_path / "norm", transform(_counts(seed=3).astype(np.float64)))
    for kwargs in ({}, {"counts": "round"}):
        message = _error(folder, **kwargs)
        assert f"they look {kind}" in message and "corrected" not in message.split(":")[2]


def test_unknown_counts_value(tmp_path) -> None:
    path = tmp_path / "plain.h5ad"
    ad.AnnData(X=sp.csr_matrix(_counts())).write_h5ad(path)
    assert "counts='floor'" in _error(path, counts="floor")


def test_case_09_ambient_corrected(shared_cases) -> None:
    folder = shared_cases / "09-ambient-corrected-counts" / "soupx_corrected"
    message = _error(folder)
    assert "ambient-RNA-corrected" in message and "counts: round" in message
    adata = read_counts(folder, counts="round")
    assert adata.shape == (300, 300)
    assert np.array_equal(adata.X.data, np.rint(adata.X.data))


def test_case_15_counts_in_raw(shared_cases) -> None:
    path = shared_cases / "15-counts-in-raw" / "seurat_export_raw.h5ad"
    assert ".raw holds whole numbers" in _error(path)
    adata = read_counts(path, layer="raw", labels="cell_type")
    assert adata.shape == (300, 300) and adata.obs["scdsec_true_label"].notna().all()
