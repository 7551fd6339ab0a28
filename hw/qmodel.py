"""The quantized-model file: what models.quantize writes and host.pack / the references read.

A :class:`QModel` is a chain of integer layers (conv 3x3 or 1x1, FC), each with int8 weights,
int32 bias and per-output-channel requantization ``y = clamp((acc * M + 2**(s-1)) >> s, lo, hi)``
(lo = 0 after ReLU, else -128; hi = 127). Activations between layers are int8 in C x H x W order;
an FC layer reads its input flattened in C, H, W order.

Files are ``.npz`` archives: a JSON header (``meta``) plus one array per layer field, so they
load with numpy alone (no torch on the host side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, asdict

import numpy as np

__all__ = ["QLayer", "QModel", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_ARRAYS = ("weight", "bias", "multiplier", "shift")


@dataclass
class QLayer:
    """One integer layer.

    Members
    -------
    kind : str
        ``"conv"`` (k = 1 or 3, padding k // 2) or ``"fc"``.
    weight : numpy.ndarray
        int8 ``[c_out, c_in, k, k]`` (FC: ``[c_out, c_in, 1, 1]``); entries outside the layer's
        pattern are exactly zero.
    bias : numpy.ndarray
        int32 ``[c_out]``, in accumulator units (input scale x weight scale).
    multiplier, shift : numpy.ndarray
        Per-channel requantization ``M`` (int64 holding a positive integer) and ``s``.
    relu : bool
        Clamp at 0 instead of -128.
    pool : bool
        2x2 max-pool (stride 2) after requantization.
    period_table : list of list of int or None
        The P kernel supports of a periodic sparse layer (slot ``(f + c) mod P``); None when dense.
    h_in, w_in : int
        Input size (FC: 1 x 1, ``c_in`` is the flattened length).
    """

    name: str
    kind: str
    c_in: int
    c_out: int
    k: int
    stride: int
    h_in: int
    w_in: int
    relu: bool
    pool: bool
    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)
    multiplier: np.ndarray = field(repr=False)
    shift: np.ndarray = field(repr=False)
    variant: str = "pSC9"
    period_table: list | None = None
    in_scale: float = 1.0
    out_scale: float = 1.0

    @property
    def h_out(self) -> int:
        h = (self.h_in + 2 * (self.k // 2) - self.k) // self.stride + 1
        return h // 2 if self.pool else h

    @property
    def w_out(self) -> int:
        w = (self.w_in + 2 * (self.k // 2) - self.k) // self.stride + 1
        return w // 2 if self.pool else w

    @property
    def out_shape(self) -> tuple:
        return (self.c_out, self.h_out, self.w_out)


@dataclass
class QModel:
    """A quantized sequential model: the contract between models/, host/ and the engine.

    Members
    -------
    input_shape : tuple
        ``(C, H, W)`` of the int8 input frame.
    input_scale : float
        Real value of one input LSB (``x_int8 = round(x / input_scale)``).
    """

    name: str
    dataset: str
    input_shape: tuple
    input_scale: float
    layers: list
    classes: int = 10

    def save(self, path) -> None:
        meta = {"format_version": FORMAT_VERSION, "name": self.name, "dataset": self.dataset,
                "input_shape": list(self.input_shape), "input_scale": self.input_scale,
                "classes": self.classes, "layers": []}
        arrays = {}
        for i, l in enumerate(self.layers):
            d = {k: v for k, v in asdict(l).items() if k not in _ARRAYS}
            meta["layers"].append(d)
            for k in _ARRAYS:
                arrays[f"l{i}_{k}"] = np.asarray(getattr(l, k))
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path) -> "QModel":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{path}: quantized-model format version {meta.get('format_version')} "
                                 f"is not the supported version {FORMAT_VERSION}")
            layers = [QLayer(**d, **{k: z[f"l{i}_{k}"] for k in _ARRAYS})
                      for i, d in enumerate(meta["layers"])]
        return cls(meta["name"], meta["dataset"], tuple(meta["input_shape"]), meta["input_scale"],
                   layers, meta["classes"])
