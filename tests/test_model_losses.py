"""The loss terms against independent computations (scipy, NumPy, dense references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats
from scipy.special import expit

from scdsec.model import _losses
from scdsec.model._graph import pair_keys, sample_non_edges, upper_edges


def _zinb_nll_scipy(x, mu, theta, logits):
    """Independent ZINB NLL: scipy's NB pmf plus the zero inflation by hand, mean over entries."""
    pi = expit(logits)
    nb = stats.nbinom.pmf(x, theta, theta / (theta + mu))
    likelihood = np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb)
    return -np.log(likelihood).mean()


def test_zinb_nll_matches_scipy_nbinom():
    rng = np.random.default_rng(0)
    shape = (40, 25)
    mu = rng.lognormal(0.5, 1.2, shape)
    theta = rng.lognormal(0.0, 1.0, shape)
    logits = rng.normal(-1.0, 2.0, shape)
    x = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    x[rng.random(shape) < 0.3] = 0  # extra zeros
    assert (x == 0).mean() > 0.3 and x.max() > 5
    got = _losses.zinb_nll(*(torch.tensor(a) for a in (x, mu, theta, logits)))
    assert got.item() == pytest.approx(_zinb_nll_scipy(x, mu, theta, logits), rel=1e-6)


def test_zinb_nll_finite_for_extreme_dropout_logits():
    x = torch.tensor([[0.0, 3.0, 0.0, 50.0]])
    mu = torch.tensor([[1.0, 2.0, 1e-5, 1e3]])
    theta = torch.tensor([[1e-4, 1.0, 1e4, 0.5]])
    logits = torch.tensor([[40.0, 40.0, -40.0, -40.0]], requires_grad=True)
    loss = _losses.zinb_nll(x, mu, theta, logits)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_reconstruction_mse_is_mean_over_entries():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = _losses.reconstruction_mse(torch.tensor(a), torch.tensor(b)).item()
    assert got == pytest.approx(((a - b) ** 2).mean())


def _small_graph(n=30, p=0.15, seed=0):
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, k=1)
    dense = (upper | upper.T).astype(np.float32)
    return dense, sp.csr_matrix(dense)


def test_graph_bce_matches_manual_cross_entropy():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(10, 3))
    edges = np.array([[0, 1], [2, 5], [3, 9]])
    non_edges = np.array([[0, 4], [1, 8], [6, 7]])
    logits_pos = (z[edges[:, 0]] * z[edges[:, 1]]).sum(1)
    logits_neg = (z[non_edges[:, 0]] * z[non_edges[:, 1]]).sum(1)
    expected = np.concatenate([-np.log(expit(logits_pos)), -np.log(1 - expit(logits_neg))]).mean()
    got = _losses.graph_bce(torch.tensor(z), torch.tensor(edges), torch.tensor(non_edges))
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_graph_bce_with_all_non_edges_equals_dense_loss():
    dense, adj = _small_graph()
    n = len(dense)
    z = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    edges = upper_edges(adj)
    iu = np.triu_indices(n, k=1)
    non_edges = torch.tensor(np.stack(iu, 1)[dense[iu] == 0])
    empty = torch.empty((0, 2), dtype=torch.long)
    halves = 0.5 * _losses.graph_bce(z, edges, empty) + 0.5 * _losses.graph_bce(z, empty, non_edges)
    dense_loss = _losses.graph_bce_dense(z, torch.tensor(dense, dtype=torch.float64))
    assert halves.item() == pytest.approx(dense_loss.item(), rel=1e-12)


def test_sampled_graph_bce_is_unbiased_for_dense_loss():
    dense, adj = _small_graph(seed=3)
    n = len(dense)
    z = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    edges = upper_edges(adj)
    repeats = 2000  # many training draws at once: the edges repeated, as many non-edges sampled
    generator = torch.Generator().manual_seed(5)
    non_edges = sample_non_edges(pair_keys(edges, n), n, repeats * len(edges), generator)
    sampled = _losses.graph_bce(z, edges.repeat(repeats, 1), non_edges).item()
    expected = _losses.graph_bce_dense(z, torch.tensor(dense, dtype=torch.float64)).item()
    neg = -torch.nn.functional.logsigmoid(-_losses.edge_logits(z, non_edges))
    standard_error = 0.5 * neg.std().item() / np.sqrt(len(non_edges))
    assert abs(sampled - expected) < 4 * standard_error


def _cyclic_q(k=4, rows=6, seed=0):
    """Soft assignments whose columns all have the same sum (every cyclic shift of each row)."""
    base = np.random.default_rng(seed).dirichlet(np.ones(k), size=rows)
    return np.concatenate([np.roll(base, s, axis=1) for s in range(k)])


def _entropy(p):
    return -(p * np.log(p)).sum(axis=1)


def test_target_distribution_rows_sum_to_one_and_sharpen():
    q = _cyclic_q()
    p = _losses.target_distribution(torch.tensor(q)).numpy()
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (p.argmax(axis=1) == q.argmax(axis=1)).all()
    assert (_entropy(p) < _entropy(q)).all()
    # with equal cluster frequencies, p is q squared and renormalised
    assert np.allclose(p, q**2 / (q**2).sum(axis=1, keepdims=True))


def test_target_distribution_favours_small_clusters():
    q = np.array([[0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])  # cluster 0 is the frequent one
    p = _losses.target_distribution(torch.tensor(q)).numpy()
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p[0, 1] > p[0, 0]


def test_target_without_frequency_keeps_the_frequent_cluster():
    q = np.array([[0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])  # cluster 0 is the frequent one
    p = _losses.target_distribution(torch.tensor(q), 0.0).numpy()
    assert np.allclose(p, q**2 / (q**2).sum(axis=1, keepdims=True))
    assert p[0, 0] == pytest.approx(p[0, 1])  # no pull towards the rare cluster
    half = _losses.target_distribution(torch.tensor(q), 0.5).numpy()
    full = _losses.target_distribution(torch.tensor(q), 1.0).numpy()
    assert p[0, 1] < half[0, 1] < full[0, 1]


def test_kl_divergence_non_negative_zero_at_equality_and_matches_scipy():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(5), size=20)
    q = rng.dirichlet(np.ones(5), size=20)
    got = _losses.kl_divergence(torch.tensor(p), torch.tensor(q)).item()
    assert got > 0
    assert got == pytest.approx(stats.entropy(p, q, axis=1).mean(), rel=1e-6)
    same = _losses.kl_divergence(torch.tensor(q), torch.tensor(q)).item()
    assert same == pytest.approx(0.0, abs=1e-12)


def test_neighbour_contrastive_is_low_when_neighbours_coincide_and_log_b_when_uninformative():
    torch.manual_seed(0)
    pairs = torch.stack([torch.arange(0, 64, 2), torch.arange(1, 64, 2)], dim=1)  # 32 edges
    apart = torch.eye(32).repeat_interleave(2, dim=0)  # each edge's two cells coincide
    expected = math.log(1 + 31 * math.exp(-1 / 0.1))  # cosine 1 against 31 of cosine 0
    assert _losses.neighbour_contrastive(apart, pairs, temperature=0.1) == pytest.approx(
        expected, rel=1e-4
    )
    same = torch.ones(64, 8)  # every cell alike: the positive is one of 32 equals
    assert _losses.neighbour_contrastive(same, pairs) == pytest.approx(math.log(32), rel=1e-5)
