"""hw.reference: the engine's integer semantics against an independent dense computation
(scipy.signal.correlate with the dense weights, explicit loops for pooling, floor division for
requantization), hand-worked cases, validation messages and overflow refusal."""

import json

import numpy as np
import pytest
from scipy.signal import correlate

from hw import reference
from hw.csrp import ConvCSRP, dense_table
from hw.networks import build_network, layer_masks
from hw.patterns import period_table
from hw.qmodel import QLayer, QModel
from hw.quant import choose_multiplier_shift
from hw.reference import (conv_accumulate, maxpool2x2, output_stage, run_layer, run_model,
                          validate_layer)
from hw.variants import parse_variant

# Periods 1, 2, 4, 6, 8, 9, 16 plus the dense baseline.
VARIANTS = ["pSC9", "PS9_P1", "PSD4_P2", "PS4_P4", "PS2_P6", "PS1_P9", "PSD4_P8", "PSD2_P8",
            "PSD1_P8", "PSD4_P16", "PSD2_P16", "PSD1_P16"]


# ---------------------------------------------------------------- independent reference
def dense_conv(x, w, stride):
    """int64 correlation of x [C, H, W] with dense w [C_o, C, k, k], zero padding k // 2."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x.astype(np.int64), ((0, 0), (p, p), (p, p)))
    return np.stack([correlate(xp, w[f].astype(np.int64), mode="valid", method="direct")[0, ::stride, ::stride]
                     for f in range(w.shape[0])])


def ref_requant(acc, m, s, relu):
    y = (acc * m[:, None, None] + (1 << (s[:, None, None] - 1))) // (1 << s[:, None, None])
    return np.clip(y, 0 if relu else -128, 127)


def ref_pool(y):
    c, h, w = y.shape
    out = np.empty((c, h // 2, w // 2), dtype=y.dtype)
    for i in range(h // 2):
        for j in range(w // 2):
            out[:, i, j] = y[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(c, 4).max(axis=1)
    return out


def ref_layer(layer, x):
    if layer.kind == "fc":
        x = x.reshape(-1, 1, 1)
    acc = dense_conv(x, np.asarray(layer.weight), layer.stride) + np.asarray(layer.bias, np.int64)[:, None, None]
    y = ref_requant(acc, np.asarray(layer.multiplier, np.int64), np.asarray(layer.shift, np.int64), layer.relu)
    return (ref_pool(y) if layer.pool else y).astype(np.int8)


# ---------------------------------------------------------------- random layers
def make_layer(rng, *, name="L", variant="pSC9", c_in=3, c_out=4, k=3, stride=1, h=6, w=6,
               relu=True, pool=False, kind="conv", seed=0):
    v = parse_variant(variant)
    table = period_table(v, k=k, seed=seed) if v.is_periodic and k == 3 else dense_table(k)
    mask = table.mask(c_out, c_in)
    weight = (rng.integers(-127, 128, size=mask.shape) * mask).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=c_out).astype(np.int32)
    nnz = max(1, int(mask[0].sum()))
    # Scales that put typical outputs in range, so saturation, rounding and ReLU all occur.
    m, s = choose_multiplier_shift(rng.uniform(0.3, 3.0, size=c_out) * 100 / (73 * 73 * np.sqrt(nnz)))
    return QLayer(name=name, kind=kind, c_in=c_in, c_out=c_out, k=k, stride=stride, h_in=h, w_in=w,
                  relu=relu, pool=pool, weight=weight, bias=bias, multiplier=m, shift=s,
                  variant=variant,
                  period_table=[list(t) for t in table.supports] if v.is_periodic and k == 3 else None)


@pytest.mark.parametrize("seed", range(60))
def test_layer_matches_dense_reference(seed):
    rng = np.random.default_rng(seed)
    variant = VARIANTS[seed % len(VARIANTS)]
    k = 1 if seed % 7 == 3 else 3
    stride, h, w = int(rng.integers(1, 3)), int(rng.integers(2, 10)), int(rng.integers(2, 10))
    # Pool only where the conv output is at least 2 x 2 (validation refuses the rest).
    pool = bool(rng.integers(2)) and min((h - 1) // stride, (w - 1) // stride) >= 1
    layer = make_layer(rng, variant=variant, k=k, c_in=int(rng.integers(1, 21)),
                       c_out=int(rng.integers(1, 20)), stride=stride, h=h, w=w,
                       relu=bool(rng.integers(2)), pool=pool, seed=seed)
    x = rng.integers(-128, 128, size=(layer.c_in, layer.h_in, layer.w_in)).astype(np.int8)
    got = run_layer(layer, x)
    want = ref_layer(layer, x)
    assert got.dtype == np.int8 and got.shape == layer.out_shape == want.shape, f"seed={seed}"
    assert (got == want).all(), f"seed={seed} variant={variant} k={k} stride={layer.stride}"


@pytest.mark.parametrize("seed", range(8))
def test_accumulators_match_explicit_loops(seed):
    # Before requantization, against plain Python loops over every output pixel and tap.
    rng = np.random.default_rng(100 + seed)
    table = period_table(parse_variant(VARIANTS[4 + seed]), seed=seed)
    c_out, c_in, stride = int(rng.integers(1, 12)), int(rng.integers(1, 12)), 1 + seed % 2
    w = (rng.integers(-128, 128, size=(c_out, c_in, 3, 3)) * table.mask(c_out, c_in)).astype(np.int8)
    x = rng.integers(-128, 128, size=(c_in, 5, 4))
    got = conv_accumulate(ConvCSRP.from_dense(w, table), x, stride=stride)
    h_o, w_o = (5 - 1) // stride + 1, (4 - 1) // stride + 1
    want = np.zeros((c_out, h_o, w_o), dtype=np.int64)
    for f in range(c_out):
        for oy in range(h_o):
            for ox in range(w_o):
                for c in range(c_in):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = oy * stride + ky - 1, ox * stride + kx - 1
                            if 0 <= iy < 5 and 0 <= ix < 4:
                                want[f, oy, ox] += int(w[f, c, ky, kx]) * int(x[c, iy, ix])
    assert (got == want).all(), f"seed={seed}"


def test_hand_worked_layer():
    # One 3x3 input, one filter with taps {0, 4} (top-left and centre), stride 1.
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], dtype=np.int8)
    w = np.zeros((1, 1, 3, 3), dtype=np.int8)
    w[0, 0, 0, 0], w[0, 0, 1, 1] = 10, -1
    layer = QLayer(name="h", kind="conv", c_in=1, c_out=1, k=3, stride=1, h_in=3, w_in=3, relu=False,
                   pool=False, weight=w, bias=np.array([3], np.int32), multiplier=np.array([1]),
                   shift=np.array([1]), period_table=[[0, 4]])
    # acc[oy, ox] = 10 * x[oy-1, ox-1] - x[oy, ox] + 3; then (acc + 1) >> 1.
    acc = np.array([[-1 + 3, -2 + 3, -3 + 3],
                    [-4 + 3, 10 - 5 + 3, 20 - 6 + 3],
                    [-7 + 3, 40 - 8 + 3, 50 - 9 + 3]])
    assert (run_layer(layer, x)[0] == np.floor((acc + 1) / 2)).all()
    # Pool after requantization: max of the top-left 2x2 block of the requantized map.
    pooled = QLayer(**{**layer.__dict__, "pool": True})
    assert run_layer(pooled, x).tolist() == [[[4]]]      # max of (2, 1, -1, 8) requantized: 1, 1, 0, 4


def test_maxpool_and_output_stage():
    y = np.arange(2 * 5 * 5, dtype=np.int8).reshape(2, 5, 5) - 20
    assert (maxpool2x2(y) == ref_pool(y)).all() and maxpool2x2(y).shape == (2, 2, 2)
    acc = np.array([[[2**31 - 1]]])
    with pytest.raises(ValueError, match=r"Layer 'o': accumulator 2147483648 overflows the signed 32-bit"):
        output_stage(acc, [1], [1], [1], relu=False, pool=False, layer="o")


def _small_model(rng, variant="PSD2_P8"):
    """A DigitsNet-like chain: dense stem, sparse stride-2 conv, sparse conv with pool, 1x1, FC."""
    l1 = make_layer(rng, name="conv1", c_in=1, c_out=8, h=8, w=8, seed=1)
    l2 = make_layer(rng, name="conv2", variant=variant, c_in=8, c_out=16, stride=2, h=8, w=8, seed=2)
    l3 = make_layer(rng, name="conv3", variant=variant, c_in=16, c_out=12, h=4, w=4, pool=True, seed=3)
    l4 = make_layer(rng, name="conv4", c_in=12, c_out=6, k=1, h=2, w=2, seed=4)
    fc = make_layer(rng, name="fc", kind="fc", c_in=6 * 2 * 2, c_out=10, k=1, h=1, w=1, relu=False)
    return QModel("Tiny", "digits", (1, 8, 8), 1.0, [l1, l2, l3, l4, fc])


@pytest.mark.parametrize("seed", range(4))
def test_run_model_chain_and_batch(seed, tmp_path):
    rng = np.random.default_rng(1000 + seed)
    model = _small_model(rng, variant=["PSD2_P8", "PS4_P4", "PSD1_P16", "pSC9"][seed])
    xs = rng.integers(-128, 128, size=(3, 1, 8, 8)).astype(np.int8)
    batch = run_model(model, xs)
    for n in range(3):
        outs = run_model(model, xs[n])
        x = xs[n]
        for layer, got, b in zip(model.layers, outs, batch):
            want = ref_layer(layer, x)
            assert (got == want).all() and (b[n] == got).all(), f"seed={seed} layer={layer.name}"
            x = want
    assert batch[-1].shape == (3, 10, 1, 1) and outs[-1].shape == (10, 1, 1)
    # A saved and reloaded model gives the same outputs.
    model.save(tmp_path / "m.npz")
    again = run_model(QModel.load(tmp_path / "m.npz"), xs[0])
    assert all((a == b).all() for a, b in zip(again, run_model(model, xs[0])))


def test_large_batch_is_blocked_and_exact(monkeypatch):
    rng = np.random.default_rng(7)
    layer = make_layer(rng, variant="PSD2_P8", c_in=10, c_out=16, h=12, w=12)
    xs = rng.integers(-128, 128, size=(5, 10, 12, 12)).astype(np.int8)
    # Two frames' im2col per block: blocks of 2, 2 and 1 frames.
    monkeypatch.setattr(reference, "_BLOCK_ELEMS", 2 * 10 * 9 * 12 * 12)
    got = run_layer(layer, xs)
    assert all((got[n] == ref_layer(layer, xs[n])).all() for n in range(5))


def _mutate(layer, **changes):
    return QLayer(**{**layer.__dict__, **changes})


@pytest.mark.parametrize("changes, match", [
    (dict(kind="pool"), r"Layer 'L': kind must be one of conv, fc, not 'pool'"),
    (dict(k=5), r"Layer 'L': k must be 1 or 3, not 5"),
    (dict(stride=3), r"Layer 'L': stride must be 1 or 2, not 3"),
    (dict(c_in=0), r"Layer 'L': c_in must be a positive integer, not 0"),
    (dict(relu=1), r"Layer 'L': relu must be a bool, not 1"),
    (dict(weight=np.zeros((4, 3, 1, 1), np.int8)), r"Layer 'L': weight must have shape \[4, 3, 3, 3\], not \[4, 3, 1, 1\]"),
    (dict(weight=np.full((4, 3, 3, 3), 300)), r"Layer 'L': weight 300 is outside the int8 range -128\.\.127"),
    (dict(weight=np.zeros((4, 3, 3, 3), np.float32)), r"Layer 'L': weight must hold integers"),
    (dict(bias=np.zeros(3, np.int32)), r"Layer 'L': bias must have shape \[4\], not \[3\]"),
    (dict(bias=np.array([0, 0, 2**31, 0])), r"Layer 'L': bias\[2\] = 2147483648 is outside the allowed range -2147483648\.\.2147483647"),
    (dict(multiplier=np.array([1, 0, 1, 1])), r"Layer 'L': multiplier\[1\] = 0 is outside the allowed range 1\.\.65535"),
    (dict(multiplier=np.array([1, 1, 1, 65536])), r"Layer 'L': multiplier\[3\] = 65536 is outside the allowed range 1\.\.65535"),
    (dict(shift=np.array([48, 1, 1, 1])), r"Layer 'L': shift\[0\] = 48 is outside the allowed range 1\.\.47"),
    (dict(shift=np.array([0.5, 1, 1, 1])), r"Layer 'L': shift must hold integers"),
    (dict(pool=True, h_in=1), r"Layer 'L': pool needs a conv output of at least 2 x 2, not 1 x 6"),
    (dict(period_table=[[0, 2], [1]]), r"Layer 'L': filter \d+, input channel \d+, tap \d+ .* outside the pattern"),
    (dict(period_table=[[2, 1]]), r"Layer 'L': bad period_table"),
])
def test_validation_messages(changes, match):
    layer = make_layer(np.random.default_rng(0), c_in=3, c_out=4)
    validate_layer(layer)
    with pytest.raises(ValueError, match=match):
        validate_layer(_mutate(layer, **changes))


def test_fc_validation_and_input_checks():
    rng = np.random.default_rng(1)
    fc = make_layer(rng, name="fc", kind="fc", c_in=12, c_out=3, k=1, h=1, w=1)
    with pytest.raises(ValueError, match=r"Layer 'fc': an fc layer needs stride = 1, not 2"):
        validate_layer(_mutate(fc, stride=2))
    with pytest.raises(ValueError, match=r"Layer 'fc': an fc layer needs an input of 12 values"):
        run_layer(fc, np.zeros((2, 2, 2), np.int8))
    conv = make_layer(rng, c_in=3, c_out=4)
    with pytest.raises(ValueError, match=r"Layer 'L': input must have shape \[3, 6, 6\]"):
        run_layer(conv, np.zeros((3, 5, 6), np.int8))
    with pytest.raises(ValueError, match=r"Layer 'L': input value 128 is outside the int8 range"):
        run_layer(conv, np.full((3, 6, 6), 128))
    with pytest.raises(ValueError, match=r"Layer 'L': k must be 1 or 3, not 3\.0"):
        validate_layer(_mutate(conv, k=3.0))


def test_refuses_accumulator_overflow():
    # 128 * 127 * nnz > 2**31 - 1 needs nnz > 132104: a dense 3x3 layer with 14679 input channels.
    c_in = 14679
    w = np.full((1, c_in, 3, 3), 127, dtype=np.int8)
    layer = QLayer(name="wide", kind="conv", c_in=c_in, c_out=1, k=3, stride=1, h_in=1, w_in=1,
                   relu=False, pool=False, weight=w, bias=np.zeros(1, np.int32),
                   multiplier=np.ones(1, np.int64), shift=np.ones(1, np.int64))
    with pytest.raises(ValueError, match=r"Layer 'wide': the accumulator could overflow 32 bits.*"
                                         rf"\|acc\| = {128 * 127 * c_in * 9}"):
        run_layer(layer, np.zeros((c_in, 1, 1), np.int8))
    # The same layer with one channel fewer fits and runs.
    ok = _mutate(layer, c_in=c_in - 1, weight=w[:, 1:])
    assert 128 * 127 * (c_in - 1) * 9 < 2**31
    x = np.full((c_in - 1, 1, 1), -128, np.int8)
    # Centre tap only sees the 1x1 input: acc = -128 * 127 * (c_in - 1); (acc + 1) >> 1 saturates.
    assert run_layer(ok, x).tolist() == [[[-128]]]


def test_bench_cli_counts_macs(capsys):
    # The timing CLI runs a whole sequential network and counts its MACs like hw.networks' masks.
    reference._main(["--model", "DigitsNet_PS4_P4", "--repeat", "1", "--batch", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    net = build_network("DigitsNet")
    masks = layer_masks(net, parse_variant("PS4_P4"))
    want = sum(int(masks[l.name].sum()) * l.h_out * l.w_out for l in net.convs)
    want += net.layers[-1].in_features * net.layers[-1].out_features
    assert out["macs_per_frame"] == want and out["batch"] == 2


@pytest.mark.parametrize("c_in", [1024, 1025])
def test_exact_at_the_float32_float64_switch(c_in):
    # nnz = 1024 is the last float32 layer (2**14 * 1024 = 2**24 exactly), 1025 the first float64
    # one: extreme and random int8 values must still give the exact int64 dot products.
    rng = np.random.default_rng(c_in)
    w = np.full((3, c_in, 1, 1), -128, dtype=np.int8)
    w[1] = rng.integers(-128, 128, size=(c_in, 1, 1))
    w[2, ::2] = 127
    x = np.full((c_in, 2, 3), -128, dtype=np.int8)
    x[:, 1] = rng.integers(-128, 128, size=(c_in, 3))
    got = conv_accumulate(ConvCSRP.from_dense(w, dense_table(1)), x, stride=1)
    want = np.einsum("fc,chw->fhw", w[:, :, 0, 0].astype(np.int64), x.astype(np.int64))
    assert got[0, 0, 0] == 128 * 128 * c_in
    assert (got == want).all()
