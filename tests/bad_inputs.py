"""Bad inputs of every kind a user has fed us, written by the tests that feed them.

Each :class:`BadInput` is a file (or folder) plus the dataset settings it is read with, and the
fragments the one-line error must contain. ``tests/test_cli.py`` runs each through
``scdsec cluster``, ``tests/test_workflow.py`` through the workflow's ``download`` (and ``qc``)
steps; both check that the message names the input and the problem, that nothing is left
behind and that the input is unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp


@dataclass
class BadInput:
    path: Path
    expected: tuple[str, ...]  # fragments of the one-line error
    entry: dict = field(default_factory=dict)  # dataset keys: labels, qc settings, ...
    config: dict = field(default_factory=dict)  # workflow config sections (qc, graph, …)


def digest(path: Path) -> str:
    """The content of a file or of every file under a folder, as one hash."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for file in files:
        h.update(file.read_bytes())
    return h.hexdigest()


def _counts(n_cells: int = 60, n_genes: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(2.0, size=(n_cells, n_genes)).astype(np.float32)


def _csv(path: Path, values: np.ndarray) -> Path:
    frame = pd.DataFrame(values, index=[f"cell{i}" for i in range(len(values))])
    frame.columns = [f"GENE{j}" for j in range(values.shape[1])]
    frame.rename_axis("cell").to_csv(path)
    return path


def write_bad_inputs(folder: Path) -> dict[str, BadInput]:
    """Write every kind of bad input under ``folder``; return them by name."""
    folder.mkdir(parents=True, exist_ok=True)
    bad: dict[str, BadInput] = {}

    good = ad.AnnData(X=sp.csr_matrix(_counts()))
    good.write_h5ad(folder / "whole.h5ad")
    data = (folder / "whole.h5ad").read_bytes()
    (folder / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    bad["truncated"] = BadInput(
        folder / "truncated.h5ad", ("truncated.h5ad", "cannot read", "is truncated")
    )

    (folder / "not_hdf5.h5").write_bytes(b"\x00\x01 this is no HDF5 file at all \x02" * 20)
    bad["not_hdf5"] = BadInput(folder / "not_hdf5.h5", ("not_hdf5.h5", "unrecognised format"))

    (folder / "empty.csv").write_text("cell,GENE0,GENE1\n")
    bad["empty"] = BadInput(folder / "empty.csv", ("empty.csv", "empty count matrix"))

    for name, value, words in (
        ("negative", -1.0, "negative values"),
        ("nan", np.nan, "NaN or infinite"),
        ("infinite", np.inf, "NaN or infinite"),
        ("fractional", 0.5, "non-integer values"),
    ):
        values = _counts()
        values[3, 4] = value
        path = _csv(folder / f"{name}.csv", values)
        bad[name] = BadInput(path, (path.name, words))

    # ambient-RNA-corrected counts (SoupX-like): refused, naming the setting that rounds them
    corrected = _counts() * np.random.default_rng(1).uniform(0.6, 1.0, (60, 30)) * 20
    path = _csv(folder / "corrected.csv", corrected.astype(np.float32))
    bad["corrected"] = BadInput(path, (path.name, "ambient-RNA-corrected", "counts: round"))

    # a GEO download of two samples: refused, naming them and the setting that picks one
    geo = folder / "GSE1_RAW"
    geo.mkdir()
    for sample in ("GSM1_a", "GSM2_b"):
        scipy.io.mmwrite(geo / f"{sample}_matrix.mtx", sp.coo_matrix(_counts().T))
        rows = [f"G{j}\tG{j}\tGene Expression" for j in range(30)]
        (geo / f"{sample}_features.tsv").write_text("\n".join(rows) + "\n")
        (geo / f"{sample}_barcodes.tsv").write_text("\n".join(f"c{i}" for i in range(60)) + "\n")
    bad["geo_two_samples"] = BadInput(geo, ("GSE1_RAW", "'GSM1_a'", "'GSM2_b'", "sample: GSM1_a"))

    path = _csv(folder / "counts.csv", _counts())
    bad["label_missing"] = BadInput(
        path, (path.name, "label key 'cell_type' not found"), {"labels": "cell_type"}
    )

    with h5py.File(folder / "xy_short_labels.h5", "w") as f:
        f["X"] = _counts()
        f["Y"] = np.arange(57) % 3
    bad["label_length"] = BadInput(
        folder / "xy_short_labels.h5",
        ("xy_short_labels.h5", "labels 'Y' hold 57 values", "60 cells"),
        {"labels": "Y"},
    )

    bad["all_genes_filtered"] = BadInput(
        _csv(folder / "sparse_genes.csv", np.eye(60, 30, dtype=np.float32) * 3),
        ("sparse_genes.csv", "qc.min_cells_fraction"),
        config={"qc": {"min_cells_fraction": 0.5}},
    )

    (folder / "not_10x").mkdir()
    (folder / "not_10x" / "notes.txt").write_text("cells from Tuesday\n")
    (folder / "not_10x" / "table.xlsx").write_bytes(b"PK\x03\x04 spreadsheet")
    bad["not_a_10x_folder"] = BadInput(
        folder / "not_10x", ("not_10x", "not a 10x matrix folder", "notes.txt", "table.xlsx")
    )
    return bad
