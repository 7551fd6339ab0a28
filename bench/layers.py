"""Random single layers and small models for the engine's tests, sweeps and benchmarks.

:func:`random_layer_model` builds a one-layer (or short chain) :class:`hw.qmodel.QModel` of any
shape and periodic/dense variant with seeded int8 weights inside the pattern and requantization
chosen from the layer's own accumulator range, so results use the int8 range instead of
saturating: what a bit-exactness test needs.
"""

from __future__ import annotations

import numpy as np

from hw.patterns import PeriodTable, period_table
from hw.qmodel import QLayer, QModel
from hw.quant import choose_multiplier_shift
from hw.reference import conv_accumulate, validate_layer, run_layer
from hw.variants import parse_variant

__all__ = ["random_layer", "random_layer_model", "random_chain_model"]


def random_layer(*, c_in: int, c_out: int, h: int, w: int, k: int = 3, stride: int = 1,
                 variant: str = "pSC9", kind: str = "conv", relu: bool = True, pool: bool = False,
                 seed: int = 0, x=None, name: str = "layer", rng=None) -> QLayer:
    """One random layer; requantization scaled so that ``x`` (or random input) maps to ~+-100.
    ``pool``: 2x2 max-pool (stride 2) after requantization (the conv output must be 2 x 2 or more)."""
    rng = np.random.default_rng(seed) if rng is None else rng
    v = parse_variant(variant)
    if kind == "fc":
        k, stride, h, w = 1, 1, 1, 1
    if k == 3 and v.is_periodic:
        table = period_table(v, k=3, seed=int(rng.integers(1 << 30)))
        ptab = [list(s) for s in table.supports]
        vname = v.name
    else:
        table = PeriodTable(k, (tuple(range(k * k)),))
        ptab, vname = None, "pSC9"
    mask = table.mask(c_out, c_in)
    weight = np.where(mask, rng.integers(-128, 128, size=mask.shape), 0).astype(np.int8)
    bias = rng.integers(-3000, 3001, size=c_out).astype(np.int32)
    common = dict(name=name, kind=kind, c_in=c_in, c_out=c_out, k=k, stride=stride, h_in=h, w_in=w,
                  relu=relu, pool=bool(pool), variant=vname, period_table=ptab)
    probe = QLayer(**common, weight=weight, bias=bias, multiplier=np.full(c_out, 1 << 15, np.int64),
                   shift=np.full(c_out, 15, np.int64))
    if x is None:
        x = rng.integers(-128, 128, size=(2, c_in, h, w)).astype(np.int8)
    acc = conv_accumulate(validate_layer(probe), np.asarray(x).reshape(-1, c_in, h, w), stride=stride)
    amax = np.abs(acc + bias[None, :, None, None]).max(axis=(0, 2, 3)).astype(np.float64)
    mult, shift = choose_multiplier_shift(100.0 / np.maximum(amax, 1.0))
    return QLayer(**common, weight=weight, bias=bias, multiplier=np.asarray(mult, np.int64),
                  shift=np.asarray(shift, np.int64))


def random_layer_model(*, seed: int = 0, **kw) -> QModel:
    """A :class:`QModel` of one :func:`random_layer` (same keywords)."""
    l = random_layer(seed=seed, **kw)
    return QModel(name=f"layer_{seed}", dataset="random", input_shape=(l.c_in, l.h_in, l.w_in),
                  input_scale=1.0, layers=[l])


def random_chain_model(specs, *, c_in: int, h: int, w: int, seed: int = 0) -> QModel:
    """A chain of layers: ``specs`` is a list of dicts with ``c_out`` and optional ``k``,
    ``stride``, ``variant``, ``pool``, ``kind`` (``"fc"`` flattens the previous output)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, c_in, h, w)).astype(np.int8)
    layers, shape = [], (c_in, h, w)
    for i, s in enumerate(specs):
        kind = s.get("kind", "conv")
        last = i == len(specs) - 1
        if kind == "fc":
            l = random_layer(c_in=int(np.prod(shape)), c_out=s["c_out"], h=1, w=1, kind="fc",
                             relu=not last, x=x.reshape(x.shape[0], -1, 1, 1), name=f"l{i}", rng=rng)
            x = run_layer(l, x.reshape(x.shape[0], -1, 1, 1))
        else:
            l = random_layer(c_in=shape[0], c_out=s["c_out"], h=shape[1], w=shape[2],
                             k=s.get("k", 3), stride=s.get("stride", 1),
                             variant=s.get("variant", "pSC9"), pool=s.get("pool", False),
                             relu=not last, x=x, name=f"l{i}", rng=rng)
            x = run_layer(l, x)
        layers.append(l)
        shape = x.shape[1:]
    return QModel(name=f"chain_{seed}", dataset="random", input_shape=(c_in, h, w), input_scale=1.0,
                  layers=layers)
