"""Baselines (scanpy's standard pipeline, Leiden, resolution search, k-means, scVI) and the
method names of the workflow."""

from __future__ import annotations

import importlib.util
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import adjusted_rand_score, homogeneity_score

from conftest import ROOT
from scdsec import baselines, experiments
from scdsec.preprocessing import qc_filter

HAS_SCVI = importlib.util.find_spec("scvi") is not None


@pytest.fixture(scope="module")
def counts():
    """400 QC'd cells × ≤ 300 genes, 4 types."""
    from scdsec.simulate import simulate_counts

    adata = simulate_counts(400, 300, 4, seed=1, separation=0.8)
    adata.obs["scdsec_true_label"] = adata.obs["cell_type"]
    return qc_filter(adata)


@pytest.fixture(scope="module")
def standard(counts):
    return baselines.standard_pipeline(counts, n_top_genes=150, n_pcs=20, seed=0)


def test_standard_pipeline_shapes(counts, standard):
    assert standard.n_obs == counts.n_obs
    assert standard.n_vars == 150
    assert standard.obsm["X_pca"].shape == (counts.n_obs, 20)
    conn = standard.obsp["connectivities"]
    assert conn.shape == (counts.n_obs, counts.n_obs)
    # scale: zero mean per gene; the log-normalised values are kept as a layer
    assert np.allclose(np.asarray(standard.X).mean(axis=0), 0, atol=1e-4)
    assert standard.layers["log1p"].min() >= 0
    assert standard.uns["neighbors"]["params"]["n_neighbors"] == 15
    # more genes asked than there are: all of them
    everything = baselines.standard_pipeline(counts, n_top_genes=10_000, n_pcs=10)
    assert everything.n_vars == counts.n_vars


@pytest.mark.parametrize("k", [3, 4])
def test_leiden_k_hits_the_requested_number_of_clusters(standard, k):
    labels, resolution, found = baselines.leiden_for_k(standard, k, seed=0)
    assert found == k == len(np.unique(labels))
    assert resolution > 0
    # the resolution found reproduces the labels
    again = baselines.leiden_clusters(standard, resolution=resolution, seed=0)
    assert len(np.unique(again)) == k


def test_leiden_k_unreachable_returns_the_closest(standard):
    labels, _, found = baselines.leiden_for_k(standard, 1000, seed=0, max_steps=8)
    assert found == len(np.unique(labels)) < 1000


def test_kmeans_pca_returns_k_clusters_reproducibly(counts):
    params = {"n_top_genes": 150, "n_pcs": 20}
    a = baselines.run_baseline("kmeans_pca", counts, n_clusters=5, seed=2, params=params)
    b = baselines.run_baseline("kmeans_pca", counts, n_clusters=5, seed=2, params=params)
    assert len(np.unique(a.labels)) == 5
    assert a.embedding.shape == (counts.n_obs, 20)
    assert (a.labels == b.labels).all()
    assert a.info["kmeans_n_init"] >= 10


def test_leiden_uses_resolution_one_and_finds_its_own_number(counts):
    result = baselines.run_baseline("leiden", counts, seed=0, params={"n_top_genes": 150})
    assert result.status == "ok" and result.info["resolution"] == 1.0
    assert len(np.unique(result.labels)) >= 2
    with pytest.raises(ValueError, match="n_clusters"):
        baselines.run_baseline("leiden_k", counts, seed=0)


@pytest.mark.parametrize("method", ["scvi_kmeans", "scvi_leiden"])
def test_scvi_methods_cluster_a_latent_already_trained(counts, method):
    # a latent of four tight blobs, one per true type, with the info scvi_latent returns
    truth = pd.factorize(counts.obs["scdsec_true_label"])[0]
    rng = np.random.default_rng(0)
    latent = 10.0 * np.eye(4)[truth] + rng.normal(0, 0.1, size=(counts.n_obs, 4))
    info = {"scvi_tools": "given", "n_genes": counts.n_vars, "epochs": 0, "device": "cpu"}
    result = baselines.run_baseline(
        method, counts, n_clusters=4, seed=0, trained_scvi=(latent, info)
    )
    assert result.status == "ok"
    assert result.embedding is latent
    assert result.info["scvi_tools"] == "given"
    # k-means finds the four blobs; Leiden at resolution 1 may cut a blob, never mix two
    score = adjusted_rand_score if method == "scvi_kmeans" else homogeneity_score
    assert score(truth, result.labels) == pytest.approx(1.0)


