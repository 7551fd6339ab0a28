"""Tests of hw.costs against independent references.

References: explicit-loop convolutions that count the MACs they perform (checked against
scipy's correlation), the METHOD.md formulas written out by hand, layer lists typed in by hand
from the paper's descriptions, and PyTorch models (parameter count and FlopCounterMode).
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import correlate2d

from hw import costs
from hw.costs import (conv_cost, layer_costs, network_cost, dense_flops, sparse_flops,
                      boosted_flops, dwc_pwc_flops, shuffle_flops, params_report, flops_report,
                      baselines)
from hw.networks import Conv, build_network
from hw.patterns import kernel_masks
from hw.variants import PAPER_VARIANTS, DENSE, Variant, parse_variant


# --- brute force -----------------------------------------------------------------------------

def brute_conv(x, w, mask, *, stride, groups):
    """Padded grouped conv as explicit loops; returns (output, MACs performed).

    A MAC is performed for every (output pixel, filter, input channel, tap) whose weight is in
    the mask, also when the tap reads the zero padding: the convention of METHOD.md's formulas.
    """
    c_in, h, wd = x.shape
    c_out, cg, k, _ = w.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h_o, w_o = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    y = np.zeros((c_out, h_o, w_o))
    macs = 0
    opg = c_out // groups
    for f in range(c_out):
        g = f // opg
        for oy in range(h_o):
            for ox in range(w_o):
                for c in range(cg):
                    for ky in range(k):
                        for kx in range(k):
                            if mask[f, c, ky, kx]:
                                y[f, oy, ox] += (w[f, c, ky, kx]
                                                 * xp[g * cg + c, oy * stride + ky, ox * stride + kx])
                                macs += 1
    return y, macs


def scipy_conv(x, w, *, stride, groups):
    """The same conv from scipy's 2D correlation (dense weights; zeros where masked)."""
    c_out, cg, k, _ = w.shape
    pad = k // 2
    opg = c_out // groups
    out = []
    for f in range(c_out):
        g = f // opg
        acc = sum(correlate2d(np.pad(x[g * cg + c], pad), w[f, c], mode="valid") for c in range(cg))
        out.append(acc[::stride, ::stride])
    return np.stack(out)


@st.composite
def small_convs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 2]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    return Conv("t", c_in, c_out, k, stride, h, w, groups=groups), seed


@settings(max_examples=40, deadline=None)
@given(small_convs())
def test_flops_equal_brute_force_macs(case):
    layer, seed = case
    rng = np.random.default_rng(seed)
    mask = rng.random(layer.weight_shape) < rng.random()
    w = rng.standard_normal(layer.weight_shape) * mask
    x = rng.standard_normal((layer.c_in, layer.h_in, layer.w_in))
    y, macs = brute_conv(x, w, mask, stride=layer.stride, groups=layer.groups)
    # The loop must be a real convolution, or its MAC count proves nothing.
    np.testing.assert_allclose(y, scipy_conv(x, w, stride=layer.stride, groups=layer.groups),
                               atol=1e-9, err_msg=f"seed {seed}")
    row = conv_cost(layer, mask)
    assert (row.flops, row.nonzeros) == (macs, mask.sum()), f"seed {seed}"
    assert row.out_size == (layer.c_out,) + y.shape[1:], f"seed {seed}"
    dense = conv_cost(layer)
    assert dense.flops == (layer.k ** 2 * y.shape[1] * y.shape[2] * layer.c_out * layer.c_in
                           // layer.groups), f"seed {seed}"


# --- METHOD.md formulas --------------------------------------------------------------------

def test_formulas_hand_worked():
    # 3x3, 4x4 output, C_i = 16, C_o = 2.
    assert dense_flops(k=3, h_out=4, w_out=4, c_in=16, c_out=2) == 9 * 16 * 2 * 16
    assert sparse_flops(kss=2, k=3, h_out=4, w_out=4, c_in=16, c_out=2) == 2 * 16 * 2 * 16
    # P = 8: 2 dense kernels (9) and 14 sparse (n = 1) per filter -> 32 MACs per pixel per filter.
    assert boosted_flops(kss=1, period=8, k=3, h_out=4, w_out=4, c_in=16, c_out=2) == 32 * 16 * 2
    # DWC 3x3 on 8 channels (9*8 per pixel) + PWC 8 -> 4 (32 per pixel), 2x2 pixels.
    assert dwc_pwc_flops(k=3, h_out=2, w_out=2, c_in=8, c_out=4) == (72 + 32) * 4
    # GWC 8 -> 4 in G = 2 groups (9*4*4 per pixel) + DWC on 4 (9*4), 2x2 pixels.
    assert shuffle_flops(k=3, h_out=2, w_out=2, c_in=8, c_out=4, groups=2) == (144 + 36) * 4


def test_dwc_pwc_and_shuffle_formulas_match_mask_counts():
    for c_in, c_out, hw, k in [(8, 16, 5, 3), (12, 6, 3, 3), (5, 7, 4, 1)]:
        dwc = conv_cost(Conv("dw", c_in, c_in, k, 1, hw, hw, groups=c_in))
        pwc = conv_cost(Conv("pw", c_in, c_out, 1, 1, hw, hw))
        assert dwc.flops + pwc.flops == dwc_pwc_flops(k=k, h_out=hw, w_out=hw, c_in=c_in, c_out=c_out)
    for c_in, c_out, g, hw in [(8, 4, 2, 3), (12, 6, 3, 5), (6, 6, 6, 2)]:
        gwc = conv_cost(Conv("gw", c_in, c_out, 3, 1, hw, hw, groups=g))
        dwc = conv_cost(Conv("dw", c_out, c_out, 3, 1, hw, hw, groups=c_out))
        assert gwc.flops + dwc.flops == shuffle_flops(k=3, h_out=hw, w_out=hw, c_in=c_in,
                                                      c_out=c_out, groups=g)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(PAPER_VARIANTS[1:]), st.integers(1, 3), st.integers(1, 20),
       st.integers(1, 5), st.integers(0, 1000))
