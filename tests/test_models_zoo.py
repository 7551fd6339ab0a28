"""models.build: names/shapes/masks agree with hw.networks; counts agree with hw.costs."""

import numpy as np
import pytest
import torch
from torch import nn

from hw.costs import network_cost
from hw.networks import DATASETS, Conv, Linear, build_network, layer_masks
from hw.variants import VariantNameError, split_model_name
from models import build
from models.counts import conv_nonzero, trainable_params
from models.psconv import PSConv2d

CASES = [
    ("FashionNet", None), ("FashionNet_PSD2_P8", None), ("FashionNet_PSD1_P8", None),
    ("FashionPoolNet_PS2_P6", None),
    ("DigitsNet_PS2_P6", None), ("DigitsNet_pSC4", None),
    ("VGG16_PSD2_P8", "cifar10"), ("ResNet18", "cifar10"), ("ResNet18_PSD1_P8", "cifar10"),
    ("ResNet18_0.5_PS4_P4", "tinyimagenet"), ("MobileNetV2_PSD4_P8", "cifar10"),
    ("MobileNetV2_0.75", "tinyimagenet"),
]


@pytest.mark.parametrize("name, dataset", CASES)
def test_layers_masks_and_counts_match_hw(name, dataset):
    model = build(name, dataset, seed=3)
    net, variant = split_model_name(name)
    network = build_network(net, dataset)
    masks = layer_masks(network, variant, seed=3)
    mods = dict(model.named_modules())
    convs = [n for n, m in mods.items() if isinstance(m, nn.Conv2d)]
    assert convs == [l.name for l in network.convs], "same conv names in forward order"
    for l in network.layers:
        m = mods[l.name]
        if isinstance(l, Conv):
            assert tuple(m.weight.shape) == l.weight_shape
            assert m.stride == (l.stride, l.stride) and m.padding == (l.k // 2, l.k // 2)
            assert m.groups == l.groups
            is_sparse = l.sparse and not variant.is_dense
            assert isinstance(m, PSConv2d) == l.sparse, l.name
            if isinstance(m, PSConv2d):
                assert np.array_equal(m.mask.numpy(), masks[l.name])
                assert torch.all(m.weight[~m.mask] == 0)
            if not is_sparse:
                assert masks[l.name].all()
        else:
            assert isinstance(m, nn.Linear) and m.weight.shape == (l.out_features, l.in_features)
    # BN after every conv.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in mods.values()) == len(convs)
    cost = network_cost(name, dataset=dataset, seed=3)
    assert trainable_params(model) == cost.total_params
    assert conv_nonzero(model) == cost.conv_nonzero


def test_first_conv_and_1x1_are_dense():
    model = build("MobileNetV2_PSD1_P8")
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not isinstance(first, PSConv2d)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and (m.kernel_size == (1, 1) or m.groups > 1):
            assert not isinstance(m, PSConv2d)


@pytest.mark.parametrize("name, dataset", [(n, d) for n, d in CASES if not n.startswith(("VGG", "MobileNetV2_0"))]
                         + [("VGG16", "cifar10")])
def test_forward_shape(name, dataset):
    torch.manual_seed(0)
    model = build(name, dataset).eval()
    net, _ = split_model_name(name)
    c, hw, classes = DATASETS[build_network(net, dataset).dataset]
    with torch.no_grad():
        y = model(torch.randn(2, c, hw, hw))
    assert y.shape == (2, classes) and torch.isfinite(y).all()


def test_fashionnet_topology_by_hand():
    """conv(s1) 28 -> conv(s2) 14 -> conv(s2) 7 -> conv(s2) 4; FC on 64*4*4 flattened (C,H,W)."""
    model = build("FashionNet").eval()
    acts = {}
    for n in ("conv1", "conv2", "conv3", "conv4"):
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.shape))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert [acts[n][1:] for n in ("conv1", "conv2", "conv3", "conv4")] == [
        (16, 28, 28), (32, 14, 14), (32, 7, 7), (64, 4, 4)]
    assert model.fc.in_features == 64 * 4 * 4


def test_fashionpoolnet_pools_after_relu():
    """conv(s1) 28 -> pool 14 -> conv(s1) -> pool 7 -> conv(s1) -> pool 3 (floor); the FC sees
    the pooled (C, H, W) map; each pool is max_pool2d(relu(bn(conv)), 2)."""
    torch.manual_seed(0)
    model = build("FashionPoolNet_PSD2_P8").eval()
    assert model.pooled == (True, True, True) and model.fc.in_features == 64 * 3 * 3
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        h = x
        for n in ("conv1", "conv2", "conv3"):
            h = torch.relu(getattr(model, f"{n}_bn")(getattr(model, n)(h)))
            h = torch.nn.functional.max_pool2d(h, 2)
        assert h.shape == (2, 64, 3, 3)
        assert torch.equal(model(x), model.fc(h.flatten(1)))


def test_resnet_residual_is_used():
    """Zeroing the residual branch's last BN must leave relu(shortcut(x))."""
    torch.manual_seed(1)
    model = build("ResNet18_0.5").eval()
    block = model.layer1[0]
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(x))


def test_info_and_errors():
    m = build("DigitsNet_PSD2_P8", seed=4, mode="authors")
    assert dict(m.psconv_info) == {"name": "DigitsNet_PSD2_P8", "net": "DigitsNet", "dataset": "digits",
                                   "variant": "PSD2_P8", "seed": 4, "mode": "authors"}
    with pytest.raises(VariantNameError, match="Unknown network 'LeNet'"):
        build("LeNet")
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        build("FashionNet", "mnist")
    with pytest.raises(ValueError, match="seed must be a non-negative integer, not -1"):
        build("FashionNet", seed=-1)
    with pytest.raises(ValueError, match="mode must be one of"):
        build("FashionNet", mode="x")
    with pytest.raises(VariantNameError):
        build("FashionNet_PSD2")
