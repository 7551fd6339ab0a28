"""The network zoo: ``build("ResNet18_PSD1_P8", "cifar10")`` -> ``nn.Module``.

Every network is built from its layer list in :mod:`hw.networks`: the conv modules have exactly
the names and shapes of ``hw.networks.build_network(net, dataset)``, and each sparse conv gets
its mask from ``hw.networks.layer_masks(network, variant, seed=..., mode=...)``, so the model and
the hardware use the same patterns by construction. Conv layers have no bias and are followed by
BatchNorm and ReLU; the first conv, 1x1 convs, depthwise convs and FC layers are dense.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hw.networks import NETWORKS, Conv, Linear, build_network, layer_masks
from hw.patterns import MODES
from hw.variants import Variant, split_model_name

from .psconv import PSConv2d

__all__ = ["build", "NETWORK_NAMES", "ModelInfo", "SequentialNet", "VGG16", "ResNet", "MobileNetV2"]

NETWORK_NAMES = tuple(NETWORKS)


class ModelInfo(dict):
    """What a built model is: ``name, net, dataset, variant, seed, mode`` (stored in checkpoints)."""


class _Factory:
    """Makes the conv modules of one network from its hw layer list (name -> module)."""

    def __init__(self, network, variant: Variant, seed: int, mode: str):
        self.layers = {l.name: l for l in network.layers}
        self.masks = layer_masks(network, variant, seed=seed, mode=mode)
        self.variant, self.seed, self.mode = variant, seed, mode
        # Pattern seed of each sparse layer, as hw.networks.layer_masks derives it.
        self.layer_seed, i = {}, 0
        for l in network.convs:
            self.layer_seed[l.name] = seed + i
            i += l.sparse

    def conv(self, name: str) -> nn.Conv2d:
        l = self.layers[name]
        if l.sparse:
            return PSConv2d(l.c_in, l.c_out, l.k, stride=l.stride, bias=l.bias, variant=self.variant,
                            seed=self.layer_seed[name], mode=self.mode, mask=self.masks[name])
        return nn.Conv2d(l.c_in, l.c_out, l.k, stride=l.stride, padding=l.k // 2, groups=l.groups,
                         bias=l.bias)

    def bn(self, name: str) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(self.layers[name].c_out)

    def linear(self, name: str) -> nn.Linear:
        l = self.layers[name]
        return nn.Linear(l.in_features, l.out_features)


class SequentialNet(nn.Module):
    """conv + BN + ReLU stacks (stride-2 convs or 2x2 max-pools downsample), then flatten
    (C, H, W) into one FC.

    The FashionNet / FashionPoolNet / DigitsNet topology: each conv, with its pool
    (``hw.networks.Conv.pool``), is one hardware layer. BN modules are named
    ``<conv name>_bn``.

    Members
    -------
    conv_names : tuple of str
        The conv layers in forward order.
    pooled : tuple of bool
        Per conv: a 2x2 max-pool follows its ReLU.
    fc_name : str
        The FC layer.
    """

    def __init__(self, factory: _Factory, network):
        super().__init__()
        convs = [l for l in network.layers if isinstance(l, Conv)]
        fcs = [l for l in network.layers if isinstance(l, Linear)]
        if len(fcs) != 1 or network.layers[-1] is not fcs[0]:
            raise ValueError(f"{network.name}: a sequential net needs exactly one FC layer, last")
        self._conv_names = tuple(l.name for l in convs)
        self._pooled = tuple(l.pool for l in convs)
        self._fc_name = fcs[0].name
        for l in convs:
            self.add_module(l.name, factory.conv(l.name))
            self.add_module(f"{l.name}_bn", factory.bn(l.name))
        self.add_module(self._fc_name, factory.linear(self._fc_name))

    @property
    def conv_names(self) -> tuple:
        return self._conv_names

    @property
    def pooled(self) -> tuple:
        return self._pooled

    @property
    def fc_name(self) -> str:
        return self._fc_name

    def forward(self, x):
        for n, pool in zip(self._conv_names, self._pooled):
            x = F.relu(getattr(self, f"{n}_bn")(getattr(self, n)(x)))
            if pool:
                x = F.max_pool2d(x, 2)
        return getattr(self, self._fc_name)(torch.flatten(x, 1))


class VGG16(nn.Module):
    """VGG16 (13 convs, max-pool after each stage, global average pooling, one FC).

    Convs are ``features.<i>``, their BNs ``bns.<i>``; pooling follows ``POOL_AFTER``.
    """

    POOL_AFTER = (1, 3, 6, 9, 12)

    def __init__(self, factory: _Factory, network):
        super().__init__()
        n = len(network.convs)
        self.features = nn.ModuleList(factory.conv(f"features.{i}") for i in range(n))
        self.bns = nn.ModuleList(factory.bn(f"features.{i}") for i in range(n))
        self.classifier = factory.linear("classifier")

    def forward(self, x):
        for i, (conv, bn) in enumerate(zip(self.features, self.bns)):
            x = F.relu(bn(conv(x)))
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
    """ResNet basic block with a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, factory: _Factory, prefix: str):
        super().__init__()
        self.conv1, self.bn1 = factory.conv(f"{prefix}.conv1"), factory.bn(f"{prefix}.conv1")
        self.conv2, self.bn2 = factory.conv(f"{prefix}.conv2"), factory.bn(f"{prefix}.conv2")
        sc = f"{prefix}.shortcut.0"
        self.shortcut = (nn.Sequential(factory.conv(sc), factory.bn(sc)) if sc in factory.layers
                         else nn.Sequential())

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet18 (3x3 stem, four stages of two BasicBlocks, global average pooling, FC)."""

    def __init__(self, factory: _Factory, network):
        super().__init__()
        self.conv1, self.bn1 = factory.conv("conv1"), factory.bn("conv1")
        for s in range(1, 5):
            self.add_module(f"layer{s}", nn.Sequential(*(BasicBlock(factory, f"layer{s}.{b}")
                                                         for b in range(2))))
        self.linear = factory.linear("linear")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when stride is 1."""

    def __init__(self, factory: _Factory, prefix: str):
        super().__init__()
        self.conv1, self.bn1 = factory.conv(f"{prefix}.conv1"), factory.bn(f"{prefix}.conv1")
        self.conv2, self.bn2 = factory.conv(f"{prefix}.conv2"), factory.bn(f"{prefix}.conv2")
        self.conv3, self.bn3 = factory.conv(f"{prefix}.conv3"), factory.bn(f"{prefix}.conv3")
        self.stride = factory.layers[f"{prefix}.conv2"].stride
        sc = f"{prefix}.shortcut.0"
        self.shortcut = (nn.Sequential(factory.conv(sc), factory.bn(sc)) if sc in factory.layers
                         else nn.Sequential())

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for small images (stride-1 stem), global average pooling, FC."""

    def __init__(self, factory: _Factory, network):
        super().__init__()
        self.conv1, self.bn1 = factory.conv("conv1"), factory.bn("conv1")
        blocks = sorted({int(n.split(".")[1]) for n in factory.layers if n.startswith("layers.")})
        self.layers = nn.Sequential(*(InvertedResidual(factory, f"layers.{i}") for i in blocks))
        self.conv2, self.bn2 = factory.conv("conv2"), factory.bn("conv2")
        self.linear = factory.linear("linear")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(self.layers(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


_TOPOLOGY = {"VGG16": VGG16, "ResNet18": ResNet, "ResNet18_0.5": ResNet, "MobileNetV2": MobileNetV2,
             "MobileNetV2_0.75": MobileNetV2, "FashionNet": SequentialNet,
             "FashionPoolNet": SequentialNet, "DigitsNet": SequentialNet}


def build(name: str, dataset: str | None = None, *, seed: int = 0, mode: str = "random") -> nn.Module:
    """Build the model ``name`` (``NET`` or ``NET_<variant>``) for ``dataset``.

    Parameters
    ----------
    name : str
        E.g. ``"FashionNet"``, ``"FashionNet_PSD2_P8"``, ``"ResNet18_0.5_PSD1_P8"``.
    dataset : str, optional
        A key of ``hw.networks.DATASETS``; defaults to the network's own (CIFAR-10 for the big ones).
    seed : int
        Pattern seed (layer ``i``-th sparse conv uses ``seed + i``, as ``hw.networks.layer_masks``).
        Weight initialization uses torch's global RNG: seed it with ``torch.manual_seed``.
    mode : str
        Pattern mode, ``"random"`` or ``"authors"``.

    Returns
    -------
    torch.nn.Module
        The model, with a ``psconv_info`` attribute (:class:`ModelInfo`).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"Pattern seed must be a non-negative integer, not {seed!r}")
    if mode not in MODES:
        raise ValueError(f"Pattern mode must be one of {', '.join(MODES)}, not {mode!r}")
    net, variant = split_model_name(name)
    network = build_network(net, dataset)
    model = _TOPOLOGY[net](_Factory(network, variant, seed, mode), network)
    model.psconv_info = ModelInfo(name=name, net=net, dataset=network.dataset, variant=variant.name,
                                  seed=seed, mode=mode)
    return model