def test_mask_counts_match_formulas_when_ci_multiple_of_p(variant, mult, c_out, hw, seed):
    # Rotation covers every slot of the period once per P input channels, whatever the seed.
    p = variant.period or 1
    c_in = p * mult
    layer = Conv("t", c_in, c_out, 3, 1, hw, hw, sparse=True)
    row = conv_cost(layer, kernel_masks(variant, c_out, c_in, seed=seed))
    shape = dict(k=3, h_out=hw, w_out=hw, c_in=c_in, c_out=c_out)
    if variant.period is None or variant.kind == "PS":
        expect = sparse_flops(kss=variant.kss, **shape)
    else:
        expect = boosted_flops(kss=variant.kss, period=variant.period, **shape)
    assert row.flops == expect, f"{variant} seed {seed}"
    # Exact density expected from the pattern: n/9, or ((P-1) n + 9) / (9 P) with boosting.
    n = variant.kss
    boosted = variant.kind == "PSD" or (variant.kind == "pSC" and variant.period is not None)
    ratio = Fraction((p - 1) * n + 9, 9 * p) if boosted else Fraction(n, 9)
    assert Fraction(row.nonzeros, row.weights) == ratio, f"{variant} seed {seed}"


@pytest.mark.parametrize("name", ["PSD1_P8", "PSD4_P16", "PSD2_P8"])
def test_authors_rule_exact_when_ci_not_multiple_of_p(name):
    # METHOD.md: kernel (i, j) is dense when (i + j + 1) mod P == 0, KSS n otherwise.
    variant = parse_variant(name)
    P, n = variant.period, variant.kss
    for c_in, c_out in [(3, 5), (13, 7), (20, 17)]:
        dense = sum((i + j + 1) % P == 0 for i in range(c_out) for j in range(c_in))
        expect = dense * 9 + (c_out * c_in - dense) * n
        layer = Conv("t", c_in, c_out, 3, 1, 2, 2, sparse=True)
        row = conv_cost(layer, kernel_masks(variant, c_out, c_in, mode="authors"))
        assert row.nonzeros == expect and row.flops == expect * 4
        with pytest.raises(ValueError, match="multiple of the period"):
            boosted_flops(kss=n, period=P, k=3, h_out=2, w_out=2, c_in=c_in, c_out=c_out)


# --- whole networks against hand-typed layer lists -----------------------------------------

VGG16_CONVS = [(32, 3, 64), (32, 64, 64), (16, 64, 128), (16, 128, 128), (8, 128, 256),
               (8, 256, 256), (8, 256, 256), (4, 256, 512), (4, 512, 512), (4, 512, 512),
               (2, 512, 512), (2, 512, 512), (2, 512, 512)]  # (output size, C_i, C_o)


def resnet18_convs(width=64):
    """(output size, C_i, C_o, k) of ResNet18 on 32x32 images, typed from the paper's text."""
    w = [width, 2 * width, 4 * width, 8 * width]
    out = [(32, 3, w[0], 3)]
    c, s = w[0], 32
    for i, wi in enumerate(w):
        if i:
            s //= 2
            out += [(s, c, wi, 3), (s, wi, wi, 3), (s, c, wi, 1)]
        else:
            out += [(s, c, wi, 3), (s, wi, wi, 3)]
        out += [(s, wi, wi, 3), (s, wi, wi, 3)]
        c = wi
    return out


