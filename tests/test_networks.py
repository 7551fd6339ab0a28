import numpy as np
import pytest

from hw.networks import build_network, layer_masks, layer_period_tables, parse_model, Conv, Linear
from hw.variants import Variant, VariantNameError


def test_vgg16_layers_by_hand():
    net = build_network("VGG16", "cifar10")
    convs = net.convs
    assert [c.c_out for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [c.h_in for c in convs] == [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    assert [c.sparse for c in convs] == [False] + [True] * 12
    fc = [l for l in net.layers if isinstance(l, Linear)]
    assert [(l.in_features, l.out_features) for l in fc] == [(512, 10)]


def test_resnet18_shapes_and_exemptions():
    net = build_network("ResNet18", "tinyimagenet")
    convs = net.convs
    assert len(convs) == 20  # stem + 16 in blocks + 3 shortcuts
    shortcuts = [c for c in convs if c.k == 1]
    assert [(c.c_in, c.c_out, c.stride) for c in shortcuts] == [(64, 128, 2), (128, 256, 2), (256, 512, 2)]
    assert not any(c.sparse for c in shortcuts) and not convs[0].sparse
    assert convs[-1].h_out == 8  # 64 -> 8 after three stride-2 stages
    assert net.layers[-1].out_features == 200
    half = build_network("ResNet18_0.5")
    assert [c.c_out for c in half.convs if c.k == 1] == [64, 128, 256]


def test_mobilenetv2_is_never_sparse():
    net = build_network("MobileNetV2")
    assert not any(c.sparse for c in net.convs)
    dw = [c for c in net.convs if c.groups > 1]
    assert all(c.groups == c.c_in == c.c_out for c in dw) and len(dw) == 17


def test_masks_follow_exemptions_and_seeds():
    net, v = parse_model("DigitsNet_PSD2_P8")
    masks = layer_masks(net, v, seed=5)
    assert masks["conv1"].all()                     # first layer dense
    assert not masks["conv2"].all() and not masks["conv3"].all()
    again = layer_masks(net, v, seed=5)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    tables = layer_period_tables(net, v, seed=5)
    assert tables["conv1"].supports == (tuple(range(9)),)
    assert np.array_equal(tables["conv2"].mask(16, 8), masks["conv2"])
    assert np.array_equal(tables["conv3"].mask(16, 16), masks["conv3"])


def test_unknown_network_and_dataset():
    with pytest.raises(VariantNameError, match="Unknown network 'LeNet'"):
        build_network("LeNet")
    with pytest.raises(ValueError, match="Unknown dataset"):
        build_network("VGG16", "mnist")
    with pytest.raises(ValueError, match="not periodic"):
        layer_period_tables(build_network("VGG16"), Variant("pSC", 4))


def test_conv_output_size():
    assert Conv("x", 3, 8, 3, 2, 7, 7).h_out == 4
    assert Conv("x", 3, 8, 1, 2, 8, 8).h_out == 4


def test_fashionpoolnet_layers_by_hand():
    """Stride-1 convs each pooled 2x2: 28 -> 14 -> 7 -> 3 (floor); FC on 64 * 3 * 3."""
    net = build_network("FashionPoolNet")
    assert net.dataset == "fashion_mnist"
    convs, fc = net.layers[:-1], net.layers[-1]
    assert [(l.c_in, l.c_out, l.stride, l.h_in, l.h_out, l.pool) for l in convs] == [
        (1, 16, 1, 28, 28, True), (16, 32, 1, 14, 14, True), (32, 64, 1, 7, 7, True)]
    assert (fc.in_features, fc.out_features) == (64 * 3 * 3, 10)
    assert [l.sparse for l in convs] == [False, True, True]
    # Pooling lives on the layer for the sequential nets only.
    assert not any(l.pool for l in build_network("FashionNet").convs)

