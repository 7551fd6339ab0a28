"""Kernel support patterns: which taps of each k x k kernel may be non-zero.

Periodic variants (PS, PSD) are described by a :class:`PeriodTable`: P slots, each the support
(sorted tap list, taps numbered row-major 0..k*k-1) of one kernel of the period. With rotation,
filter ``f`` at input channel ``c`` uses slot ``(f + c) mod P`` (METHOD.md, "rotation"), so the
table is all the hardware needs: it is what the engine's circular index buffer holds.

Two modes choose the table:

``"random"``
    The paper's constrained pseudo-random choice: the distinct sparse variants are drawn at
    random (seeded) under the constraint that together they cover every tap; for PSD the slots
    beyond the number of variants reuse variants at random, and one slot per period is dense.
``"authors"``
    The deterministic rule of the authors' published training code: with ``r = (f + c + 1) mod P``,
    ``r == 0`` is the dense kernel and otherwise variant ``V[(r - 1) mod len(V)]`` of a fixed list
    (the 2x2 corners for KSS 4, adjacent pairs for KSS 2, single taps for KSS 1). Defined for PSD
    with KSS 1, 2 or 4.

Non-periodic pSC variants have no table; :func:`kernel_masks` draws one support per kernel.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .variants import Variant

__all__ = ["PeriodTable", "MODES", "base_kvs", "period_table", "kernel_masks", "AUTHORS_VARIANTS"]

MODES = ("random", "authors")

#: Fixed variant lists of the authors' rule, for k = 3 (taps row-major 0..8).
AUTHORS_VARIANTS = {
    4: ((0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8)),
    2: ((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8)),
    1: tuple((t,) for t in range(9)),
}


def base_kvs(kss: int, k: int = 3) -> int:
    """Number of distinct sparse variants for KSS ``kss`` (paper: 4 -> 4, 2 -> 6, 1 -> 9).

    Other support sizes use the fewest variants that can cover all ``k*k`` taps.
    """
    if k == 3 and kss in (4, 2, 1):
        return {4: 4, 2: 6, 1: 9}[kss]
    return math.ceil(k * k / kss)


@dataclass(frozen=True)
class PeriodTable:
    """The P kernel supports of a periodic layer, indexed by slot ``(f + c) mod P``.

    Members
    -------
    k : int
        Kernel size.
    supports : tuple of tuple of int
        ``supports[s]`` is the sorted tap list of slot ``s``.
    period : int
        P, the number of slots.
    kvs : int
        Number of distinct supports (kernel variants) in the table.
    """

    k: int
    supports: tuple

    def __post_init__(self):
        if not self.supports:
            raise ValueError("A period table needs at least one slot")
        for s, taps in enumerate(self.supports):
            if not taps or list(taps) != sorted(set(taps)) or not all(0 <= t < self.k * self.k for t in taps):
                raise ValueError(f"Slot {s} support {taps!r} must be a non-empty sorted list of "
                                 f"distinct taps in 0..{self.k * self.k - 1}")

    @property
    def period(self) -> int:
        return len(self.supports)

    @property
    def kvs(self) -> int:
        return len(set(self.supports))

    def slot(self, f: int, c: int) -> int:
        """Slot used by filter ``f`` at input channel ``c``."""
        return (f + c) % self.period

    def support(self, f: int, c: int) -> tuple:
        return self.supports[self.slot(f, c)]

    def nnz_per_period(self) -> int:
        return sum(len(t) for t in self.supports)

    def mask(self, c_out: int, c_in: int) -> np.ndarray:
        """Boolean mask ``[c_out, c_in, k, k]`` of the layer."""
        slot_masks = np.zeros((self.period, self.k * self.k), dtype=bool)
        for s, taps in enumerate(self.supports):
            slot_masks[s, list(taps)] = True
        f = np.arange(c_out)[:, None]
        c = np.arange(c_in)[None, :]
        return slot_masks[(f + c) % self.period].reshape(c_out, c_in, self.k, self.k)

    def bitmasks(self) -> np.ndarray:
        """One integer per slot, bit t set when tap t is in the support (the hardware's form)."""
        return np.array([sum(1 << t for t in taps) for taps in self.supports], dtype=np.int64)


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"Pattern mode must be one of {', '.join(MODES)}, not {mode!r}")


