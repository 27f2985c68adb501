"""10x Matrix Market triplets as public archives name them: GEO's sample prefixes, in a folder,
an archive or as the matrix file itself; several samples chosen by ``sample``."""

from __future__ import annotations

import gzip
import logging
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from bad_inputs import digest
from scdsec import InputError
from scdsec.io import detect_format, read_counts

N_GENES = 25


def _gz(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data))


def _write_sample(folder: Path, prefix: str, n_cells: int, seed: int, genes: str = "features"):
    """GEO-style triplet ``<prefix>matrix.mtx.gz`` … in ``folder``; returns cells × genes."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = np.random.default_rng(seed).poisson(1.5, size=(n_cells, N_GENES))
    mtx = folder / "m.mtx"
    scipy.io.mmwrite(mtx, sp.coo_matrix(counts.T))
    _gz(folder / f"{prefix}matrix.mtx.gz", mtx.read_bytes())
    mtx.unlink()
    rows = [f"ENSG{j:011d}\tGENE{j}\tGene Expression" for j in range(N_GENES)]
    _gz(folder / f"{prefix}{genes}.tsv.gz", ("\n".join(rows) + "\n").encode())
    barcodes = [f"{'ACGT'[seed % 4] * 8}{i:08d}-1" for i in range(n_cells)]
    _gz(folder / f"{prefix}barcodes.tsv.gz", ("\n".join(barcodes) + "\n").encode())
    return counts


def _read(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_counts(path, **kwargs)


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        _read(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("genes", ["features", "genes"])
def test_one_prefixed_sample_in_a_folder_or_as_the_matrix_file(tmp_path, genes: str) -> None:
    counts = _write_sample(tmp_path / "one", "GSM4000001_pbmc_", 30, seed=1, genes=genes)
    for path in (tmp_path / "one", tmp_path / "one" / "GSM4000001_pbmc_matrix.mtx.gz"):
        assert detect_format(path) == "10x_mtx"
        adata = _read(path)
        np.testing.assert_array_equal(adata.X.toarray(), counts)
        assert adata.var_names[0] == "GENE0" and adata.obs_names[0].endswith("-1")


def _raw_archive(tmp_path: Path, kind: str) -> tuple[Path, list[np.ndarray]]:
    """Two samples as GEO serves them (GSE…_RAW.tar of flat files), or as a folder / zip."""
    folder = tmp_path / "GSE1_RAW"
    parts = [
        _write_sample(folder, "GSM4000001_donorA_", 30, seed=1),
        _write_sample(folder, "GSM4000002_donorB_", 20, seed=2),
    ]
    if kind == "folder":
        return folder, parts
    if kind == "zip":
        path = tmp_path / "GSE1_RAW.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted(folder.iterdir()):
                zf.write(f, f.name)
        return path, parts
    path = tmp_path / ("GSE1_RAW.tar" if kind == "tar" else "GSE1_RAW.tar.gz")
    with tarfile.open(path, "w" if kind == "tar" else "w:gz") as tf:
        for f in sorted(folder.iterdir()):
            tf.add(f, arcname=f.name)
    return path, parts


@pytest.mark.parametrize("kind", ["folder", "tar", "tar.gz", "zip"])
def test_several_samples_are_named_and_chosen(tmp_path, kind: str, caplog) -> None:
    path, (first, second) = _raw_archive(tmp_path, kind)
    before = digest(path)
    assert detect_format(path) == "10x_mtx"
    message = _error(path)
    assert "'GSM4000001_donorA'" in message and "'GSM4000002_donorB'" in message
    assert "sample: GSM4000001_donorA" in message and "--sample" in message
    assert "sample: all" in message
    with caplog.at_level(logging.INFO, logger="scdsec"):
        np.testing.assert_array_equal(_read(path, sample="GSM4000002").X.toarray(), second)
    assert "sample 'GSM4000002' → GSM4000002_donorB" in caplog.text  # which one was read
    np.testing.assert_array_equal(_read(path, sample="GSM4000001_donorA").X.toarray(), first)
    both = _read(path, sample="all")
    np.testing.assert_array_equal(both.X.toarray(), np.vstack([first, second]))
    assert list(both.obs["sample"].value_counts().sort_index()) == [30, 20]
    assert both.obs_names[0].endswith("-1-GSM4000001_donorA") and both.obs_names.is_unique
    assert "names several" in _error(path, sample="GSM4")
    assert "names none" in _error(path, sample="GSM9")
    assert digest(path) == before


def test_samples_with_different_genes_are_not_read_together(tmp_path) -> None:
    folder = tmp_path / "mixed"
    _write_sample(folder, "GSM1_", 10, seed=1)
    _write_sample(folder, "GSM2_", 10, seed=2)
    rows = [f"ENSMUSG{j:011d}\tGene{j}\tGene Expression" for j in range(N_GENES)]
    _gz(folder / "GSM2_features.tsv.gz", ("\n".join(rows) + "\n").encode())
    assert "list different genes" in _error(folder, sample="all")


def test_sample_is_refused_for_other_formats(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("cell,G1,G2\nc1,1,0\nc2,0,3\n")
    assert "sample='GSM1' applies to 10x Matrix Market" in _error(path, sample="GSM1")


def test_case_10_geo_prefixed_triplets(shared_cases) -> None:
    case = shared_cases / "10-geo-prefixed-triplets"
    one = _read(case / "one_sample")
    assert one.shape[0] > 0 and one.var_names[0] != "gene_0"
    itself = _read(case / "one_sample" / "GSM9000001_donor1_matrix.mtx.gz")
    assert itself.shape == one.shape
    for path in (case / "GSE000000_RAW", case / "GSE000000_RAW.tar"):
        message = _error(path)
        assert "GSM9000001_donor1" in message and "GSM9000002_donor2" in message
        assert "sample:" in message
        assert _read(path, sample="GSM9000001").shape == one.shape
        both = _read(path, sample="all")
        assert set(both.obs["sample"]) == {"GSM9000001_donor1", "GSM9000002_donor2"}


def test_accession_ties_files_whose_other_words_differ(tmp_path) -> None:
    """GSM…_counts.mtx.gz with GSM…_genes.tsv.gz and GSM…_barcodes.tsv.gz, two samples."""
    folder = tmp_path / "GSE2_RAW"
    parts = {}
    for accession, seed in (("GSM5000001", 1), ("GSM5000002", 2)):
        parts[accession] = _write_sample(folder, f"{accession}_", 15 + seed, seed, genes="genes")
        (folder / f"{accession}_matrix.mtx.gz").rename(folder / f"{accession}_counts.mtx.gz")
    message = _error(folder)
    assert "'GSM5000001_counts'" in message and "'GSM5000002_counts'" in message
    chosen = _read(folder, sample="GSM5000002")
    np.testing.assert_array_equal(chosen.X.toarray(), parts["GSM5000002"])
    itself = _read(folder / "GSM5000001_counts.mtx.gz")
    np.testing.assert_array_equal(itself.X.toarray(), parts["GSM5000001"])
