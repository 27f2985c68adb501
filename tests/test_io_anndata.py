"""Loom files slightly off their spec, and HDF5's own words kept out of messages."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest

from bad_inputs import digest
from scdsec.io import read_counts
from scdsec.io._common import _one_line


def _loom(path, counts: np.ndarray, **layers) -> None:
    import loompy

    loompy.create(
        str(path),
        {"": counts.T, **{k: v.T for k, v in layers.items()}},
        {"Gene": np.array([f"G{j}" for j in range(counts.shape[1])])},
        {"CellID": np.array([f"c{i}" for i in range(counts.shape[0])])},
    )


def test_loom_3_without_attrs_group_is_read(tmp_path, caplog) -> None:
    """LOOM_SPEC_VERSION 3.0.0 without /attrs (case 16's kind): read like the file that has it."""
    counts = np.random.default_rng(6).poisson(1.0, size=(30, 12)).astype(np.float32)
    whole, bare = tmp_path / "whole.loom", tmp_path / "bare.loom"
    _loom(whole, counts)
    shutil.copy(whole, bare)
    with h5py.File(bare, "a") as f:
        assert "attrs" in f
        del f["attrs"]
        f.attrs["LOOM_SPEC_VERSION"] = "3.0.0"
    before = digest(bare)
    with caplog.at_level(logging.INFO, logger="scdsec"):
        adata = read_counts(bare)
    np.testing.assert_array_equal(adata.X.toarray(), counts)
    assert list(adata.obs_names) == list(read_counts(whole).obs_names)
    assert "LOOM_SPEC_VERSION 3.0.0 but has no /attrs group" in caplog.text
    assert digest(bare) == before


def test_loom_x_is_the_main_matrix_not_a_spliced_layer(tmp_path) -> None:
    counts = np.random.default_rng(7).poisson(2.0, size=(20, 10)).astype(np.float32)
    path = tmp_path / "velocyto.loom"
    _loom(path, counts, spliced=counts // 2, unspliced=counts - counts // 2)
    np.testing.assert_array_equal(read_counts(path).X.toarray(), counts)
    np.testing.assert_array_equal(read_counts(path, layer="spliced").X.toarray(), counts // 2)


def test_missing_hdf5_object_is_said_in_a_users_words() -> None:
    err = KeyError("Unable to synchronously open object (object 'attrs' doesn't exist)")
    assert _one_line(err) == "the file has no 'attrs', which this format needs"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_case_16_loom_spec_3(shared_cases) -> None:
    path = shared_cases / "16-loom-spec-3" / "sample.loom"
    adata = read_counts(path, labels="ClusterName")
    assert adata.shape == (300, 300) and adata.X.nnz > 0
    assert adata.obs["scdsec_true_label"].notna().all()
