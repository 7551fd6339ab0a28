"""`PSConv2d`: a drop-in ``nn.Conv2d`` whose kernels follow a pre-defined sparse pattern.

The pattern (mask) comes from :mod:`hw.patterns` so the model and the hardware agree by
construction (METHOD.md, "The authors' published training code"): the weights are multiplied by
the mask once at init, the gradients after every backward (a tensor hook), and
:func:`enforce_masks` re-applies the mask to the weights after every optimizer step, so the
pre-defined zeros stay exactly zero under any optimizer, weight decay or momentum.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hw.patterns import MODES, kernel_masks
from hw.variants import Variant, parse_variant

__all__ = ["PSConv2d", "enforce_masks", "sparse_convs"]


class PSConv2d(nn.Conv2d):
    """A 2D convolution with a fixed (pre-defined) sparse kernel support.

    Parameters
    ----------
    in_channels, out_channels : int
        As ``nn.Conv2d``.
    kernel_size : int
        Square kernel size (3 or 1; 1x1 kernels are always dense).
    stride, padding : int
        As ``nn.Conv2d`` (padding defaults to ``kernel_size // 2``).
    bias : bool
        As ``nn.Conv2d``; biases are never masked.
    variant : str or hw.variants.Variant or None
        The sparsity variant (``"PSD2_P8"``); the mask is ``hw.patterns.kernel_masks(variant, ...)``.
    seed : int
        Pattern seed of this layer (``hw.networks.layer_masks`` uses ``seed + sparse layer index``).
    mode : str
        Pattern mode, one of ``hw.patterns.MODES``.
    mask : array_like of bool, optional
        An explicit ``[out, in, k, k]`` mask (e.g. from ``hw.networks.layer_masks``). When given,
        ``variant``/``seed``/``mode`` are kept as metadata only.

    Members
    -------
    mask : torch.Tensor
        Boolean buffer ``[out, in, k, k]``; saved in the ``state_dict``.
    variant : str or None
        The variant name, or None for a custom mask.
    seed : int
        The pattern seed.
    mode : str
        The pattern mode.
    nnz : int
        Number of weights that may be non-zero (mask population).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 padding: int | None = None, bias: bool = False, variant=None, seed: int = 0,
                 mode: str = "random", mask=None):
        for field, v in (("in_channels", in_channels), ("out_channels", out_channels),
                         ("kernel_size", kernel_size), ("stride", stride)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PSConv2d {field} must be a positive integer, not {v!r}")
        if mode not in MODES:
            raise ValueError(f"PSConv2d mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"PSConv2d seed must be an integer, not {seed!r}")
        if isinstance(variant, str):
            variant = parse_variant(variant)
        if variant is not None and not isinstance(variant, Variant):
            raise ValueError(f"PSConv2d variant must be a variant name, a hw.variants.Variant or None, "
                             f"not {variant!r}")
        if variant is None and mask is None:
            raise ValueError("PSConv2d needs a variant or an explicit mask")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if padding is None else padding, bias=bias)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        if mask is None:
            mask = kernel_masks(variant, out_channels, in_channels, k=kernel_size, seed=int(seed), mode=mode)
        mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        if tuple(mask.shape) != shape:
            raise ValueError(f"PSConv2d mask shape must be {shape} (out, in, k, k), not {tuple(mask.shape)}")
        self.register_buffer("mask", mask.clone())
        self._variant = variant.name if variant is not None else None
        self._seed = int(seed)
        self._mode = mode
        with torch.no_grad():
            self.weight.mul_(self.mask)
        # Masked gradients keep the zeros zero under SGD (+ momentum, + weight decay) by themselves.
        self.weight.register_hook(self._mask_grad)

    def _mask_grad(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.mask

    @property
    def variant(self) -> str | None:
        return self._variant

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def nnz(self) -> int:
        return int(self.mask.sum())

    @torch.no_grad()
    def apply_mask_(self) -> "PSConv2d":
        """Zero the weights outside the mask in place (idempotent)."""
        self.weight.mul_(self.mask)
        return self

    def get_extra_state(self):
        return {"variant": self._variant, "seed": self._seed, "mode": self._mode}

    def set_extra_state(self, state):
        self._variant = state["variant"]
        self._seed = int(state["seed"])
        self._mode = state["mode"]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # A loaded checkpoint must obey the (possibly loaded) mask too.
        self.apply_mask_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self._variant}, seed={self._seed}, mode={self._mode}"


def sparse_convs(model: nn.Module) -> dict:
    """``{module name: PSConv2d}`` of every pre-defined sparse conv in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PSConv2d)}


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """Re-apply every :class:`PSConv2d` mask; call after each optimizer step."""
    for m in model.modules():
        if isinstance(m, PSConv2d):
            m.apply_mask_()
