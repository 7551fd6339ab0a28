"""psconv-accel models: PyTorch pre-defined sparse networks, training and int8 export.

- :class:`~models.psconv.PSConv2d`: a drop-in ``nn.Conv2d`` with a pre-defined sparse mask (from hw/).
- :func:`build`: the network zoo by name (``"FashionNet_PSD2_P8"``, ``"ResNet18_0.5_PSD1_P8"``, ...).
- ``python -m models.train`` / ``python -m models.quantize``: training and int8 export to a QModel.
- :mod:`models.golden`: the exact integer PyTorch forward of a QModel (the hardware's golden model).
"""

from .psconv import PSConv2d, enforce_masks
from .zoo import build, NETWORK_NAMES

__all__ = ["PSConv2d", "enforce_masks", "build", "NETWORK_NAMES"]
