"""Empty droplets (issue 24, kind 1): cell calling in QC and CellBender's calls in the reader.

A raw matrix that is mostly empty droplets is never clustered as cells; a filtered matrix
is left whole (docs: README "Cell and gene filters", :func:`scdsec.preprocessing.call_cells`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scdsec import InputError
from scdsec.io import read_counts
from scdsec.preprocessing import call_cells, qc_filter


def _raw_droplets(n_cells: int, n_empty: int, seed: int = 0):
    """Simulated cells followed by empty droplets (1–60 ambient counts each), as a raw
    Cell Ranger matrix holds them; ``obs['truth']`` says which is which."""
    from scdsec.simulate import simulate_counts

    rng = np.random.default_rng(seed)
    cells = simulate_counts(n_cells, 300, 4, seed=seed)
    ambient = np.asarray(cells.X.sum(axis=0)).ravel()
    ambient = ambient / ambient.sum()
    sizes = rng.integers(1, 61, size=n_empty)
    empties = np.array([rng.multinomial(s, ambient) for s in sizes]).reshape(n_empty, len(ambient))
    x = sp.vstack([sp.csr_matrix(cells.X), sp.csr_matrix(empties)]).tocsr().astype(np.float32)
    truth = list(cells.obs["cell_type"].astype(str)) + ["empty"] * n_empty
    obs = pd.DataFrame({"truth": truth}, index=[f"BC{i:05d}-1" for i in range(x.shape[0])])
    return ad.AnnData(x, obs=obs, var=cells.var.copy())


def test_qc_removes_a_majority_of_empty_droplets_and_logs_the_rule(caplog):
    adata = _raw_droplets(400, 1600)
    with caplog.at_level(logging.INFO, logger="scdsec"):
        out = qc_filter(adata)
    rep = out.uns["scdsec_qc"]
    kept = out.obs["truth"]
    assert (kept == "empty").sum() <= 5, "empty droplets are not clustered as cells"
    assert (kept != "empty").sum() >= 0.95 * 400
    assert rep["empty_droplets"]["method"] == "counts"
    assert rep["cells_removed_empty_droplets"] == adata.n_obs - rep["cells_after_empty_droplets"]
    assert rep["cells_after_empty_droplets"] == out.n_obs
    threshold = rep["empty_droplets"]["threshold"]
    assert 60 < threshold < np.median(out.obs["scdsec_total_counts"])
    line = next(r.getMessage() for r in caplog.records if "empty droplets" in r.getMessage())
    assert f"under {threshold:.0f} counts" in line and f"2000 → {out.n_obs} cells" in line


def test_qc_leaves_a_filtered_matrix_whole():
    cells = _raw_droplets(400, 0)
    out = qc_filter(cells)
    rep = out.uns["scdsec_qc"]
    assert rep["cells_removed_empty_droplets"] == 0 and out.n_obs == 400
    assert rep["empty_droplets"]["method"] == "none"


def test_qc_stops_when_empty_droplets_are_a_minority():
    adata = _raw_droplets(400, 150)  # 27% low barcodes: empties, or a shallow cell type?
    with pytest.raises(InputError, match="give the filtered matrix") as err:
        qc_filter(adata)
    assert "qc.empty_droplets: remove" in str(err.value) and "keep" in str(err.value)
    removed = qc_filter(adata, empty_droplets="remove")
    assert (removed.obs["truth"] == "empty").sum() <= 5
    kept = qc_filter(adata, empty_droplets="keep")
    assert kept.n_obs == adata.n_obs
    assert kept.uns["scdsec_qc"]["empty_droplets"]["method"] == "none"


def test_qc_uses_the_files_cell_calls():
    adata = _raw_droplets(300, 900)
    probability = np.where(adata.obs["truth"] == "empty", 0.01, 0.97)
    probability[-100:] = np.nan  # droplets CellBender did not analyse
    probability[0] = 0.5  # not above CellBender's cut
    adata.obs["cell_probability"] = probability
    out = qc_filter(adata)
    assert list(out.obs_names) == list(adata.obs_names[1:300])
    assert out.uns["scdsec_qc"]["empty_droplets"]["method"] == "file"
    assert out.uns["scdsec_qc"]["empty_droplets"]["threshold"] == 0.5


def test_qc_reports_cells_after_each_filter(small_counts, caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="scdsec"):
        out = qc_filter(small_counts, min_counts=200, min_genes=50, max_counts=5000)
    rep = out.uns["scdsec_qc"]
    after = [rep[f"cells_after_{f}"] for f in ("empty_droplets", "min_counts", "min_genes")]
    after.append(rep["cells_after_max_counts"])
    assert after == sorted(after, reverse=True) and after[-1] - rep["cells_removed_empty"] == (
        out.n_obs
    )
    assert rep["cells_after_min_counts"] < rep["cells_after_empty_droplets"]
    assert out.obs["scdsec_total_counts"].min() >= 200
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("QC: qc.min_counts = 200: 400 → ") for line in lines)
    out.write_h5ad(tmp_path / "qc.h5ad")  # what the workflow's qc step records
    back = ad.read_h5ad(tmp_path / "qc.h5ad").uns["scdsec_qc"]
    assert back["cells_after_min_genes"] == rep["cells_after_min_genes"]


@pytest.mark.parametrize("name", ["raw_feature_bc_matrix.h5", "filtered_feature_bc_matrix.h5"])
def test_case_07_raw_10x_with_empty_droplets(shared_cases, name):
    folder = shared_cases / "07-raw-10x-with-empty-droplets"
    truth = pd.read_csv(folder / "truth.tsv", sep="\t", index_col=0)["truth"]
    out = qc_filter(read_counts(folder / name))
    kept = truth[out.obs_names]
    assert (kept == "empty").sum() == 0
    assert len(kept) >= 0.95 * (truth != "empty").sum()
    if name.startswith("filtered"):
        assert out.uns["scdsec_qc"]["cells_removed_empty_droplets"] == 0


@pytest.mark.parametrize("name", ["out.h5", "out_filtered.h5"])
def test_case_08_cellbender_output(shared_cases, name):
    folder = shared_cases / "08-cellbender-output"
    truth = pd.read_csv(folder / "truth.tsv", sep="\t", index_col=0)["truth"]
    adata = read_counts(folder / name)
    assert "cell_probability" in adata.obs
    out = qc_filter(adata)
    assert sorted(out.obs_names) == sorted(truth.index[truth != "empty"])
    assert out.uns["scdsec_qc"]["empty_droplets"]["method"] == "file"


def test_real_datasets_lose_no_cell_to_the_empty_droplet_rule(shared_data):
    files = sorted(p for p in shared_data.iterdir() if p.suffix in (".h5", ".h5ad"))
    assert files
    for path in files:
        x = read_counts(path).X
        calls = call_cells(np.asarray(x.sum(axis=1)).ravel())
        assert calls["removed"] == 0 and calls["keep"].all(), (path.name, calls["rule"])


def _write_cellbender(path: Path, adata: ad.AnnData, analysed: np.ndarray, p, version: str):
    """A CellBender ``out.h5`` of ``adata``: the 10x v3 matrix of every barcode and the cell
    probability of the ``analysed`` barcodes (v0.3: ``droplet_latents``; v0.2: beside the
    matrix, as ``latent_cell_probability``)."""
    m = sp.csc_matrix(adata.X.T.astype(np.int32))
    names = np.array([n.encode() for n in adata.var_names])
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = m.data, m.indices, m.indptr
        g["shape"] = np.array(m.shape, dtype=np.int32)
        g["barcodes"] = np.array([b.encode() for b in adata.obs_names])
        fg = g.create_group("features")
        fg["id"], fg["name"] = names, names
        fg["feature_type"] = np.array([b"Gene Expression"] * len(names))
        fg["genome"] = np.array([b"GRCh38"] * len(names))
        latents = f.create_group("droplet_latents") if version == "0.3" else g
        key = "cell_probability" if version == "0.3" else "latent_cell_probability"
        latents[key] = np.asarray(p, dtype=np.float32)
        latents["barcode_indices_for_latents"] = analysed
        f.create_group("global_latents")["ambient_expression"] = np.ones(len(names))


@pytest.mark.parametrize("version", ["0.3", "0.2"])
def test_cellbender_cell_calls_are_read_and_used(tmp_path, version):
    adata = _raw_droplets(200, 800)
    analysed = np.arange(0, 900)  # CellBender leaves the lowest barcodes out
    p = np.where(adata.obs["truth"].to_numpy()[analysed] == "empty", 0.02, 0.99)
    path = tmp_path / "out.h5"
    _write_cellbender(path, adata, analysed, p, version)
    read = read_counts(path)
    prob = read.obs["cell_probability"].to_numpy()
    assert np.allclose(prob[analysed], p) and np.isnan(prob[900:]).all()
    out = qc_filter(read)
    assert list(out.obs_names) == list(adata.obs_names[:200])
    assert out.uns["scdsec_qc"]["empty_droplets"]["removed"] == 800


def test_10x_h5_without_cell_calls_has_no_probability(tmp_path):
    adata = _raw_droplets(100, 0)
    path = tmp_path / "out.h5"
    _write_cellbender(path, adata, np.arange(100), np.ones(100), "0.3")
    with h5py.File(path, "a") as f:
        del f["droplet_latents"]
    assert "cell_probability" not in read_counts(path).obs


def test_workflow_qc_step_logs_and_records_each_filter(tmp_path):
    from scdsec.pipeline import qc_step, step_log

    raw = _raw_droplets(300, 1200)
    raw.uns["dataset"] = "raw_droplets"
    raw.write_h5ad(tmp_path / "counts.h5ad")
    log = tmp_path / "qc.log"
    with step_log(log):
        qc_step(tmp_path / "counts.h5ad", tmp_path / "qc.h5ad", min_genes=5)
    text = log.read_text()
    assert "empty droplets [two populations of total counts" in text
    assert "1500 → " in text and "qc.min_genes = 5: " in text
    rep = ad.read_h5ad(tmp_path / "qc.h5ad").uns["scdsec_qc"]
    assert rep["cells_in"] == 1500 and rep["empty_droplets"]["method"] == "counts"
    assert rep["cells_after_empty_droplets"] >= rep["cells_after_min_genes"] == rep["cells_out"]
    assert rep["cells_out"] <= 305


def _raw_totals(n_cells: int, n_empty: int, cell_median: float, ambient_max: float, seed=0):
    """Totals of a raw droplet matrix: cells log-normal around ``cell_median``; empties 95%
    with 1–10 molecules and 5% ambient ones up to ``ambient_max`` (log-uniform)."""
    rng = np.random.default_rng(seed)
    cells = np.round(10 ** rng.normal(np.log10(cell_median), 0.3, n_cells))
    n_ambient = n_empty // 20
    empties = np.concatenate(
        [
            rng.integers(1, 11, n_empty - n_ambient),
            np.round(10 ** rng.uniform(1, np.log10(ambient_max), n_ambient)),
        ]
    )
    return np.concatenate([cells, empties])


def test_cells_are_found_among_many_more_empty_droplets():
    # As in a real raw matrix: cells are 1% of the barcodes.
    totals = _raw_totals(1000, 100_000, 3000, 200)
    calls = call_cells(totals)
    assert calls["method"] == "counts"
    assert calls["keep"][:1000].sum() >= 990 and not calls["keep"][1000:].any()


def test_raw_matrix_without_cells_apart_stops():
    # Cells as shallow as the ambient droplets: no cliff to cut at.
    totals = _raw_totals(300, 30_000, 300, 100)
    with pytest.raises(InputError, match="no population of cells stands apart"):
        call_cells(totals)
    assert call_cells(totals, mode="keep")["keep"].all()


def test_cellbender_calls_are_matched_by_barcode_name(tmp_path):
    adata = _raw_droplets(200, 800)
    analysed = np.random.default_rng(0).permutation(900)  # any order
    p = np.where(adata.obs["truth"].to_numpy()[analysed] == "empty", 0.02, 0.99)
    path = tmp_path / "out.h5"
    _write_cellbender(path, adata, analysed, p, "0.3")
    with h5py.File(path, "a") as f:
        del f["droplet_latents/barcode_indices_for_latents"]
        names = [adata.obs_names[i].encode() for i in analysed]
        f.create_group("metadata")["barcodes_analyzed"] = np.array(names)
    out = qc_filter(read_counts(path))
    assert sorted(out.obs_names) == sorted(adata.obs_names[:200])


def test_cellbender_calls_that_match_no_barcode_are_ignored(tmp_path):
    adata = _raw_droplets(200, 800)
    path = tmp_path / "out.h5"
    _write_cellbender(path, adata, np.arange(5000, 5100), np.ones(100), "0.3")
    read = read_counts(path)
    assert "cell_probability" not in read.obs
    out = qc_filter(read)  # the counts decide instead
    assert out.uns["scdsec_qc"]["empty_droplets"]["method"] == "counts"


def test_cellbender_anndata_column_is_used():
    # CellBender v0.2's anndata_from_h5 names the column latent_cell_probability.
    adata = _raw_droplets(100, 400)
    adata.obs["latent_cell_probability"] = np.where(adata.obs["truth"] == "empty", 0.0, 1.0)
    out = qc_filter(adata)
    assert (out.obs["truth"] != "empty").all() and out.n_obs == 100
    assert "latent_cell_probability" in out.uns["scdsec_qc"]["empty_droplets"]["rule"]


def test_cli_clusters_the_cells_of_a_raw_matrix_and_stops_on_an_ambiguous_one(tmp_path, capsys):
    import yaml

    from scdsec.cli import main

    config = tmp_path / "fast.yaml"
    fast = {
        "normalize": {"n_top_genes": 150},
        "graph": {"n_neighbors": 10, "n_pcs": 20},
        "model": {"dims": [64, 32, 8]},
        "train": {"pretrain_epochs": 2, "epochs": 1},
    }
    config.write_text(yaml.safe_dump(fast))
    raw = _raw_droplets(300, 1200)
    raw.write_h5ad(tmp_path / "raw.h5ad")
    out = tmp_path / "out"
    args = ["--out", str(out), "--n-clusters", "4", "--config", str(config)]
    assert main(["cluster", str(tmp_path / "raw.h5ad"), *args]) == 0
    clustered = pd.read_csv(out / "clusters.tsv", sep="\t")["cell"]
    assert (raw.obs.loc[clustered, "truth"] != "empty").all() and len(clustered) >= 290
    assert "empty droplets [two populations" in capsys.readouterr().err

    ambiguous = _raw_droplets(400, 150)
    ambiguous.write_h5ad(tmp_path / "ambiguous.h5ad")
    out2 = tmp_path / "out2"
    args[1] = str(out2)
    assert main(["cluster", str(tmp_path / "ambiguous.h5ad"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(tmp_path / "ambiguous.h5ad") in err and "give the filtered matrix" in err
    assert "qc.empty_droplets" in err and not out2.exists()


# ------------------------------------------------ kinds found by a new user's own files


def _lognormal(rng, n, median, sdlog=0.3):
    return np.round(np.exp(rng.normal(np.log(median), sdlog, n))).clip(1)


def test_cells_of_two_depths_among_many_empties_lose_only_the_empties():
    """Cell types of different depth are not one Gaussian: the widest gap still parts the
    empties from every cell."""
    rng = np.random.default_rng(3)
    cells = np.concatenate([_lognormal(rng, 1200, 800), _lognormal(rng, 1000, 6000)])
    empties = rng.integers(1, 60, 20_000).astype(float)
    result = call_cells(np.concatenate([cells, empties]))
    assert result["keep"][: len(cells)].all() and not result["keep"][len(cells) :].any()


def test_a_minority_of_empties_beside_cells_of_two_depths_stops_the_run():
    rng = np.random.default_rng(4)
    totals = np.concatenate(
        [_lognormal(rng, 300, 900), _lognormal(rng, 300, 7000), rng.integers(1, 60, 300)]
    )
    with pytest.raises(InputError, match="filtered matrix"):
        call_cells(totals.astype(float))


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (300, 4000),  # a filtered matrix with a shallow type: 60% of its cells at ~300 UMIs
        (200_000, 3_000_000),  # a plate: single cells beside a few deep control wells
    ],
)
def test_shallow_cells_are_never_taken_for_empty_droplets(low, high):
    rng = np.random.default_rng(5)
    sizes = (600, 400) if high < 10**5 else (376, 8)
    totals = np.concatenate([_lognormal(rng, sizes[0], low), _lognormal(rng, sizes[1], high)])
    result = call_cells(totals)
    assert result["removed"] == 0 and result["keep"].all()
    assert "shallow cells" in result["rule"]
