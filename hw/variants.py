"""Variant names of pre-defined sparse kernels (METHOD.md, "Variant names").

A model name is ``NET`` optionally followed by one variant suffix:

=====================  ==========================================================
suffix                 meaning
=====================  ==========================================================
(none) or ``pSC9``     dense baseline
``pSC<n>``             KSS n, support pseudo-random per kernel, no periodicity
``pSC<n>_P<m>``        as ``pSC<n>``, plus every m-th kernel dense
``PS<n>_P<m>``         periodic: KVS = P = m, KSS n
``PSD<n>_P<m>``        periodic with boosting: m-1 sparse kernels, one dense
=====================  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Variant", "VariantNameError", "parse_variant", "split_model_name", "DENSE",
           "PAPER_VARIANTS"]

GRAMMAR = ("NET[_pSC<n>|_pSC<n>_P<m>|_PS<n>_P<m>|_PSD<n>_P<m>] with 1 <= n <= 9 and m >= 1, "
           "e.g. VGG16_pSC4, ResNet18_0.5_PSD1_P8, VGG16_PS2_P6")

_SUFFIX = re.compile(r"^(?P<kind>pSC|PSD|PS)(?P<kss>\d+)(?:_P(?P<period>\d+))?$")
_TAIL = re.compile(r"_(?P<suffix>(?:pSC|PSD|PS)\d+(?:_P\d+)?)$")


class VariantNameError(ValueError):
    """A model or variant name does not follow the grammar; the message states it."""


@dataclass(frozen=True)
class Variant:
    """One sparsity variant of 3x3 kernels.

    Parameters
    ----------
    kind : str
        ``"pSC"`` (non-periodic), ``"PS"`` (periodic) or ``"PSD"`` (periodic, boosted).
    kss : int
        Kernel support size n: non-zeros of each sparse 3x3 kernel (1..9).
    period : int or None
        ``P`` (m in the name). Required for PS and PSD; for pSC it is the dense-insertion
        interval, or None.

    Members
    -------
    name : str
        The canonical suffix, e.g. ``"PSD2_P8"``; ``str(variant)`` is the same.
    is_dense : bool
        True for ``pSC9`` (the dense baseline).
    is_periodic : bool
        True for PS and PSD: the hardware can use a period table.
    """

    kind: str
    kss: int
    period: int | None = None

    def __post_init__(self):
        if self.kind not in ("pSC", "PS", "PSD"):
            raise VariantNameError(f"Variant kind must be one of pSC, PS, PSD, not {self.kind!r}")
        if not isinstance(self.kss, int) or not 1 <= self.kss <= 9:
            raise VariantNameError(f"Kernel support size (KSS) must be an integer in 1..9, "
                                   f"not {self.kss!r}")
        if self.kind in ("PS", "PSD") and self.period is None:
            raise VariantNameError(f"{self.kind} variants need a period: {self.kind}{self.kss}_P<m>")
        if self.period is not None and (not isinstance(self.period, int) or self.period < 1):
            raise VariantNameError(f"Period must be a positive integer, not {self.period!r}")
        if self.kind == "PSD" and self.period < 2:
            raise VariantNameError(f"PSD needs a period of at least 2 (one dense and at least one "
                                   f"sparse kernel per period), not {self.period}")
        if self.kind == "PSD" and self.kss == 9:
            raise VariantNameError("PSD9 is dense everywhere; use pSC9 for the dense baseline")

    @property
    def name(self) -> str:
        return f"{self.kind}{self.kss}" + (f"_P{self.period}" if self.period is not None else "")

    def __str__(self) -> str:
        return self.name

    @property
    def is_dense(self) -> bool:
        return self.kind == "pSC" and self.kss == 9

    @property
    def is_periodic(self) -> bool:
        return self.kind in ("PS", "PSD")


DENSE = Variant("pSC", 9)

#: The variants evaluated in the paper (METHOD.md), in report order.
PAPER_VARIANTS = tuple(Variant(*v) for v in [
    ("pSC", 9), ("pSC", 4), ("pSC", 2), ("pSC", 1),
    ("PS", 4, 4), ("PS", 2, 6), ("PS", 1, 9),
    ("PSD", 4, 8), ("PSD", 2, 8), ("PSD", 1, 8),
    ("PSD", 4, 16), ("PSD", 2, 16), ("PSD", 1, 16),
    ("pSC", 4, 8), ("pSC", 2, 8), ("pSC", 1, 8),
    ("pSC", 4, 16), ("pSC", 2, 16), ("pSC", 1, 16),
])


def parse_variant(suffix: str) -> Variant:
    """Parse a variant suffix such as ``"PSD2_P8"``; raise :class:`VariantNameError` if bad."""
    m = _SUFFIX.match(suffix)
    if not m:
        raise VariantNameError(f"{suffix!r} is not a variant; the grammar is {GRAMMAR}")
    kind = m["kind"]
    period = int(m["period"]) if m["period"] else None
    if kind in ("PS", "PSD") and period is None:
        raise VariantNameError(f"{suffix!r}: {kind} needs a period; the grammar is {GRAMMAR}")
    return Variant(kind, int(m["kss"]), period)


def split_model_name(name: str) -> tuple[str, Variant]:
    """Split ``"ResNet18_0.5_PSD1_P8"`` into ``("ResNet18_0.5", Variant("PSD", 1, 8))``.

    A name without a variant suffix is the dense baseline (``pSC9``).
    """
    if not isinstance(name, str) or not name:
        raise VariantNameError(f"Model name must be a non-empty string, not {name!r}")
    m = _TAIL.search(name)
    if m is None:
        # A trailing fragment that looks like a broken suffix is an error, not a net name.
        if re.search(r"_(pSC|PSD|PS)[^_]*(_P[^_]*)?$", name):
            raise VariantNameError(f"{name!r} ends in a malformed variant; the grammar is {GRAMMAR}")
        return name, DENSE
    net = name[: m.start()]
    if not net:
        raise VariantNameError(f"{name!r} has no network before the variant; the grammar is {GRAMMAR}")
    return net, parse_variant(m["suffix"])