@pytest.mark.skipif(HAS_SCVI, reason="scvi-tools is installed")
def test_scvi_without_scvi_tools_is_missing_with_the_reason(counts, tmp_path):
    result = baselines.run_baseline("scvi_kmeans", counts, n_clusters=4, seed=0)
    assert result.status == "missing" and result.labels is None
    assert "scvi-tools" in result.reason and "scvi" in result.reason

    path = tmp_path / "counts.h5ad"
    counts.write_h5ad(path)
    baselines.baseline_step(path, tmp_path / "out", method="scvi_leiden", n_clusters=4, seed=0)
    written = ad.read_h5ad(tmp_path / "out" / "scvi_leiden.h5ad")
    assert written.uns["scvi_leiden"]["status"] == "missing"
    assert "scvi-tools" in written.uns["scvi_leiden"]["reason"]
    assert "scvi_leiden" not in written.obs
    clusters = pd.read_csv(tmp_path / "out" / "clusters.tsv", sep="\t")
    assert list(clusters.columns) == ["cell", "cluster"] and clusters.empty


def test_baseline_step_writes_labels_and_embedding(counts, tmp_path):
    path = tmp_path / "counts.h5ad"
    counts.write_h5ad(path)
    baselines.baseline_step(
        path,
        tmp_path / "out",
        method="leiden_k",
        n_clusters=4,
        seed=1,
        params={"n_top_genes": 150, "n_pcs": 20},
    )
    written = ad.read_h5ad(tmp_path / "out" / "leiden_k.h5ad")
    assert written.obs["leiden_k"].nunique() == 4
    assert written.obsm["X_leiden_k"].shape == (counts.n_obs, 20)
    assert written.n_vars == 150  # X: the log-normalised expression of the HVGs
    record = written.uns["leiden_k"]
    assert record["status"] == "ok" and record["seed"] == 1 and record["n_clusters_given"] == 4
    clusters = pd.read_csv(tmp_path / "out" / "clusters.tsv", sep="\t", dtype=str)
    assert list(clusters.columns) == ["cell", "cluster"]
    assert list(clusters["cell"]) == list(counts.obs_names)
    assert (clusters["cluster"].to_numpy() == written.obs["leiden_k"].astype(str).to_numpy()).all()


# ------------------------------------------------------------------------------ method names


def test_method_names_parse_into_graphs_and_overrides():
    spec = experiments.deep_spec
    assert spec("scdsec", t=1000, k=50) == experiments.DeepSpec(1000, 50, {})
    assert spec("sdcn", t=1000, k=50).overrides == {
        "model": {"variant": "sdcn", "fusion": "layerwise"},
        "train": {"center_init": "embedding"},
    }
    assert spec("scdsec-t500", t=1000, k=50) == experiments.DeepSpec(500, 50, {})
    assert spec("scdsec-k10", t=1000, k=50) == experiments.DeepSpec(1000, 10, {})
    assert spec("scdsec-alpha0.3", t=1000, k=50).overrides == {"model": {"alpha": 0.3}}
    assert spec("scdsec-wo_re", t=1000, k=50).overrides == {"model": {"fusion": "none"}}
    assert spec("scdsec-no_kl", t=1000, k=50).overrides == {"train": {"kl_weight": 0.0}}
    for bad in ("scdsec-alpha0.30", "scdsec-t0", "scdsec-foo", "leiden", "scdsec-alpha2"):
        assert not experiments.is_deep(bad), bad
    assert experiments.method_key("scdsec-k10") == "scdsec"
    assert experiments.method_key("leiden") == "leiden"
    assert experiments.needs_n_clusters("kmeans_pca") and not experiments.needs_n_clusters("leiden")
    merged = experiments.merge_params(
        {"preset": "paper", "model": {"dims": [8]}, "train": {}}, {"model": {"alpha": 0.1}}
    )
    assert merged == {"preset": "paper", "model": {"dims": [8], "alpha": 0.1}, "train": {}}


def test_every_variant_is_a_valid_model_configuration():
    from scdsec.model import Params

    names = ["sdcn", *(experiments.ablation_method(v) for v in experiments.ABLATIONS)]
    names += [
        m
        for p, v in experiments.SENSITIVITY_DEFAULTS.items()
        for _, m in experiments.sensitivity_points(p, v)
    ]
    for name in names:
        assert experiments.is_deep(name), name
        params = Params.from_dict(
            experiments.merge_params({}, experiments.deep_spec(name, t=1000, k=50).overrides)
        )
        assert params.model is not None


def test_sensitivity_points_cap_t_and_dedupe():
    t = experiments.sensitivity_points("t", [300, 500, 1000, 2000, 5000, 10000], n_genes=2000)
    assert t == [
        (300, "scdsec-t300"),
        (500, "scdsec-t500"),
        (1000, "scdsec-t1000"),
        (2000, "scdsec-t2000"),
    ]
    alpha = experiments.sensitivity_points("alpha", [1, 0, 0.1, 0.30])
    assert alpha == [
        (0.0, "scdsec-alpha0"),
        (0.1, "scdsec-alpha0.1"),
        (0.3, "scdsec-alpha0.3"),
        (1.0, "scdsec-alpha1"),
    ]
    assert experiments.sensitivity_points("k", [50, 5]) == [(5, "scdsec-k5"), (50, "scdsec-k50")]


