"""Cost model: non-zero weights, conv FLOPs and parameter counts of a network under a variant.

Counts are exact and come from the layer masks of :func:`hw.networks.layer_masks`, so they hold
for every ``C_i`` (also when it is not a multiple of the period P) and for every pattern mode.
The analytic per-layer formulas of METHOD.md ("Counting") are here as separate functions; they
are what the paper quotes and what the tests cross-check the mask counts against.

Counting rules
--------------
- One multiply-accumulate (MAC) is one FLOP. A conv performs one MAC per non-zero weight per
  output pixel, so ``FLOPs = nnz * H_o * W_o``; taps that land on the zero padding are counted,
  as in the formula ``k^2 H_o W_o C_o C_i``. A grouped conv has ``C_i / groups`` weights per
  kernel stack, so its dense count is ``k^2 H_o W_o C_o C_i / groups``.
- Parameters of a model = non-zero conv weights (pre-defined zeros are not parameters) + conv
  biases + BN gamma and beta (2 per BN channel; running mean and variance are buffers) + FC
  weights and biases. FC layers are never sparsified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .networks import Conv, Linear, Network, build_network, layer_masks, parse_model, DATASETS
from .patterns import MODES
from .variants import Variant, PAPER_VARIANTS, DENSE

__all__ = ["LayerCost", "NetworkCost", "conv_cost", "linear_cost", "layer_costs", "network_cost",
           "dense_flops", "sparse_flops", "boosted_flops", "dwc_pwc_flops", "shuffle_flops",
           "params_report", "flops_report", "baselines", "REPORT_NETWORKS", "BASELINE_NETWORKS"]

#: Networks of :func:`params_report` and :func:`flops_report` (every variant of PAPER_VARIANTS).
REPORT_NETWORKS = ("VGG16", "ResNet18")
#: Dense low-complexity baselines of :func:`baselines` (their convs are never sparsified).
BASELINE_NETWORKS = ("MobileNetV2",)


# --- validation -------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _check_seed_mode(seed, mode):
    _check_int("Pattern seed", seed, 0)
    if mode not in MODES:
        raise ValueError(f"Pattern mode must be one of {', '.join(MODES)}, not {mode!r}")


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


# --- analytic formulas (METHOD.md, "Counting") ------------------------------------------------

def _check_layer(k, h_out, w_out, c_in, c_out):
    for name, v in (("k", k), ("h_out", h_out), ("w_out", w_out), ("c_in", c_in), ("c_out", c_out)):
        _check_int(name, v)


def dense_flops(*, k: int, h_out: int, w_out: int, c_in: int, c_out: int) -> int:
    """Dense conv: ``k^2 H_o W_o C_o C_i``."""
    _check_layer(k, h_out, w_out, c_in, c_out)
    return k * k * h_out * w_out * c_out * c_in


def sparse_flops(*, kss: int, k: int, h_out: int, w_out: int, c_in: int, c_out: int) -> int:
    """Sparse conv with every kernel of support size n (periodic or not): ``n H_o W_o C_o C_i``."""
    _check_layer(k, h_out, w_out, c_in, c_out)
    if not isinstance(kss, (int, np.integer)) or not 1 <= kss <= k * k:
        raise ValueError(f"kss must be an integer in 1..{k * k} for a {k}x{k} kernel, not {kss!r}")
    return kss * h_out * w_out * c_out * c_in


def boosted_flops(*, kss: int, period: int, k: int, h_out: int, w_out: int, c_in: int,
                  c_out: int) -> int:
    """Boosted conv (one dense kernel per period): ``[(C_i/P) k^2 + (C_i - C_i/P) n] H_o W_o C_o``.

    Defined only when ``C_i`` is a multiple of P; otherwise the count depends on where each
    filter's dense kernels fall, so count from the masks (:func:`conv_cost`).
    """
    _check_layer(k, h_out, w_out, c_in, c_out)
    sparse_flops(kss=kss, k=k, h_out=1, w_out=1, c_in=1, c_out=1)  # validates kss
    _check_int("period", period, 2)
    if c_in % period:
        raise ValueError(f"The boosted formula needs c_in to be a multiple of the period: c_in = "
                         f"{c_in}, period = {period}; count from the masks instead")
    dense_in = c_in // period
    return (dense_in * k * k + (c_in - dense_in) * kss) * h_out * w_out * c_out


def dwc_pwc_flops(*, k: int, h_out: int, w_out: int, c_in: int, c_out: int) -> int:
    """MobileNet-like depthwise k x k conv then pointwise 1x1 conv: ``H_o W_o C_i (k^2 + C_o)``."""
    _check_layer(k, h_out, w_out, c_in, c_out)
    return h_out * w_out * c_in * (k * k + c_out)


def shuffle_flops(*, k: int, h_out: int, w_out: int, c_in: int, c_out: int, groups: int) -> int:
    """ShuffleNet-like (METHOD.md): ``H_o W_o C_o k^2 (C_i/G + 1)``.

    The first term is a k x k group conv ``C_i -> C_o`` with G groups; the second equals a k x k
    depthwise conv on the ``C_o`` outputs.
    """
    _check_layer(k, h_out, w_out, c_in, c_out)
    _check_int("groups", groups)
    if c_in % groups:
        raise ValueError(f"c_in must be a multiple of groups: c_in = {c_in}, groups = {groups}")
    return h_out * w_out * c_out * k * k * (c_in // groups + 1)


# --- per-layer rows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerCost:
    """The costs of one weight layer.

    Members
    -------
    name : str
        The layer's module path (as in :mod:`hw.networks`).
    kind : str
        ``"conv"`` or ``"fc"``.
    shape : tuple of int
        Weight shape: ``(C_o, C_i / groups, k, k)`` or ``(out_features, in_features)``.
    sparse : bool
        Whether the layer follows the variant's pattern (False for dense layers and any dense variant).
    weights : int
        Weight count of the dense layer.
    nonzeros : int
        Weights that may be non-zero (the mask's true entries; FC: all weights).
    out_size : tuple of int
        ``(C_o, H_o, W_o)`` or ``(out_features,)``.
    flops : int
        MACs of one forward pass: ``nonzeros * H_o * W_o`` (FC: ``nonzeros``).
    params : int
        Trainable parameters: ``nonzeros`` + biases + BN gamma and beta.
    density : float
        ``nonzeros / weights``.
    """

    name: str
    kind: str
    shape: tuple
    sparse: bool
    weights: int
    nonzeros: int
    out_size: tuple
    flops: int
    params: int

    @property
    def density(self) -> float:
        return self.nonzeros / self.weights


def conv_cost(layer: Conv, mask: np.ndarray | None = None, *, sparse: bool | None = None) -> LayerCost:
    """The row of conv ``layer`` under boolean ``mask`` (shape ``layer.weight_shape``; None = dense).

    ``sparse`` defaults to ``layer.sparse`` and only labels the row.
    """
    if not isinstance(layer, Conv):
        raise TypeError(f"conv_cost needs a hw.networks.Conv, not {type(layer).__name__}")
    if layer.c_in % layer.groups or layer.c_out % layer.groups:
        raise ValueError(f"Layer {layer.name}: c_in = {layer.c_in} and c_out = {layer.c_out} must be "
                         f"multiples of groups = {layer.groups}")
    weights = int(np.prod(layer.weight_shape))
    if mask is None:
        nonzeros = weights
    else:
        mask = np.asarray(mask)
        if mask.shape != layer.weight_shape or mask.dtype != bool:
            raise ValueError(f"Layer {layer.name}: mask must be bool of shape {layer.weight_shape}, "
                             f"not {mask.dtype} {mask.shape}")
        nonzeros = int(np.count_nonzero(mask))
    params = nonzeros + layer.c_out * (int(layer.bias) + 2 * int(layer.bn))
    return LayerCost(layer.name, "conv", layer.weight_shape,
                     layer.sparse if sparse is None else bool(sparse), weights, nonzeros,
                     (layer.c_out, layer.h_out, layer.w_out), nonzeros * layer.h_out * layer.w_out,
                     params)


def linear_cost(layer: Linear) -> LayerCost:
    """The row of FC ``layer`` (dense, with bias)."""
    weights = layer.in_features * layer.out_features
    return LayerCost(layer.name, "fc", (layer.out_features, layer.in_features), False, weights,
                     weights, (layer.out_features,), weights, weights + layer.out_features)


def layer_costs(network: Network, variant: Variant, *, seed: int = 0,
                mode: str = "random") -> tuple:
    """Rows (:class:`LayerCost`) of every weight layer of ``network`` under ``variant``, in order.

    ``seed`` and ``mode`` are passed to :func:`hw.networks.layer_masks`.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a hw.networks.Network, not {type(network).__name__}")
    if not isinstance(variant, Variant):
        raise TypeError(f"variant must be a hw.variants.Variant, not {type(variant).__name__}")
    _check_seed_mode(seed, mode)
    counts = _mask_counts(network, variant, seed, mode)
    rows = []
    for l in network.layers:
        if isinstance(l, Conv):
            row = conv_cost(l, sparse=l.sparse and not variant.is_dense)
            nnz = counts[l.name]
            # Only the non-zero count depends on the mask; the rest is the layer's geometry.
            row = LayerCost(row.name, row.kind, row.shape, row.sparse, row.weights, nnz,
                            row.out_size, nnz * l.h_out * l.w_out, row.params - row.nonzeros + nnz)
            rows.append(row)
        else:
            rows.append(linear_cost(l))
    return tuple(rows)


_COUNT_CACHE: dict = {}


def _mask_counts(network: Network, variant: Variant, seed: int, mode: str) -> dict:
    # Reports ask for the same layers many times (two datasets, params and FLOPs); the random
    # pSC masks of wide layers are the slow part. Masks depend on the conv shapes and their
    # order only, not on the input size, so the key leaves the dataset's image size out.
    key = (tuple((l.name, l.c_out, l.c_in, l.k, l.groups, l.sparse) for l in network.convs),
           variant, seed, mode)
    if key not in _COUNT_CACHE:
        if len(_COUNT_CACHE) >= 256:
            _COUNT_CACHE.clear()
        _COUNT_CACHE[key] = {name: int(np.count_nonzero(m)) for name, m in
                             layer_masks(network, variant, seed=seed, mode=mode).items()}
    return _COUNT_CACHE[key]


# --- whole networks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkCost:
    """The costs of one network for one dataset under one variant.

    Members
    -------
    model : str
        ``"<NET>_<variant>"``, e.g. ``"VGG16_PSD1_P8"``.
    dataset : str
        Dataset the input size and classifier come from.
    rows : tuple of LayerCost
        One row per weight layer, in forward order.
    conv_weights : int
        Conv weights of the dense model.
    conv_nonzero : int
        Conv weights that may be non-zero under the variant.
    conv_flops : int
        Conv MACs of one forward pass (FC excluded).
    fc_flops : int
        FC MACs of one forward pass.
    total_params : int
        Every trainable parameter: non-zero conv weights, biases, BN gamma and beta, FC.
    """

    model: str
    dataset: str
    rows: tuple

    def _sum(self, field, kind):
        return sum(getattr(r, field) for r in self.rows if r.kind == kind)

    @property
    def conv_weights(self) -> int:
        return self._sum("weights", "conv")

    @property
    def conv_nonzero(self) -> int:
        return self._sum("nonzeros", "conv")

    @property
    def conv_flops(self) -> int:
        return self._sum("flops", "conv")

    @property
    def fc_flops(self) -> int:
        return self._sum("flops", "fc")

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)