def test_vgg16_dense_figures():
    flops = sum(9 * s * s * ci * co for s, ci, co in VGG16_CONVS)
    assert flops == 313_196_544  # the commonly cited CIFAR VGG16 figure
    params = sum(9 * ci * co + 2 * co for _, ci, co in VGG16_CONVS) + 512 * 10 + 10
    assert round(params / 1e5) == 147  # "14.7M"
    cost = network_cost("VGG16")
    assert (cost.conv_flops, cost.total_params) == (flops, params)
    assert cost.conv_nonzero == sum(9 * ci * co for _, ci, co in VGG16_CONVS)


def test_resnet18_dense_figures():
    convs = resnet18_convs()
    flops = sum(k * k * s * s * ci * co for s, ci, co, k in convs)
    assert abs(flops / 0.56e9 - 1) < 0.01
    params = sum(k * k * ci * co + 2 * co for _, ci, co, k in convs) + 512 * 10 + 10
    assert round(params / 1e4) == 1117  # "11.17M"
    cost = network_cost("ResNet18")
    assert (cost.conv_flops, cost.total_params) == (flops, params)
    half = resnet18_convs(32)
    assert network_cost("ResNet18_0.5").conv_flops == sum(k * k * s * s * ci * co
                                                          for s, ci, co, k in half)


def test_digitsnet_params_by_hand():
    # conv1 1->8, conv2 8->16 (stride 2, 8x8 -> 4x4), conv3 16->16, FC 256 -> 10; BN after each conv.
    expect = (9 * 1 * 8 + 16) + (9 * 8 * 16 + 32) + (9 * 16 * 16 + 32) + (256 * 10 + 10)
    assert network_cost("DigitsNet").total_params == expect
    flops = 9 * 64 * 1 * 8 + 9 * 16 * 8 * 16 + 9 * 16 * 16 * 16
    assert network_cost("DigitsNet").conv_flops == flops
    # DigitsNet_PS1_P9: conv1 dense; conv2 and conv3 one tap per kernel.
    sparse = network_cost("DigitsNet_PS1_P9")
    assert sparse.conv_nonzero == 9 * 8 + 8 * 16 + 16 * 16
    assert sparse.total_params == expect - 8 * (8 * 16 + 16 * 16)


@pytest.mark.parametrize("net", ["VGG16", "ResNet18", "ResNet18_0.5", "MobileNetV2_0.75",
                                 "FashionNet"])
@pytest.mark.parametrize("variant", [Variant("PSD", 1, 8), Variant("pSC", 2), Variant("PS", 4, 4)])
def test_sparse_layers_have_the_pattern_ratio(net, variant):
    dense = {r.name: r for r in layer_costs(build_network(net), DENSE)}
    rows = layer_costs(build_network(net), variant, seed=3)
    p = variant.period or 1
    for r in rows:
        d = dense[r.name]
        assert (r.shape, r.weights, r.out_size) == (d.shape, d.weights, d.out_size)
        assert r.params - r.nonzeros == d.params - d.nonzeros  # BN, biases, FC unchanged
        if not r.sparse:
            assert r.nonzeros == d.nonzeros
        elif r.shape[1] % p == 0:
            want = Fraction((p - 1) * variant.kss + 9, 9 * p) if variant.kind == "PSD" \
                else Fraction(variant.kss, 9)
            assert Fraction(r.nonzeros, r.weights) == want, r.name
    total = network_cost(f"{net}_{variant}", seed=3)
    base = network_cost(net)
    if any(r.sparse for r in rows):
        assert total.conv_nonzero < base.conv_nonzero
    assert base.total_params - total.total_params == base.conv_nonzero - total.conv_nonzero


def test_mobilenetv2_is_never_sparsified():
    rows = layer_costs(build_network("MobileNetV2"), Variant("PS", 1, 9))
    assert not any(r.sparse for r in rows)
    assert sum(r.nonzeros for r in rows if r.kind == "conv") == \
        network_cost("MobileNetV2").conv_nonzero


def test_counts_do_not_depend_on_seed_or_mode():
    a = network_cost("ResNet18_0.5_PSD2_P8", seed=0)
    b = network_cost("ResNet18_0.5_PSD2_P8", seed=11)
    c = network_cost("ResNet18_0.5_PSD2_P8", mode="authors")
    assert a.conv_nonzero == b.conv_nonzero == c.conv_nonzero
    # The mode reaches the pattern generator: the authors' rule has no pSC variant.
    with pytest.raises(ValueError, match="authors' rule"):
        network_cost("ResNet18_0.5_pSC4", mode="authors")