def test_schema_accepts_exactly_the_method_names_the_package_knows():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    pattern = schema["properties"]["methods"]["items"]["pattern"]
    assert pattern == f"^{experiments.METHOD_REGEX}$"
    for name in ("scdsec", "sdcn", "leiden_k", "scvi_kmeans", "scdsec-alpha0.25", "scdsec-k200"):
        assert re.fullmatch(pattern.strip("^$"), name)
    assert not re.fullmatch(pattern.strip("^$"), "scdsec-alpha0.50")
    defaults = schema["properties"]["experiments"]["properties"]
    assert defaults["ablation"]["items"]["enum"] == list(experiments.ABLATIONS)
    assert defaults["ablation"]["default"] == experiments.DEFAULT_ABLATIONS
    for name, values in experiments.SENSITIVITY_DEFAULTS.items():
        assert defaults["sensitivity"]["properties"][name]["default"] == values


def test_auto_number_of_clusters_is_the_models_estimate(counts, tmp_path):
    from scdsec import pp
    from scdsec.clustering import estimate_n_clusters
    from scdsec.pipeline import write_h5ad

    graph = pp.prepare(
        counts, normalize_params={"n_top_genes": 150}, graph={"n_neighbors": 10, "n_pcs": 20}
    )
    write_h5ad(graph, tmp_path / "graph.h5ad")
    counts.write_h5ad(tmp_path / "counts.h5ad")
    baselines.baseline_step(
        tmp_path / "counts.h5ad",
        tmp_path / "out",
        method="kmeans_pca",
        n_clusters="auto",
        seed=3,
        params={"n_top_genes": 150, "n_pcs": 20},
        graph=tmp_path / "graph.h5ad",
    )
    record = ad.read_h5ad(tmp_path / "out" / "kmeans_pca.h5ad").uns["kmeans_pca"]
    assert record["n_clusters_estimated"] is True
    assert record["n_clusters_given"] == record["n_clusters"] == estimate_n_clusters(graph, seed=3)
    estimate = dict(record["n_clusters_estimate"])  # with its range, for the run's summary
    assert estimate["n_clusters"] == record["n_clusters"] and estimate["resolution"] == 0.5
    assert {"n_at_half", "n_at_twice", "half_resolution", "twice_resolution"} <= set(estimate)


def test_the_estimated_k_is_warned_about_with_the_counts_at_half_and_twice_the_resolution(
    counts, caplog
):
    import logging

    from scdsec import pp
    from scdsec.clustering import estimate_n_clusters, leiden_labels

    graph = pp.prepare(
        counts, normalize_params={"n_top_genes": 150}, graph={"n_neighbors": 10, "n_pcs": 20}
    )
    with caplog.at_level(logging.WARNING, logger="scdsec"):
        k = estimate_n_clusters(graph, resolution=0.8, seed=1)
    at = {
        r: np.unique(leiden_labels(graph.obsp["knn"], resolution=r, seed=1)).size
        for r in (0.4, 0.8, 1.6)
    }
    assert k == max(at[0.8], 2)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"K = {k}, estimated: {at[0.8]} Leiden communities" in message
    assert f"at 0.4 and 1.6: {at[0.4]} and {at[1.6]}" in message
    assert "give n_clusters" in message
    with pytest.raises(ValueError, match="obsp\\['knn'\\]"):
        estimate_n_clusters(ad.AnnData(np.zeros((3, 2), dtype=np.float32)))


def test_auto_on_one_population_says_so(caplog):
    """One population (a random graph, no communities at resolution 0.5): K is still 2, the
    least scDSEC clusters into, and the warning says the cells look like one population."""
    import logging

    import scipy.sparse as sp

    from scdsec.clustering import estimate_n_clusters

    n, rng = 300, np.random.default_rng(0)
    rows, cols = np.repeat(np.arange(n), 100), rng.integers(0, n, n * 100)
    graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    graph = ((graph + graph.T) > 0).astype(np.float64)
    graph.setdiag(0)
    graph.eliminate_zeros()
    adata = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.obsp["knn"] = sp.csr_matrix(graph)
    with caplog.at_level(logging.WARNING, logger="scdsec"):
        assert estimate_n_clusters(adata) == 2
    assert "estimated: 1 Leiden community" in caplog.text
    assert "look like one population" in caplog.text
