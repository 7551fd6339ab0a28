"""Random but well-scaled quantized models, for exercising the host path without training.

:func:`random_qmodel` builds a :class:`hw.qmodel.QModel` of any known network and variant
(``"DigitsNet_PSD2_P8"``) exactly as :mod:`models.quantize` lays one out (dense first conv and FC,
period tables from :func:`hw.networks.layer_period_tables`), with random int8 weights inside the
pattern and per-channel requantization calibrated on random inputs so that activations use the
int8 range instead of saturating or vanishing: a useful stand-in for a trained model when the
question is "does the hardware compute what the reference computes".
"""

from __future__ import annotations

import numpy as np

from hw.networks import Conv, layer_period_tables, parse_model
from hw.qmodel import QLayer, QModel
from hw.quant import choose_multiplier_shift
from hw.reference import run_layer

__all__ = ["random_qmodel"]


def random_qmodel(name: str = "DigitsNet_PSD2_P8", *, seed: int = 0, mode: str = "random",
                  dataset: str | None = None, calib_frames: int = 16) -> QModel:
    """A random int8 model of network+variant ``name`` (see :func:`hw.networks.parse_model`).

    Parameters
    ----------
    seed : int
        Seeds the weights, biases, calibration frames and the pattern draw.
    mode : str
        Pattern mode (``"random"`` or ``"authors"``), as in :mod:`hw.patterns`.
    calib_frames : int
        Random input frames used to choose each layer's requantization scale.
    """
    network, variant = parse_model(name, dataset)
    if not (variant.is_periodic or variant.is_dense):
        raise ValueError(f"{name}: the engine runs periodic (PS, PSD) or dense variants, not {variant}")
    if not isinstance(calib_frames, int) or calib_frames < 1:
        raise ValueError(f"calib_frames must be a positive integer, not {calib_frames!r}")
    rng = np.random.default_rng(seed)
    tables = layer_period_tables(network, variant, seed=seed, mode=mode)
    first = network.layers[0]
    shape = (first.c_in, first.h_in, first.w_in)
    x = rng.integers(-128, 128, size=(calib_frames,) + shape).astype(np.int8)
    layers = []
    for i, l in enumerate(network.layers):
        last = i == len(network.layers) - 1
        if isinstance(l, Conv):
            table = tables[l.name]
            sparse = l.sparse and variant.is_periodic
            mask = table.mask(l.c_out, l.c_in)
            weight = np.where(mask, rng.integers(-127, 128, size=mask.shape), 0).astype(np.int8)
            common = dict(name=l.name, kind="conv", c_in=l.c_in, c_out=l.c_out, k=l.k,
                          stride=l.stride, h_in=l.h_in, w_in=l.w_in, relu=not last, pool=l.pool,
                          variant=variant.name if sparse else "pSC9",
                          period_table=[list(s) for s in table.supports] if sparse else None)
        else:
            weight = rng.integers(-127, 128, size=(l.out_features, l.in_features, 1, 1)).astype(np.int8)
            common = dict(name=l.name, kind="fc", c_in=l.in_features, c_out=l.out_features, k=1,
                          stride=1, h_in=1, w_in=1, relu=not last, pool=False, variant="pSC9",
                          period_table=None)
        c_out = weight.shape[0]
        bias = rng.integers(-2000, 2001, size=c_out).astype(np.int32)
        # Probe with an exact unit scale (M = 2**15, s = 15 -> y = clamp(acc)) to measure the
        # accumulators, then choose M, s so each channel's largest |acc| maps to about 100.
        probe = QLayer(**common, weight=weight, bias=bias,
                       multiplier=np.full(c_out, 1 << 15, np.int64), shift=np.full(c_out, 15, np.int64))
        acc_max = _accumulator_max(probe, x)
        mult, shift = choose_multiplier_shift(100.0 / np.maximum(acc_max, 1.0))
        layer = QLayer(**common, weight=weight, bias=bias, multiplier=np.asarray(mult, np.int64),
                       shift=np.asarray(shift, np.int64))
        x = run_layer(layer, x)
        layers.append(layer)
    return QModel(name=name, dataset=network.dataset, input_shape=shape, input_scale=1.0 / 127,
                  layers=layers, classes=layers[-1].c_out)


def _accumulator_max(layer: QLayer, x: np.ndarray) -> np.ndarray:
    """Per-channel max |acc| of ``layer`` on batch ``x`` (from the reference's accumulators)."""
    from hw.reference import conv_accumulate, validate_layer

    image = validate_layer(layer)
    if layer.kind == "fc":
        x = x.reshape(x.shape[0], layer.c_in, 1, 1)
    acc = conv_accumulate(image, x, stride=layer.stride) + np.asarray(layer.bias)[None, :, None, None]
    return np.abs(acc).max(axis=(0, 2, 3)).astype(np.float64)