def _covering_variants(rng: np.random.Generator, count: int, kss: int, k: int, cover: bool) -> list:
    """Draw ``count`` distinct supports of size ``kss``; with ``cover`` their union is every tap."""
    taps = k * k
    combos = list(itertools.combinations(range(taps), kss))
    if count > len(combos):
        raise ValueError(f"Cannot draw {count} distinct supports of size {kss} from a {k}x{k} kernel "
                         f"(there are only {len(combos)})")
    if cover and count * kss < taps:
        raise ValueError(f"{count} supports of size {kss} cannot cover all {taps} taps; "
                         f"a period of at least {math.ceil(taps / kss)} is needed")
    for _ in range(10000):
        pick = [combos[i] for i in rng.choice(len(combos), size=count, replace=False)]
        if not cover or len(set(itertools.chain(*pick))) == taps:
            return pick
    # Constructive fallback: deal a random permutation of the taps out cyclically.
    perm = rng.permutation(taps)
    pick = [tuple(sorted(int(perm[(v * kss + t) % taps]) for t in range(kss))) for v in range(count)]
    if len(set(pick)) != count:
        raise ValueError(f"Could not find {count} distinct covering supports of size {kss}")
    return pick


def period_table(variant: Variant, *, k: int = 3, seed: int = 0, mode: str = "random") -> PeriodTable:
    """The period table of a periodic ``variant`` for ``k x k`` kernels.

    ``k == 1`` kernels are dense by definition: a one-slot table with the single tap.
    Raises ``ValueError`` for non-periodic variants (they have no table) and for
    variants whose supports cannot cover the kernel.
    """
    _check_mode(mode)
    if k == 1:
        return PeriodTable(1, ((0,),))
    if k != 3:
        raise ValueError(f"Kernel size must be 1 or 3, not {k}")
    if not variant.is_periodic:
        raise ValueError(f"{variant} is not periodic: it has no period table (each kernel's support "
                         f"is drawn independently); use kernel_masks()")
    P, n = variant.period, variant.kss
    dense = tuple(range(k * k))
    if mode == "authors":
        if variant.kind != "PSD" or n not in AUTHORS_VARIANTS:
            raise ValueError(f"The authors' rule is defined for PSD with KSS 1, 2 or 4, not {variant}")
        V = AUTHORS_VARIANTS[n]
        # Slot s = (f + c) mod P has r = (s + 1) mod P.
        return PeriodTable(k, tuple(dense if (s + 1) % P == 0 else V[((s + 1) % P - 1) % len(V)]
                                    for s in range(P)))
    rng = np.random.default_rng([seed, P, n, 1 if variant.kind == "PSD" else 0])
    if variant.kind == "PS":
        if n == k * k:
            return PeriodTable(k, (dense,) * P)
        variants = _covering_variants(rng, P, n, k, cover=True)
        return PeriodTable(k, tuple(variants[i] for i in rng.permutation(P)))
    # PSD: P-1 sparse slots and one dense slot (last, as in the authors' rule).
    kvs = min(base_kvs(n, k), P - 1)
    variants = _covering_variants(rng, kvs, n, k, cover=kvs >= base_kvs(n, k))
    slots = variants + [variants[i] for i in rng.integers(0, kvs, size=P - 1 - kvs)]
    slots = [slots[i] for i in rng.permutation(P - 1)]
    return PeriodTable(k, tuple(slots) + (dense,))


def kernel_masks(variant: Variant, c_out: int, c_in: int, *, k: int = 3, seed: int = 0,
                 mode: str = "random") -> np.ndarray:
    """Boolean masks ``[c_out, c_in, k, k]`` of one conv layer under ``variant``.

    Periodic variants come from :func:`period_table`; ``pSC<n>`` draws an independent support per
    kernel; ``pSC<n>_P<m>`` additionally makes kernel ``(f, c)`` dense when ``(f + c + 1) mod m == 0``.
    """
    for field, v in (("c_out", c_out), ("c_in", c_in)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{field} must be a positive integer, not {v!r}")
    _check_mode(mode)
    if k == 1 or variant.is_dense:
        return np.ones((c_out, c_in, k, k), dtype=bool)
    if variant.is_periodic:
        return period_table(variant, k=k, seed=seed, mode=mode).mask(c_out, c_in)
    if mode == "authors":
        raise ValueError(f"The authors' rule is defined for PSD variants only, not {variant}")
    rng = np.random.default_rng([seed, variant.kss, variant.period or 0, 2])
    taps = k * k
    order = rng.random((c_out, c_in, taps)).argsort(axis=-1)
    flat = np.zeros((c_out, c_in, taps), dtype=bool)
    np.put_along_axis(flat, order[..., : variant.kss], True, axis=-1)
    if variant.period is not None:
        f = np.arange(c_out)[:, None]
        c = np.arange(c_in)[None, :]
        flat[(f + c + 1) % variant.period == 0] = True
    return flat.reshape(c_out, c_in, k, k)
