"""Layer lists of the networks the project knows, for cost models and for checking models/.

Each network is a flat list of its weight layers (:class:`Conv` and :class:`Linear`) with
their input sizes, in forward order, named by the PyTorch module path that models/ uses.
A 2x2 max-pool right after a conv's ReLU is part of that conv (:attr:`Conv.pool`: the engine
fuses it into the layer's output path); other topology (residual adds, VGG's and ResNet's
pooling) is not needed for counting and lives in models/.

Which convs are sparsified (METHOD.md): every 3x3 conv with ``groups == 1`` except the first
conv on the image; 1x1 convs, depthwise convs and FC layers stay dense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .patterns import kernel_masks, period_table, PeriodTable
from .variants import Variant, split_model_name, VariantNameError

__all__ = ["Conv", "Linear", "Network", "DATASETS", "NETWORKS", "build_network", "layer_masks",
           "layer_period_tables", "parse_model"]

#: dataset -> (input channels, input height = width, classes)
DATASETS = {
    "cifar10": (3, 32, 10),
    "tinyimagenet": (3, 64, 200),
    "fashion_mnist": (1, 28, 10),
    "digits": (1, 8, 10),
}


@dataclass(frozen=True)
class Conv:
    """A k x k convolution with padding k // 2 (followed by BN when ``bn``).

    Members
    -------
    h_out, w_out : int
        Output size: ``(h_in + 2 * (k // 2) - k) // stride + 1``.
    sparse : bool
        Whether the layer's kernels follow the variant's pattern (set by :class:`Network`).
    pool : bool
        A 2x2 max-pool (stride 2, floor) follows the layer's ReLU, so the next layer's input is
        ``h_out // 2`` x ``w_out // 2`` (the sequential networks only; no weights, not counted).
    """

    name: str
    c_in: int
    c_out: int
    k: int
    stride: int
    h_in: int
    w_in: int
    groups: int = 1
    bias: bool = False
    bn: bool = True
    sparse: bool = False
    pool: bool = False

    @property
    def h_out(self) -> int:
        return (self.h_in + 2 * (self.k // 2) - self.k) // self.stride + 1

    @property
    def w_out(self) -> int:
        return (self.w_in + 2 * (self.k // 2) - self.k) // self.stride + 1

    @property
    def weight_shape(self) -> tuple:
        return (self.c_out, self.c_in // self.groups, self.k, self.k)


@dataclass(frozen=True)
class Linear:
    """A fully connected layer with bias."""

    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Network:
    """The weight layers of one network for one dataset.

    Members
    -------
    convs : list of Conv
        The conv layers, in forward order.
    """

    name: str
    dataset: str
    layers: tuple = field(repr=False)

    @property
    def convs(self) -> list:
        return [l for l in self.layers if isinstance(l, Conv)]


def _vgg16(ds):
    c, hw, classes = DATASETS[ds]
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, i = [], 0
    for v in cfg:
        if v == "M":
            hw //= 2
            continue
        layers.append(Conv(f"features.{i}", c, v, 3, 1, hw, hw))
        c, i = v, i + 1
    # Global average pooling, then one FC (CIFAR-10 head: 512 -> 10).
    layers.append(Linear("classifier", 512, classes))
    return layers


def _resnet18(ds, width=1.0):
    c_img, hw, classes = DATASETS[ds]
    widths = [int(w * width) for w in (64, 128, 256, 512)]
    layers = [Conv("conv1", c_img, widths[0], 3, 1, hw, hw)]
    c = widths[0]
    for stage, w in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"layer{stage + 1}.{block}"
            layers.append(Conv(f"{p}.conv1", c, w, 3, stride, hw, hw))
            hw_out = (hw - 1) // stride + 1
            layers.append(Conv(f"{p}.conv2", w, w, 3, 1, hw_out, hw_out))
            if stride != 1 or c != w:
                layers.append(Conv(f"{p}.shortcut.0", c, w, 1, stride, hw, hw))
            c, hw = w, hw_out
    layers.append(Linear("linear", c, classes))
    return layers


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _mobilenetv2(ds, width=1.0):
    c_img, hw, classes = DATASETS[ds]
    # (expansion, out_planes, num_blocks, stride); stride 1 in the second group for small images.
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]
    c = _make_divisible(32 * width)
    layers = [Conv("conv1", c_img, c, 3, 1, hw, hw)]
    i = 0
    for expansion, out, num, stride in cfg:
        out = _make_divisible(out * width)
        for s in [stride] + [1] * (num - 1):
            planes = c * expansion
            p = f"layers.{i}"
            layers.append(Conv(f"{p}.conv1", c, planes, 1, 1, hw, hw))
            layers.append(Conv(f"{p}.conv2", planes, planes, 3, s, hw, hw, groups=planes))
            hw_out = (hw - 1) // s + 1
            layers.append(Conv(f"{p}.conv3", planes, out, 1, 1, hw_out, hw_out))
            if s == 1 and c != out:
                layers.append(Conv(f"{p}.shortcut.0", c, out, 1, 1, hw, hw))
            c, hw, i = out, hw_out, i + 1
    last = _make_divisible(1280 * max(1.0, width))
    layers.append(Conv("conv2", c, last, 1, 1, hw, hw))
    layers.append(Linear("linear", last, classes))
    return layers


def _fashionnet(ds):
    """Small net for Fashion-MNIST that fits an Arty A7-35T's block RAM (weights and activations)."""
    c_img, hw, classes = DATASETS[ds]
    layers = [Conv("conv1", c_img, 16, 3, 1, hw, hw),
              Conv("conv2", 16, 32, 3, 2, hw, hw)]
    hw = (hw - 1) // 2 + 1
    layers.append(Conv("conv3", 32, 32, 3, 2, hw, hw))
    hw = (hw - 1) // 2 + 1
    layers.append(Conv("conv4", 32, 64, 3, 2, hw, hw))
    hw = (hw - 1) // 2 + 1
    layers.append(Linear("fc", 64 * hw * hw, classes))
    return layers


def _fashionpoolnet(ds):
    """FashionNet's widths with stride-1 convs, each followed by a 2x2 max-pool (the engine's
    pooled layers) where FashionNet strides: 28 -> 14 -> 7 -> 3, then the FC."""
    c_img, hw, classes = DATASETS[ds]
    layers, c = [], c_img
    for i, c_out in enumerate((16, 32, 64), start=1):
        layers.append(Conv(f"conv{i}", c, c_out, 3, 1, hw, hw, pool=True))
        c, hw = c_out, hw // 2
    layers.append(Linear("fc", c * hw * hw, classes))
    return layers


def _digitsnet(ds):
    """Tiny net for the 8x8 digits set: the fastest whole network for RTL simulation."""
    c_img, hw, classes = DATASETS[ds]
    layers = [Conv("conv1", c_img, 8, 3, 1, hw, hw),
              Conv("conv2", 8, 16, 3, 2, hw, hw)]
    hw = (hw - 1) // 2 + 1
    layers.append(Conv("conv3", 16, 16, 3, 1, hw, hw))
    layers.append(Linear("fc", 16 * hw * hw, classes))
    return layers


NETWORKS = {
    "VGG16": _vgg16,
    "ResNet18": _resnet18,
    "ResNet18_0.5": lambda ds: _resnet18(ds, 0.5),
    "MobileNetV2": _mobilenetv2,
    "MobileNetV2_0.75": lambda ds: _mobilenetv2(ds, 0.75),
    "FashionNet": _fashionnet,
    "FashionPoolNet": _fashionpoolnet,
    "DigitsNet": _digitsnet,
}

#: The dataset each small network is made for (others default to CIFAR-10).
DEFAULT_DATASET = {"FashionNet": "fashion_mnist", "FashionPoolNet": "fashion_mnist",
                   "DigitsNet": "digits"}


def build_network(net: str, dataset: str | None = None) -> Network:
    """The layer list of network ``net`` (no variant suffix) for ``dataset``."""
    if net not in NETWORKS:
        raise VariantNameError(f"Unknown network {net!r}; known: {', '.join(NETWORKS)}")
    dataset = dataset or DEFAULT_DATASET.get(net, "cifar10")
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    layers = NETWORKS[net](dataset)
    first = True
    marked = []
    for l in layers:
        if isinstance(l, Conv):
            sparse = l.k == 3 and l.groups == 1 and not first
            marked.append(Conv(**{**l.__dict__, "sparse": sparse}))
            first = False
        else:
            marked.append(l)
    return Network(net, dataset, tuple(marked))


def _sparse_layers(network: Network):
    return [l for l in network.convs if l.sparse]


def layer_masks(network: Network, variant: Variant, *, seed: int = 0, mode: str = "random") -> dict:
    """Masks ``{conv name: bool [c_out, c_in/groups, k, k]}`` of every conv under ``variant``.

    Sparse layer number ``i`` (in forward order) uses pattern seed ``seed + i``, so models/ and
    the hardware derive the same masks from the same (variant, seed, mode).
    """
    masks = {}
    index = 0
    for l in network.convs:
        if l.sparse and not variant.is_dense:
            masks[l.name] = kernel_masks(variant, l.c_out, l.c_in, k=l.k, seed=seed + index, mode=mode)
        else:
            masks[l.name] = np.ones(l.weight_shape, dtype=bool)
        index += l.sparse
    return masks


def layer_period_tables(network: Network, variant: Variant, *, seed: int = 0,
                        mode: str = "random") -> dict:
    """Period tables ``{conv name: PeriodTable}``; dense layers get the all-taps one-slot table."""
    if not variant.is_periodic and not variant.is_dense:
        raise ValueError(f"{variant} is not periodic: it has no period tables")
    tables = {}
    index = 0
    for l in network.convs:
        if l.sparse and variant.is_periodic:
            tables[l.name] = period_table(variant, k=l.k, seed=seed + index, mode=mode)
        else:
            tables[l.name] = PeriodTable(l.k, (tuple(range(l.k * l.k)),))
        index += l.sparse
    return tables


def parse_model(name: str, dataset: str | None = None) -> tuple[Network, Variant]:
    """``"ResNet18_PSD1_P8"`` -> (its Network, its Variant)."""
    net, variant = split_model_name(name)
    return build_network(net, dataset), variant

