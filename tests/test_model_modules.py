"""The network's modules and graph helpers: shapes, gradients, wiring, sparse vs dense."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scdsec.model._graph import (
    normalize_adjacency,
    pair_keys,
    sample_non_edges,
    to_torch_sparse,
    upper_edges,
)
from scdsec.model._modules import (
    DISPERSION_RANGE,
    ExpressionDecoder,
    GraphConvolution,
    SCDSECModule,
    StructureEnhancedEncoder,
    StudentTAssignment,
)

N_CELLS, N_GENES, DIMS = 24, 12, (16, 8, 20, 3)

WIRINGS = {
    "layerwise-complete": {},
    "layerwise-independent": {"gcn_input": "independent"},
    "no-fusion": {"fusion": "none"},
    "sdcn": {"variant": "sdcn"},
    "internal-only": {"use_gcn": False},
    "external-only": {"use_ae": False},
}


def _random_graph(n=N_CELLS, p=0.2, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, k=1)
    return sp.csr_matrix((upper | upper.T).astype(np.float32))


def _dense_normalized(adj: sp.csr_matrix) -> np.ndarray:
    a = adj.toarray().astype(np.float64) + np.eye(adj.shape[0])
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return d[:, None] * a * d[None, :]


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    adj = to_torch_sparse(normalize_adjacency(_random_graph()))
    x = torch.randn(N_CELLS, N_GENES)
    size_factors = torch.rand(N_CELLS) + 0.5
    return x, adj, size_factors


def test_normalize_adjacency_matches_dense_formula_and_replaces_self_loops():
    adj = _random_graph()
    expected = _dense_normalized(adj)
    assert np.allclose(normalize_adjacency(adj).toarray(), expected, atol=1e-6)
    with_loops = adj + 3 * sp.eye(adj.shape[0])
    assert np.allclose(normalize_adjacency(with_loops).toarray(), expected, atol=1e-6)


@pytest.mark.parametrize(("n_in", "n_out"), [(12, 5), (5, 12)])
def test_sparse_gcn_layer_matches_dense_reference(n_in, n_out):
    adj = _random_graph()
    layer = GraphConvolution(n_in, n_out).double()
    x = torch.randn(N_CELLS, n_in, dtype=torch.float64)
    sparse_adj = to_torch_sparse(normalize_adjacency(adj)).double()
    got = layer(x, sparse_adj).detach().numpy()
    expected = _dense_normalized(adj) @ x.numpy() @ layer.weight.detach().numpy()
    assert np.allclose(got, expected, atol=1e-5)


def _assert_all_parameters_get_gradients(module: torch.nn.Module, loss: torch.Tensor):
    loss.backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{name} received no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} received a zero gradient"


@pytest.mark.parametrize("wiring", WIRINGS)
def test_encoder_shapes_and_gradients(inputs, wiring):
    x, adj, _ = inputs
    encoder = StructureEnhancedEncoder(N_GENES, DIMS, alpha=0.4, **WIRINGS[wiring])
    z = encoder(x, adj)
    assert z.shape == (N_CELLS, DIMS[-1])
    _assert_all_parameters_get_gradients(encoder, (z**2).sum())
    n_layers = len(DIMS)
    assert encoder.internal is None or len(encoder.internal) == n_layers
    assert encoder.external is None or len(encoder.external) == n_layers


def _layer_inputs_and_outputs(encoder, x, adj):
    """Run the encoder, recording what each internal and GCN layer read and returned."""
    seen = {"internal": [], "external": []}

    def hook(kind):
        return lambda module, args, output: seen[kind].append((args[0].detach(), output.detach()))

    for kind in seen:
        for layer in getattr(encoder, kind) or []:
            layer.register_forward_hook(hook(kind))
    z = encoder(x, adj).detach()
    return seen, z


@pytest.mark.parametrize(
    ("wiring", "internal_reads", "external_reads"),
    [
        ("layerwise-complete", "fused", "fused"),
        ("layerwise-independent", "fused", "own"),
        ("no-fusion", "own", "own"),
        ("sdcn", "own", "fused"),
    ],
)
def test_encoder_wiring(inputs, wiring, internal_reads, external_reads):
    x, adj, _ = inputs
    alpha = 0.3
    encoder = StructureEnhancedEncoder(N_GENES, DIMS, alpha=alpha, **WIRINGS[wiring])
    seen, z = _layer_inputs_and_outputs(encoder, x, adj)
    for layer in range(1, len(DIMS)):
        h = torch.relu(seen["internal"][layer - 1][1])
        g = torch.relu(seen["external"][layer - 1][1])
        fused = alpha * h + (1 - alpha) * g
        expected_internal = fused if internal_reads == "fused" else h
        expected_external = fused if external_reads == "fused" else g
        assert torch.allclose(seen["internal"][layer][0], expected_internal, atol=1e-6)
        assert torch.allclose(seen["external"][layer][0], expected_external, atol=1e-6)
    # the last layers are linear and fused once more into Z
    h_last, g_last = seen["internal"][-1][1], seen["external"][-1][1]
    assert torch.allclose(z, alpha * h_last + (1 - alpha) * g_last, atol=1e-6)


def test_single_stack_encoders_ignore_alpha_and_internal_ignores_graph(inputs):
    x, adj, _ = inputs
    torch.manual_seed(1)
    internal = StructureEnhancedEncoder(N_GENES, DIMS, alpha=0.2, use_gcn=False)
    z = internal(x, adj)
    other_graph = to_torch_sparse(normalize_adjacency(_random_graph(seed=5)))
    assert torch.equal(z, internal(x, other_graph))
    external = StructureEnhancedEncoder(N_GENES, DIMS, alpha=0.9, use_ae=False)
    g = x
    for i, layer in enumerate(external.external):
        g = layer(g, adj)
        g = g if i == len(DIMS) - 1 else torch.relu(g)
    assert torch.allclose(external(x, adj), g)


def test_decoder_shapes_heads_and_gradients(inputs):
    _, _, size_factors = inputs
    decoder = ExpressionDecoder(DIMS[-1], tuple(reversed(DIMS[:-1])), N_GENES)
    z = torch.randn(N_CELLS, DIMS[-1])
    out = decoder(z, size_factors)
    for tensor in out:
        assert tensor.shape == (N_CELLS, N_GENES)
    assert (out.dispersion >= DISPERSION_RANGE[0]).all()
    assert (out.dispersion <= DISPERSION_RANGE[1]).all()
    # the mean scales with the size factor
    doubled = decoder(z, 2 * size_factors).mean
    assert torch.allclose(doubled, 2 * out.mean)
    loss = sum(t.sum() for t in out)
    _assert_all_parameters_get_gradients(decoder, loss)
    assert [m.out_features for m in decoder.hidden if hasattr(m, "out_features")] == [20, 8, 16]


def test_student_t_assignment_matches_formula():
    assignment = StudentTAssignment(3, 2)
    centers = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    assignment.set_centers(centers)
    z = torch.tensor([[0.5, 0.0], [3.0, -1.0]])
    q = assignment(z).detach().numpy()
    kernel = 1.0 / (1.0 + ((z[:, None, :] - centers[None]) ** 2).sum(-1).numpy())
    assert np.allclose(q, kernel / kernel.sum(1, keepdims=True))
    assert np.allclose(q.sum(axis=1), 1.0)


@pytest.mark.parametrize("wiring", WIRINGS)
def test_full_module_gradients_reach_every_parameter(inputs, wiring):
    x, adj, size_factors = inputs
    module = SCDSECModule(N_GENES, 4, dims=DIMS, alpha=0.5, **WIRINGS[wiring])
    module.assignment.set_centers(torch.randn(4, DIMS[-1]))
    out = module(x, adj, size_factors)
    assert out.z.shape == (N_CELLS, DIMS[-1]) and out.q.shape == (N_CELLS, 4)
    loss = (out.z**2).sum() + sum(t.sum() for t in out.decoded) + (out.q**2).sum()
    _assert_all_parameters_get_gradients(module, loss)


def test_upper_edges_lists_each_edge_once():
    adj = _random_graph()
    edges = upper_edges(adj).numpy()
    assert len(edges) == adj.nnz // 2
    assert (edges[:, 0] < edges[:, 1]).all()
    assert adj[edges[:, 0], edges[:, 1]].min() == 1


def test_sample_non_edges_uniform_and_never_an_edge():
    adj = _random_graph(n=12, p=0.4, seed=2)
    n = adj.shape[0]
    edges = upper_edges(adj)
    keys = pair_keys(edges, n)
    pairs = sample_non_edges(keys, n, 60_000, torch.Generator().manual_seed(0)).numpy()
    assert pairs.shape == (60_000, 2)
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert adj[pairs[:, 0], pairs[:, 1]].max() == 0
    counts = np.unique(pairs[:, 0] * n + pairs[:, 1], return_counts=True)[1]
    n_non_edges = n * (n - 1) // 2 - len(edges)
    assert len(counts) == n_non_edges
    expected = len(pairs) / n_non_edges
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_sample_non_edges_refuses_a_complete_graph():
    complete = sp.csr_matrix(np.ones((4, 4)) - np.eye(4))
    with pytest.raises(ValueError, match="complete"):
        sample_non_edges(pair_keys(upper_edges(complete), 4), 4, 3)