# --- reports -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reports():
    return params_report(), flops_report("cifar10"), flops_report("tinyimagenet")


def test_report_keys_and_types(reports):
    params, f32, f64 = reports
    keys = {f"{net}_{v}" for net in ("VGG16", "ResNet18") for v in PAPER_VARIANTS}
    assert set(params) == set(f32) == set(f64) == keys
    assert "VGG16_pSC9" in keys and "ResNet18_PSD1_P8" in keys
    for k in keys:
        assert set(params[k]) == {"total", "conv_nonzero"}
        assert all(type(v) is int for v in params[k].values()) and type(f32[k]) is int


def test_report_values(reports):
    params, f32, f64 = reports
    assert f32["VGG16_pSC9"] == sum(9 * s * s * ci * co for s, ci, co in VGG16_CONVS)
    for k in f32:
        # Every layer's output is twice as wide and high on 64x64 inputs.
        assert f64[k] == 4 * f32[k], k
        net, v = k.split("_", 1)
        dense = params[f"{net}_pSC9"]
        if v != "pSC9":
            assert params[k]["conv_nonzero"] < dense["conv_nonzero"], k
            assert f32[k] < f32[f"{net}_pSC9"], k
        # Only conv weights change between variants.
        assert dense["total"] - params[k]["total"] == dense["conv_nonzero"] - params[k]["conv_nonzero"]
    # Same non-zeros per period -> same counts (all VGG16/ResNet18 sparse C_i are multiples of 16).
    for net in ("VGG16", "ResNet18"):
        assert params[f"{net}_PSD1_P8"] == params[f"{net}_pSC2"] == params[f"{net}_PS2_P6"]
        assert params[f"{net}_PSD4_P8"] == params[f"{net}_pSC4_P8"]


def test_baselines():
    b32, b64 = baselines("cifar10"), baselines("tinyimagenet")
    assert set(b32) == {"MobileNetV2"}
    assert b64["MobileNetV2"]["flops"] == 4 * b32["MobileNetV2"]["flops"]
    # Only the classifier differs: 1280 -> 200 instead of 1280 -> 10.
    assert b64["MobileNetV2"]["total"] - b32["MobileNetV2"]["total"] == 1281 * 190


# --- PyTorch as a second route ----------------------------------------------------------------

def _torch_models():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    def vgg16(classes):
        layers, c = [], 3
        for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                  512, 512, 512, "M"]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        # Global average pooling before the FC, as in hw.networks (1x1 already on CIFAR-10).
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    def resnet18(classes, width=64):
        layers, c = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)], width
        for i, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            layers += [Block(c, w, 2 if i else 1), Block(w, w, 1)]
            c = w
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    return torch, {"VGG16": vgg16, "ResNet18": resnet18}


@pytest.mark.parametrize("net", ["VGG16", "ResNet18"])
@pytest.mark.parametrize("dataset,size,classes", [("cifar10", 32, 10), ("tinyimagenet", 64, 200)])
def test_dense_counts_match_pytorch(net, dataset, size, classes):
    torch, zoo = _torch_models()
    from torch.utils.flop_counter import FlopCounterMode
    model = zoo[net](classes).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size))
    conv_macs = counter.get_flop_counts()["Global"][torch.ops.aten.convolution] // 2
    cost = network_cost(net, dataset=dataset)
    assert cost.conv_flops == conv_macs
    assert cost.total_params == sum(p.numel() for p in model.parameters())


# --- validation --------------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match=r"Pattern seed must be an integer >= 0, not -1"):
        network_cost("VGG16_pSC4", seed=-1)
    with pytest.raises(ValueError, match=r"Pattern mode must be one of random, authors, not 'x'"):
        network_cost("VGG16_pSC4", mode="x")
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnist'"):
        flops_report("mnist")
    with pytest.raises(ValueError, match=r"Layer t: mask must be bool of shape \(2, 3, 3, 3\)"):
        conv_cost(Conv("t", 3, 2, 3, 1, 4, 4), np.ones((2, 3, 3, 3), dtype=int))
    with pytest.raises(ValueError, match=r"kss must be an integer in 1..9"):
        sparse_flops(kss=10, k=3, h_out=1, w_out=1, c_in=1, c_out=1)
    with pytest.raises(ValueError, match=r"c_in must be an integer >= 1, not 0"):
        dense_flops(k=3, h_out=1, w_out=1, c_in=0, c_out=1)
    with pytest.raises(ValueError, match=r"c_in must be a multiple of groups"):
        shuffle_flops(k=3, h_out=1, w_out=1, c_in=5, c_out=4, groups=2)
    with pytest.raises(TypeError):
        dense_flops(3, 1, 1, 1, 1)
