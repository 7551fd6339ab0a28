"""The golden model of the hardware: an exact integer PyTorch forward of a :class:`hw.qmodel.QModel`.

Every layer computes, in int64 (exact: ``|acc| < 2**31`` is checked, ``acc * M < 2**47``)::

    acc = sum(w * x) + bias                                  (conv: padding k // 2, stride)
    y   = clamp((acc * M[c] + 2**(s[c] - 1)) >> s[c], lo, 127)   lo = 0 after ReLU, else -128
    y   = maxpool2x2(y) if pool

with ``>>`` an arithmetic shift (round half up), exactly as ARCHITECTURE.md "Numbers" and
:func:`hw.quant.requantize`. An FC layer reads its input flattened in (C, H, W) order. This is an
independent torch re-implementation of the numpy reference in hw/, so the two check each other.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hw.qmodel import QModel

__all__ = ["run_model_int", "predict", "quantize_input", "AccumulatorOverflow"]

_ACC_MIN, _ACC_MAX = -(1 << 31), (1 << 31) - 1


class AccumulatorOverflow(OverflowError):
    """A layer's accumulator left the signed 32-bit range of the engine."""


def quantize_input(qmodel: QModel, x: torch.Tensor) -> torch.Tensor:
    """Float model input (normalized, ``[N, C, H, W]``) -> int8 frame values (int64 tensor).

    ``clamp(round(x / input_scale), -128, 127)`` with round half to even (``torch.round``).
    """
    q = torch.round(torch.as_tensor(x, dtype=torch.float64) / qmodel.input_scale)
    return q.clamp(-128, 127).to(torch.int64)


def _requantize(acc: torch.Tensor, multiplier, shift, relu: bool) -> torch.Tensor:
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    m = torch.as_tensor(np.asarray(multiplier, dtype=np.int64)).reshape(shape)
    s = torch.as_tensor(np.asarray(shift, dtype=np.int64)).reshape(shape)
    y = (acc * m + (torch.ones_like(s) << (s - 1))) >> s
    return y.clamp(0 if relu else -128, 127)


def _layer(layer, x: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(layer.weight, dtype=np.int64))
    b = torch.as_tensor(np.asarray(layer.bias, dtype=np.int64))
    if layer.kind == "fc":
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != layer.c_in:
            raise ValueError(f"Layer {layer.name!r}: FC expects {layer.c_in} inputs, got {x.shape[1]}")
        # A 1x1 output pixel, as hw.reference shapes FC outputs: [N, c_out, 1, 1].
        acc = (x @ w.reshape(layer.c_out, -1).T + b)[:, :, None, None]
    elif layer.kind == "conv":
        if tuple(x.shape[1:]) != (layer.c_in, layer.h_in, layer.w_in):
            raise ValueError(f"Layer {layer.name!r}: expects input (C, H, W) = "
                             f"{(layer.c_in, layer.h_in, layer.w_in)}, got {tuple(x.shape[1:])}")
        acc = F.conv2d(x, w, b, stride=layer.stride, padding=layer.k // 2)
    else:
        raise ValueError(f"Layer {layer.name!r}: unknown kind {layer.kind!r} (conv or fc)")
    if acc.numel() and (acc.min() < _ACC_MIN or acc.max() > _ACC_MAX):
        raise AccumulatorOverflow(f"Layer {layer.name!r}: accumulator {int(acc.abs().max())} leaves the "
                                  f"signed 32-bit range")
    y = _requantize(acc, layer.multiplier, layer.shift, bool(layer.relu))
    if layer.pool:
        n, c, h, w_ = y.shape
        y = y[:, :, : h // 2 * 2, : w_ // 2 * 2].reshape(n, c, h // 2, 2, w_ // 2, 2).amax(dim=(3, 5))
    return y


def run_model_int(qmodel: QModel, x: torch.Tensor) -> list:
    """Run ``qmodel`` on int8 frames ``x`` (``[N, C, H, W]`` or ``[C, H, W]``, any integer dtype).

    Returns
    -------
    list of torch.Tensor
        One int8 tensor per layer, ``[N, C, H, W]`` (FC layers ``[N, c_out, 1, 1]``, as
        hw.reference); without the batch axis when ``x`` had none.
    """
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"run_model_int needs integer frames, not dtype {x.dtype}")
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(qmodel.input_shape):
        raise ValueError(f"Input must be [N, C, H, W] with (C, H, W) = {tuple(qmodel.input_shape)}, "
                         f"not {tuple(x.shape)}")
    if x.numel() and (x.min() < -128 or x.max() > 127):
        raise ValueError(f"Input values must be int8 (-128..127), not {int(x.min())}..{int(x.max())}")
    x = x.to(torch.int64)
    outs = []
    for layer in qmodel.layers:
        x = _layer(layer, x)
        outs.append((x[0] if single else x).to(torch.int8))
    return outs


def predict(qmodel: QModel, x: torch.Tensor) -> torch.Tensor:
    """Class index per frame: argmax of the last layer's int8 output (lowest index on ties)."""
    out = run_model_int(qmodel, x)[-1].to(torch.int64)
    return out.flatten(-3).argmax(dim=-1)
