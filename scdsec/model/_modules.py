"""The scDSEC network as pure ``torch.nn.Module``s (docs/method.md §3–5); no AnnData here."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._params import Fusion, GcnInput, Variant

# Clamps of the ZINB heads (as in DCA / scDeepCluster): keep μ and θ in a range where the
# log-likelihood and its gradients stay finite.
MEAN_RANGE = (1e-5, 1e6)
DISPERSION_RANGE = (1e-4, 1e4)


class GraphConvolution(nn.Module):
    """One GCN layer without activation: ``Â X U`` with a sparse normalised adjacency ``Â``.

    The product is taken in the cheaper order: propagate over the graph on the narrower of the
    input and output widths.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        if self.in_features <= self.out_features:
            return torch.sparse.mm(adj, x) @ self.weight
        return torch.sparse.mm(adj, x @ self.weight)


class StructureEnhancedEncoder(nn.Module):
    """Internal (dense) and external (GCN) stacks fused into the embedding ``Z``.

    With both stacks, after each layer ``l`` the complete representation is
    ``C_l = α H_l + (1 − α) G_l`` and ``Z = C_L``. Which representation each stream reads:

    ============================  ======================  ======================
    wiring                        internal layer reads    GCN layer reads
    ============================  ======================  ======================
    scdsec, layerwise, complete   ``C_l``                 ``C_l``
    scdsec, layerwise, independ.  ``C_l``                 ``G_l``
    scdsec, fusion none (w/o RE)  ``H_l``                 ``G_l``
    sdcn                          ``H_l``                 ``C_l``
    ============================  ======================  ======================

    Hidden layers use ReLU; the last layer of each stack is linear.

    Parameters
    ----------
    n_input
        Number of input features (genes).
    dims
        Widths of the layers after the input; the last is the embedding size.
    alpha, fusion, gcn_input, variant, use_ae, use_gcn
        See :class:`scdsec.model.ModelParams`.
    """

    def __init__(
        self,
        n_input: int,
        dims: tuple[int, ...],
        alpha: float = 0.5,
        fusion: Fusion = "layerwise",
        gcn_input: GcnInput = "complete",
        variant: Variant = "scdsec",
        use_ae: bool = True,
        use_gcn: bool = True,
    ) -> None:
        super().__init__()
        if not (use_ae or use_gcn):
            raise ValueError("at least one of use_ae and use_gcn must be true")
        widths = [n_input, *dims]
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        self.internal = nn.ModuleList([nn.Linear(a, b) for a, b in pairs]) if use_ae else None
        self.external = (
            nn.ModuleList([GraphConvolution(a, b) for a, b in pairs]) if use_gcn else None
        )
        # with a single stack alpha is irrelevant: the fused representation is that stack's
        self.alpha = alpha if use_ae and use_gcn else (1.0 if use_ae else 0.0)
        layerwise = fusion == "layerwise"
        self.internal_reads_fused = variant == "scdsec" and layerwise
        self.external_reads_fused = variant == "sdcn" or (layerwise and gcn_input == "complete")

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Embedding ``Z`` of the cells ``x`` (N × n_input) on the graph ``adj`` (sparse N × N)."""
        h = g = fused = x
        n_layers = len(self.internal if self.internal is not None else self.external)
        for layer in range(n_layers):
            last = layer == n_layers - 1
            if self.internal is not None:
                h = self.internal[layer](fused if self.internal_reads_fused else h)
                h = h if last else torch.relu(h)
            if self.external is not None:
                g = self.external[layer](fused if self.external_reads_fused else g, adj)
                g = g if last else torch.relu(g)
            fused = self._fuse(h, g)
        return fused

    def _fuse(self, h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.internal is None:
            return g
        if self.external is None:
            return h
        return self.alpha * h + (1.0 - self.alpha) * g


class DecoderOutput(NamedTuple):
    """What the expression decoder returns for each cell and gene."""

    reconstruction: torch.Tensor  # X̂, the scaled input
    mean: torch.Tensor  # ZINB mean μ, size factors included
    dispersion: torch.Tensor  # ZINB inverse dispersion θ
    dropout_logits: torch.Tensor  # logit of the zero-inflation probability π


class ExpressionDecoder(nn.Module):
    """Mirrored MLP from ``Z`` with a reconstruction head and three ZINB heads.

    With ``n_batches`` = B > 0 the one-hot batch of each cell (B columns) is concatenated to the
    input of every hidden layer and of the four heads, scVI's "deeply injected" covariate
    (Lopez et al. 2018, Nat. Methods): the decoder can explain batch effects in the counts
    itself, so ``Z`` need not encode the batch. The encoder never sees it.

    Parameters
    ----------
    latent_dim
        Width of ``Z``.
    hidden
        Widths of the hidden layers (ReLU), e.g. ``(2000, 500, 500)``; may be empty.
    n_output
        Number of genes.
    n_batches
        Number of batches B conditioning the decoder; 0 (default): no covariate, and the
        parameters (shapes and initialisation order) are those of a decoder without one.
    """

    def __init__(
        self, latent_dim: int, hidden: tuple[int, ...], n_output: int, n_batches: int = 0
    ) -> None:
        super().__init__()
        self.n_batches = int(n_batches)
        extra = self.n_batches
        widths = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a + extra, b), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.reconstruction = nn.Linear(widths[-1] + extra, n_output)
        self.mean = nn.Linear(widths[-1] + extra, n_output)
        self.dispersion = nn.Linear(widths[-1] + extra, n_output)
        self.dropout = nn.Linear(widths[-1] + extra, n_output)

    def forward(
        self, z: torch.Tensor, size_factors: torch.Tensor, batch: torch.Tensor | None = None
    ) -> DecoderOutput:
        """Decode ``z`` (N × latent); ``size_factors`` (N) scale the ZINB mean.

        ``batch`` holds each cell's batch code (int64, N, values in 0 … B − 1); it is read
        only when the decoder has a covariate (``n_batches`` > 0), and then required.
        """
        if self.n_batches == 0:
            hidden = self.hidden(z)
            heads_in = hidden
        else:
            if batch is None:
                raise ValueError(
                    f"this decoder is conditioned on {self.n_batches} batches: pass each "
                    "cell's batch code"
                )
            one_hot = nn.functional.one_hot(batch, self.n_batches).to(z.dtype)
            hidden = z
            for layer in self.hidden:
                is_linear = isinstance(layer, nn.Linear)
                hidden = layer(torch.cat([hidden, one_hot], dim=1) if is_linear else hidden)
            heads_in = torch.cat([hidden, one_hot], dim=1)
        mean = torch.clamp(torch.exp(self.mean(heads_in)), *MEAN_RANGE) * size_factors[:, None]
        dispersion = torch.clamp(
            nn.functional.softplus(self.dispersion(heads_in)), *DISPERSION_RANGE
        )
        return DecoderOutput(
            self.reconstruction(heads_in), mean, dispersion, self.dropout(heads_in)
        )


class StudentTAssignment(nn.Module):
    """Soft assignment to cluster centres with a Student's t kernel (one degree of freedom).

    ``q_ij ∝ (1 + ‖z_i − μ_j‖²)^-1``, rows normalised. The centres are a parameter, set by
    k-means on ``Z`` after pretraining (see :meth:`set_centers`).
    """

    def __init__(self, n_clusters: int, latent_dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(n_clusters, latent_dim))

    def set_centers(self, centers: torch.Tensor) -> None:
        """Overwrite the centres (M × latent) without recording a gradient.

        M may differ from the current number: the clustering stage starts from more centres
        than clusters and merges them (``scdsec.model._merge``). The parameter object stays
        the same; an optimiser's state for it must then be reset by the caller.
        """
        with torch.no_grad():
            if centers.shape == self.centers.shape:
                self.centers.copy_(centers)
            else:
                self.centers.data = centers.detach().clone().to(self.centers.device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Soft assignment ``Q`` (N × K) of the embeddings ``z`` (N × latent)."""
        squared_distance = ((z[:, None, :] - self.centers[None, :, :]) ** 2).sum(dim=2)
        kernel = 1.0 / (1.0 + squared_distance)
        return kernel / kernel.sum(dim=1, keepdim=True)


