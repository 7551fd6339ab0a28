"""Parameter and non-zero counts of a built PyTorch model (the quantities hw.costs predicts).

A pre-defined zero is not a parameter (hw.costs, "Counting rules"): the trainable parameter
count of a model is every parameter element minus the masked-out conv weights.
"""

from __future__ import annotations

from torch import nn

from .psconv import PSConv2d

__all__ = ["trainable_params", "conv_nonzero"]


def trainable_params(model: nn.Module) -> int:
    """Trainable parameters, pre-defined zeros of :class:`PSConv2d` layers excluded."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    masked = sum(int((~m.mask).sum()) for m in model.modules() if isinstance(m, PSConv2d))
    return total - masked


def conv_nonzero(model: nn.Module) -> int:
    """Conv weights that may be non-zero: mask population of sparse convs, all weights of dense ones."""
    return sum(m.nnz if isinstance(m, PSConv2d) else m.weight.numel()
               for m in model.modules() if isinstance(m, nn.Conv2d))