def network_cost(model: str, *, dataset: str | None = None, seed: int = 0,
                 mode: str = "random") -> NetworkCost:
    """Costs of ``model`` (``"NET"`` or ``"NET_<variant>"``, e.g. ``"ResNet18_0.5_PSD1_P8"``).

    ``dataset`` defaults to the network's own (CIFAR-10 for the large networks).
    """
    if dataset is not None:
        _check_dataset(dataset)
    _check_seed_mode(seed, mode)
    network, variant = parse_model(model, dataset)
    return NetworkCost(f"{network.name}_{variant}", network.dataset,
                       layer_costs(network, variant, seed=seed, mode=mode))


# --- reports (used by hw.report) ----------------------------------------------------------------

def _report(dataset, variants, seed, mode, value):
    _check_dataset(dataset)
    _check_seed_mode(seed, mode)
    out = {}
    for net in REPORT_NETWORKS:
        network = build_network(net, dataset)
        for v in variants:
            cost = NetworkCost(f"{net}_{v}", dataset, layer_costs(network, v, seed=seed, mode=mode))
            out[cost.model] = value(cost)
    return out


def params_report(*, seed: int = 0, mode: str = "random", variants=PAPER_VARIANTS) -> dict:
    """``{"<NET>_<variant>": {"total": int, "conv_nonzero": int}}`` of the CIFAR-10 models.

    For every network of :data:`REPORT_NETWORKS` and every variant of ``variants`` (default:
    :data:`hw.variants.PAPER_VARIANTS`). With ``mode="authors"`` pass only the variants the
    authors' rule defines (PSD with KSS 1, 2 or 4, and the dense one).
    """
    return _report("cifar10", variants, seed, mode,
                   lambda c: {"total": c.total_params, "conv_nonzero": c.conv_nonzero})


def flops_report(dataset: str = "cifar10", *, seed: int = 0, mode: str = "random",
                 variants=PAPER_VARIANTS) -> dict:
    """``{"<NET>_<variant>": conv FLOPs}`` for ``dataset`` (``"cifar10"`` or ``"tinyimagenet"``).

    Same networks and variants as :func:`params_report`.
    """
    return _report(dataset, variants, seed, mode, lambda c: c.conv_flops)


def baselines(dataset: str = "cifar10") -> dict:
    """The dense baselines: ``{"MobileNetV2": {"flops": int, "total": int, "conv_nonzero": int}}``.

    ``flops`` are conv FLOPs; ``total`` counts the parameters of the model for ``dataset``
    (its classifier has the dataset's number of classes).
    """
    _check_dataset(dataset)
    out = {}
    for net in BASELINE_NETWORKS:
        c = NetworkCost(net, dataset, layer_costs(build_network(net, dataset), DENSE))
        out[net] = {"flops": c.conv_flops, "total": c.total_params, "conv_nonzero": c.conv_nonzero}
    return out
