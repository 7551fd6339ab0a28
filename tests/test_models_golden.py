"""models.golden: exact integer forward of a QModel vs brute force and vs hw.reference."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hw.qmodel import QLayer, QModel
from hw.quant import choose_multiplier_shift, requantize
from models import build
from models.data import load_dataset, prepare_batch
from models.golden import AccumulatorOverflow, predict, quantize_input, run_model_int
from models.psconv import enforce_masks
from models.quantize import quantize_model


def _randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def random_qmodel(name, seed):
    torch.manual_seed(seed)
    model = build(name, seed=seed).eval()
    _randomize_bn(model, seed)
    c, h, w = (1, 8, 8) if name.startswith("Digits") else (1, 28, 28)
    g = torch.Generator().manual_seed(seed)
    return quantize_model(model, [torch.rand(16, c, h, w, generator=g)])


def trained_digits_qmodel(name, seed=0, steps=25):
    """A DigitsNet variant trained for a few SGD steps (seconds), then quantized."""
    torch.manual_seed(seed)
    model = build(name, "digits", seed=seed)
    ds = load_dataset("digits", "train")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(ds), (32,), generator=g).tolist()
        x, y = ds.__getitems__(idx)
        loss = torch.nn.functional.cross_entropy(model(prepare_batch(x, "digits", train=True, generator=g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        enforce_masks(model)
    model.eval()
    x, _ = ds.__getitems__(list(range(256)))
    return quantize_model(model, [prepare_batch(x, "digits", train=False)]), model


# --- an independent brute-force reference (Python ints, loops) --------------------------------

def brute_layer(layer, x):
    """x: nested int lists as numpy object array [C, H, W] -> int list output [c_out, Ho, Wo]."""
    w = np.asarray(layer.weight).astype(object)
    b, m, s = (np.asarray(a).astype(object) for a in (layer.bias, layer.multiplier, layer.shift))
    m = np.broadcast_to(m, (layer.c_out,))
    s = np.broadcast_to(s, (layer.c_out,))
    lo = 0 if layer.relu else -128
    if layer.kind == "fc":
        flat = x.reshape(-1)
        out = np.empty((layer.c_out, 1, 1), dtype=object)
        for f in range(layer.c_out):
            acc = int(b[f]) + sum(int(w[f, i, 0, 0]) * int(flat[i]) for i in range(layer.c_in))
            out[f, 0, 0] = min(max((acc * int(m[f]) + (1 << (int(s[f]) - 1))) >> int(s[f]), lo), 127)
        return out
    k, st_, p = layer.k, layer.stride, layer.k // 2
    ho = (layer.h_in + 2 * p - k) // st_ + 1
    wo = (layer.w_in + 2 * p - k) // st_ + 1
    out = np.empty((layer.c_out, ho, wo), dtype=object)
    for f in range(layer.c_out):
        for oy in range(ho):
            for ox in range(wo):
                acc = int(b[f])
                for c in range(layer.c_in):
                    for dy in range(k):
                        for dx in range(k):
                            iy, ix = oy * st_ + dy - p, ox * st_ + dx - p
                            if 0 <= iy < layer.h_in and 0 <= ix < layer.w_in:
                                acc += int(w[f, c, dy, dx]) * int(x[c, iy, ix])
                out[f, oy, ox] = min(max((acc * int(m[f]) + (1 << (int(s[f]) - 1))) >> int(s[f]), lo), 127)
    if layer.pool:
        h2, w2 = ho // 2, wo // 2
        out = np.array([[[max(out[f, 2 * i + a, 2 * j + c] for a in (0, 1) for c in (0, 1))
                          for j in range(w2)] for i in range(h2)] for f in range(layer.c_out)], dtype=object)
    return out


def _hand_model(seed):
    rng = np.random.default_rng(seed)
    def layer(name, kind, c_in, c_out, k, stride, h, relu, pool):
        wshape = (c_out, c_in, k, k)
        mult, shift = choose_multiplier_shift(rng.uniform(1e-4, 2e-2, size=c_out))
        return QLayer(name=name, kind=kind, c_in=c_in, c_out=c_out, k=k, stride=stride, h_in=h, w_in=h,
                      relu=relu, pool=pool, weight=rng.integers(-128, 128, wshape).astype(np.int8),
                      bias=rng.integers(-5000, 5000, c_out).astype(np.int32), multiplier=mult, shift=shift)
    layers = [layer("c1", "conv", 2, 3, 3, 1, 7, True, False),
              layer("c2", "conv", 3, 4, 3, 2, 7, False, False),
              layer("c3", "conv", 4, 4, 1, 1, 4, True, True),
              layer("fc", "fc", 16, 5, 1, 1, 1, False, False)]
    return QModel("hand", "digits", (2, 7, 7), 1 / 127, layers, classes=5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    qm = _hand_model(seed)
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(-128, 128, (2, 7, 7))
    outs = run_model_int(qm, torch.as_tensor(x))
    ref = x.astype(object)
    for layer, got in zip(qm.layers, outs):
        ref = brute_layer(layer, ref)
        assert got.dtype == torch.int8
        assert np.array_equal(got.numpy().astype(np.int64), ref.astype(np.int64)), f"seed {seed} {layer.name}"


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), relu=st.booleans())
def test_requantize_equals_hw_quant(seed, relu):
    rng = np.random.default_rng(seed)
    acc = rng.integers(-2**31, 2**31, (2, 3, 4, 4))
    m = rng.integers(2**15, 2**16, 3)
    s = rng.integers(1, 48, 3)
    from models.golden import _requantize
    got = _requantize(torch.as_tensor(acc), m, s, relu).numpy()
    assert np.array_equal(got, requantize(acc, m, s, relu=relu, axis=1).astype(np.int64)), f"seed {seed}"


MODELS = ["DigitsNet", "DigitsNet_PSD2_P8", "DigitsNet_PSD1_P8", "FashionNet", "FashionNet_PSD2_P8",
          "FashionNet_PSD1_P8", "FashionPoolNet_PSD2_P8"]


@pytest.mark.parametrize("name", MODELS)
def test_matches_hw_reference_random_weights(name):
    reference = pytest.importorskip("hw.reference")
    seed = 7
    qm = random_qmodel(name, seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (3,) + tuple(qm.input_shape))
    outs = run_model_int(qm, torch.as_tensor(x))
    for i in range(len(x)):
        refs = reference.run_model(qm, x[i].astype(np.int8))
        assert len(refs) == len(outs) == len(qm.layers)
        for layer, got, ref in zip(qm.layers, outs, refs):
            assert np.array_equal(got[i].numpy(), np.asarray(ref).reshape(got[i].shape)), \
                f"{name} seed {seed} frame {i} layer {layer.name}"


@pytest.mark.parametrize("name", ["DigitsNet", "DigitsNet_PSD2_P8", "DigitsNet_PSD1_P8"])
def test_matches_hw_reference_trained(name):
    reference = pytest.importorskip("hw.reference")
    qm, _ = trained_digits_qmodel(name)
    ds = load_dataset("digits", "test")
    x, _ = ds.__getitems__(list(range(32)))
    xq = quantize_input(qm, prepare_batch(x, "digits", train=False))
    outs = run_model_int(qm, xq)
    refs = reference.run_model(qm, xq.numpy().astype(np.int8))  # batched [N, C, H, W]
    for layer, got, ref in zip(qm.layers, outs, refs):
        assert np.array_equal(got.numpy(), np.asarray(ref).reshape(got.shape)), f"{name} layer {layer.name}"
    # A live network: not every activation is clamped to zero.
    assert all(int(o.count_nonzero()) > 0 for o in outs)


def test_predict_single_and_batch_and_overflow():
    qm = _hand_model(3)
    x = torch.randint(-128, 128, (4, 2, 7, 7), generator=torch.Generator().manual_seed(3))
    last = run_model_int(qm, x)[-1].to(torch.int64).reshape(4, -1)
    assert torch.equal(predict(qm, x), last.argmax(1))
    assert int(predict(qm, x[1])) == int(last[1].argmax())
    single = run_model_int(qm, x[1])
    assert single[0].shape == (3, 7, 7) and single[-1].shape == (5, 1, 1)
    qm.layers[0].bias = np.full(3, 2**31 - 1, np.int64)
    with pytest.raises(AccumulatorOverflow, match="Layer 'c1'"):
        run_model_int(qm, torch.full((2, 7, 7), 127))
    with pytest.raises(ValueError, match="int8"):
        run_model_int(qm, torch.full((2, 7, 7), 200))
    with pytest.raises(ValueError, match="integer frames"):
        run_model_int(qm, torch.zeros(2, 7, 7))
    with pytest.raises(ValueError, match=r"\(C, H, W\) = \(2, 7, 7\)"):
        run_model_int(qm, torch.zeros(1, 3, 7, 7, dtype=torch.int64))


def test_quantize_input():
    qm = _hand_model(0)
    x = torch.tensor([[[[0.0, 1.0, -2.0, 0.5 / 127, 1.5 / 127]]]], dtype=torch.float64)
    assert quantize_input(qm, x).flatten().tolist() == [0, 127, -128, 0, 2]
