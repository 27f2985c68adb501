"""The cell graph as the network sees it: normalised sparse adjacency and edge sampling.

Nothing here ever forms an N×N dense matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def normalize_adjacency(adj: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Symmetrically normalised adjacency with self loops, ``D̃^-1/2 (A + I) D̃^-1/2``.

    Parameters
    ----------
    adj
        Square sparse adjacency ``A`` (binary in the pipeline; weights are kept as given).
        Self loops already present are replaced by exactly one loop of weight 1.

    Returns
    -------
    The normalised adjacency ``Â`` as float32 CSR.
    """
    a = sp.csr_matrix(adj, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"the adjacency must be square, got shape {a.shape}")
    a.setdiag(0)
    a.eliminate_zeros()
    a = a + sp.eye(a.shape[0], format="csr")
    inv_sqrt_degree = 1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    scale = sp.diags(inv_sqrt_degree)
    return sp.csr_matrix(scale @ a @ scale, dtype=np.float32)


def to_torch_sparse(
    matrix: sp.spmatrix | sp.sparray, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced float32 ``torch.sparse_coo_tensor`` on ``device``."""
    coo = sp.coo_matrix(matrix)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(
        indices, values, coo.shape, device=device, check_invariants=False
    ).coalesce()


def upper_edges(adj: sp.spmatrix | sp.sparray) -> torch.Tensor:
    """The graph's edges as pairs ``(i, j)`` with ``i < j`` (each undirected edge once).

    Returns
    -------
    An ``(E, 2)`` int64 tensor, sorted by ``i`` then ``j``.
    """
    upper = sp.triu(sp.csr_matrix(adj), k=1, format="csr")
    upper.eliminate_zeros()
    coo = upper.tocoo()
    order = np.lexsort((coo.col, coo.row))
    pairs = np.stack([coo.row[order], coo.col[order]], axis=1).astype(np.int64)
    return torch.from_numpy(pairs)


def pair_keys(pairs: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Encode pairs ``(i, j)`` with ``i < j`` as the integers ``i * n_nodes + j``."""
    return pairs[:, 0] * n_nodes + pairs[:, 1]


def sample_non_edges(
    edge_keys: torch.Tensor,
    n_nodes: int,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw node pairs uniformly among the pairs that are not edges (rejection sampling).

    Parameters
    ----------
    edge_keys
        Sorted :func:`pair_keys` of the graph's edges (``i < j``), on the CPU.
    n_nodes
        Number of nodes.
    n_samples
        Number of pairs to draw (with replacement).
    generator
        CPU random generator, for reproducible draws.

    Returns
    -------
    An ``(n_samples, 2)`` int64 tensor of pairs ``(i, j)`` with ``i < j``, none of them an edge.
    Each unordered non-edge is equally likely.
    """
    n_pairs = n_nodes * (n_nodes - 1) // 2
    if n_samples and n_pairs - edge_keys.numel() <= 0:
        raise ValueError("the graph is complete: there are no non-edges to sample")
    found: list[torch.Tensor] = []
    missing = n_samples
    while missing > 0:
        i = torch.randint(0, n_nodes, (missing,), generator=generator)
        j = torch.randint(0, n_nodes - 1, (missing,), generator=generator)
        j = j + (j >= i).long()  # uniform over j != i
        pairs = torch.stack([torch.minimum(i, j), torch.maximum(i, j)], dim=1)
        keys = pair_keys(pairs, n_nodes)
        if edge_keys.numel():
            pos = torch.searchsorted(edge_keys, keys).clamp(max=edge_keys.numel() - 1)
            pairs = pairs[edge_keys[pos] != keys]
        found.append(pairs)
        missing -= len(pairs)
    return torch.cat(found)[:n_samples] if found else torch.empty((0, 2), dtype=torch.long)
