"""The loss terms of the joint objective (docs/method.md §5), as plain functions.

``L = kl_weight · KL(P‖Q) + β1 · L_ZINB + β2 · L_rec + β3 · L_graph``. With all weights 1 the
terms' scales set their balance, so each function states its scale:

- :func:`zinb_nll`: per count entry (mean over cells × genes), typically 0.1–2 nats;
- :func:`reconstruction_mse`: per entry of the scaled input (mean over cells × genes), about 1
  for an untrained decoder on unit-variance input;
- :func:`graph_bce`: per scored pair (mean over edges and as many non-edges), log 2 ≈ 0.69 for
  an uninformative embedding;
- :func:`kl_divergence`: summed over clusters, mean over cells; 0 when P = Q, typically 0.01–0.5;
- :func:`neighbour_contrastive` (an option, not in the paper): per sampled kNN edge, log B ≈ 6.9
  for an uninformative embedding and B = 1,024 edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zinb_nll(
    counts: torch.Tensor,
    mean: torch.Tensor,
    dispersion: torch.Tensor,
    dropout_logits: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Negative log-likelihood of counts under a zero-inflated negative binomial.

    ``P(x) = π·[x = 0] + (1 − π)·NB(x; μ, θ)`` with ``NB(x; μ, θ) = Γ(x+θ)/(Γ(θ) x!) ·
    (θ/(θ+μ))^θ (μ/(θ+μ))^x`` and ``π = sigmoid(dropout_logits)``. Computed in log space from
    the logits, so it stays finite for π near 0 or 1.

    Parameters
    ----------
    counts
        Observed counts ``x`` (cells × genes).
    mean
        NB mean ``μ > 0``, already multiplied by the size factors.
    dispersion
        NB inverse dispersion ``θ > 0``.
    dropout_logits
        Logit of the zero-inflation probability ``π``.
    eps
        Guards the logarithms.

    Returns
    -------
    Scalar: the NLL averaged over all entries (nats per count entry).
    """
    softplus_neg_logits = F.softplus(-dropout_logits)  # = −log π
    log_theta_mu = torch.log(dispersion + mean + eps)
    # log NB(0) = θ (log θ − log(θ + μ)); zero case: log(π + (1 − π) NB(0))
    log_nb_zero = dispersion * (torch.log(dispersion + eps) - log_theta_mu)
    log_zero = F.softplus(log_nb_zero - dropout_logits) - softplus_neg_logits
    # Non-zero case, evaluated only where x > 0 (most entries are zeros and lgamma is costly):
    # log(1 − π) + log NB(x), with log(1 − π) = −logit − softplus(−logit). The positions are
    # found once and gathered from flat views (one search instead of one per boolean mask).
    where = torch.flatten(counts).nonzero().squeeze(1)

    def at_nonzero(values: torch.Tensor) -> torch.Tensor:
        return torch.flatten(values).index_select(0, where)

    x = at_nonzero(counts)
    theta = at_nonzero(dispersion)
    log_non_zero = (
        -at_nonzero(dropout_logits)
        - at_nonzero(softplus_neg_logits)
        + at_nonzero(log_nb_zero)
        + x * (torch.log(at_nonzero(mean) + eps) - at_nonzero(log_theta_mu))
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )
    # sum over entries: the zero case everywhere, swapped for the non-zero case where x > 0
    total = log_zero.sum() - at_nonzero(log_zero).sum() + log_non_zero.sum()
    return -total / counts.numel()


def reconstruction_mse(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error between the reconstruction and the network input, averaged over entries."""
    return F.mse_loss(reconstruction, target, reduction="mean")


def edge_logits(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Inner-product decoder: the logit ``z_i · z_j`` of ``P(A_ij = 1)`` for each pair."""
    return (z[pairs[:, 0]] * z[pairs[:, 1]]).sum(dim=1)


def graph_bce(z: torch.Tensor, edges: torch.Tensor, non_edges: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the structure decoder on the scored pairs.

    Parameters
    ----------
    z
        Embedding (cells × latent).
    edges
        ``(E, 2)`` pairs that are edges (target 1).
    non_edges
        ``(M, 2)`` pairs that are not (target 0); in training ``M = E`` sampled uniformly, which
        makes the loss an unbiased estimate of :func:`graph_bce_dense`.

    Returns
    -------
    Scalar: the BCE averaged over all ``E + M`` scored pairs (nats per pair).
    """
    logits = torch.cat([edge_logits(z, edges), edge_logits(z, non_edges)])
    targets = torch.cat([logits.new_ones(len(edges)), logits.new_zeros(len(non_edges))])
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="mean")


def graph_bce_dense(z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """Balanced BCE over all pairs ``i < j``, from a dense adjacency: a check for small graphs.

    Equals ``½ mean_edges(−log σ(z_i·z_j)) + ½ mean_non-edges(−log(1 − σ(z_i·z_j)))``, the
    expectation of :func:`graph_bce` with as many uniformly sampled non-edges as edges. Forms an
    N×N matrix: use it only in tests.
    """
    upper = torch.triu(torch.ones_like(adj, dtype=torch.bool), diagonal=1)
    logits = (z @ z.T)[upper]
    targets = (adj[upper] > 0).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return 0.5 * losses[targets == 1].mean() + 0.5 * losses[targets == 0].mean()


def target_distribution(q: torch.Tensor, frequency_exponent: float = 1.0) -> torch.Tensor:
    """Sharpened target distribution P of the soft assignment Q (N × K), rows summing to 1.

    ``p_ij ∝ q_ij² / f_j^γ`` with the soft cluster frequency ``f_j = Σ_i q_ij`` and
    ``γ = frequency_exponent``. γ = 1 is DEC's target (Xie et al. 2016, eq. 3): dividing by
    ``f_j`` shrinks large clusters, which favours clusters of equal size. γ = 0 sharpens Q
    without that pull, so that a large cell type is not pushed to split; values between weigh
    the two.
    """
    weight = q**2
    if frequency_exponent:
        weight = weight / q.sum(dim=0, keepdim=True) ** frequency_exponent
    return weight / weight.sum(dim=1, keepdim=True)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``KL(P‖Q)`` summed over clusters, averaged over cells (nats per cell); 0 iff P = Q."""
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(dim=1).mean()


def neighbour_contrastive(
    z: torch.Tensor, pairs: torch.Tensor, temperature: float = 0.5
) -> torch.Tensor:
    """Neighbourhood contrastive loss: a cell's kNN neighbour is its positive.

    For B sampled edges (i, j) of the kNN graph, ``z_i`` must pick ``z_j`` among the B
    ``z_j`` of the sample (and the other way round) by cosine similarity over
    ``temperature`` — InfoNCE with in-batch negatives (Oord et al. 2018; SimCLR's symmetric
    form, Chen et al. 2020), the positives taken from the graph as in neighbourhood
    contrastive clustering (scNAME, Wan et al. 2022). A sampled negative can be a neighbour
    too; with B ≪ N that is rare.

    Parameters
    ----------
    z
        Embedding of the batch's cells (B_cells × latent).
    pairs
        (B, 2) edges (positions in ``z``), B ≥ 2.
    temperature
        Softmax temperature of the cosine similarities.

    Returns
    -------
    Scalar: the cross-entropy averaged over the edges and both directions (nats per edge).
    """
    left = F.normalize(z[pairs[:, 0]], dim=1)
    right = F.normalize(z[pairs[:, 1]], dim=1)
    logits = left @ right.T / temperature
    target = torch.arange(len(pairs), device=z.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