class ModuleOutput(NamedTuple):
    """Everything one forward pass produces."""

    z: torch.Tensor
    decoded: DecoderOutput
    q: torch.Tensor


class SCDSECModule(nn.Module):
    """The whole scDSEC network: encoder, expression decoder and clustering layer.

    The structure decoder ``sigmoid(z_i · z_j)`` has no parameters; it lives in
    :func:`scdsec.model._losses.graph_bce`.

    Parameters
    ----------
    n_input
        Number of genes.
    n_clusters
        Number of clusters ``K``.
    dims, alpha, fusion, gcn_input, variant, use_ae, use_gcn, batch_covariate
        See :class:`scdsec.model.ModelParams`.
    n_batches
        Number of batches B (0: no batch key). With ``batch_covariate`` and B > 0 the
        expression decoder is conditioned on the one-hot batch (:class:`ExpressionDecoder`);
        otherwise the network is the one without a batch key.
    """

    def __init__(
        self,
        n_input: int,
        n_clusters: int,
        dims: tuple[int, ...] = (500, 500, 2000, 10),
        alpha: float = 0.5,
        fusion: Fusion = "layerwise",
        gcn_input: GcnInput = "complete",
        variant: Variant = "scdsec",
        use_ae: bool = True,
        use_gcn: bool = True,
        batch_covariate: bool = True,
        n_batches: int = 0,
    ) -> None:
        super().__init__()
        dims = tuple(dims)
        self.encoder = StructureEnhancedEncoder(
            n_input, dims, alpha, fusion, gcn_input, variant, use_ae, use_gcn
        )
        self.decoder = ExpressionDecoder(
            dims[-1],
            tuple(reversed(dims[:-1])),
            n_input,
            n_batches=n_batches if batch_covariate else 0,
        )
        self.assignment = StudentTAssignment(n_clusters, dims[-1])

    def forward(
        self,
        x: torch.Tensor,
        adj: torch.Tensor,
        size_factors: torch.Tensor,
        batch: torch.Tensor | None = None,
    ) -> ModuleOutput:
        """Encode, decode and softly assign the cells ``x`` on the graph ``adj``; ``batch``
        (int64 codes, N) reaches the decoder only (see :class:`ExpressionDecoder`)."""
        z = self.encoder(x, adj)
        return ModuleOutput(z, self.decoder(z, size_factors, batch), self.assignment(z))
