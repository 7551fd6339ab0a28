"""Generator parameters of the sparse systolic engine: :class:`ArrayConfig`.

One ``ArrayConfig`` fixes everything the gateware is sized from: the ``rows x cols`` output-
stationary MAC array, the largest period ``p_max`` the circular index buffer holds, and the depths
of the on-chip memories (weights, period tables, per-channel parameters, activations, layer
descriptors). :meth:`ArrayConfig.for_model` picks depths that fit a quantized model,
:meth:`ArrayConfig.shape_for_model` the ``rows x cols`` shape of a given MAC count that runs it in
the fewest cycles (``--array auto``: :func:`config_for_model`), and
:meth:`ArrayConfig.check_model` refuses, naming the layer and the overflow, a model that does not fit.

Rows and columns are powers of two so that the engine's bank and word addressing are shifts and
masks (no dividers in the datapath); ``cols >= 2`` because the activation buffer has ``2 * cols``
byte-wide banks and a 4-byte input word spans four of them.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

from .memory_map import ADDR_BITS, Space

__all__ = ["ArrayConfig", "DEFAULT_ROWS", "DEFAULT_COLS", "AUTO", "parse_array", "config_for_model",
           "BANK_BLOCK_BYTES"]

DEFAULT_ROWS = 8
DEFAULT_COLS = 8

# (field, minimum, maximum) of every integer parameter.
_LIMITS = {
    "rows": (1, 64),
    "cols": (2, 64),
    "p_max": (1, 64),
    "weight_depth": (1, 1 << 20),
    "table_depth": (1, 1 << 12),
    "param_depth": (1, 1 << 16),
    "act_depth": (4, 1 << 22),
    "max_layers": (1, 64),
    "groups": (1, 4),
}


#: Bytes of the smallest block RAM that holds a byte-wide activation bank on both families
#: (RAMB18E1 and DP16KD, 2K x 9): a bank one byte deeper takes twice the block RAM
#: (``gateware.build.bram_tiles``), so :meth:`ArrayConfig.for_model` sizes a batch's maps in
#: these steps first.
BANK_BLOCK_BYTES = 2048

#: ``--array auto``: the shape with the default's MAC count that runs the model fastest.
AUTO = "auto"


def parse_array(text: str) -> tuple[int, int] | str:
    """``"8x4"`` -> ``(8, 4)`` (rows x columns of the MAC array); ``"auto"`` -> :data:`AUTO`;
    ``ValueError`` on anything else (the sizes themselves are checked by :class:`ArrayConfig`)."""
    if str(text).strip().lower() == AUTO:
        return AUTO
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise ValueError(f"Array must be ROWSxCOLS with positive integers such as 8x8, or auto, "
                         f"not {text!r}")
    return int(match[1]), int(match[2])


def config_for_model(qmodel, array=None, *, batch: int = 1) -> "ArrayConfig":
    """:meth:`ArrayConfig.for_model` of ``array``: ``None`` (the default 8 x 8), ``(rows, cols)``
    or :data:`AUTO` (:meth:`ArrayConfig.shape_for_model` first), for runs of ``batch`` frames
    (the shape's cycle model and the activation memory)."""
    if array is None:
        return ArrayConfig.for_model(qmodel, batch=batch)
    if array == AUTO:
        array = ArrayConfig.shape_for_model(qmodel, batch=batch)
    rows, cols = array
    return ArrayConfig.for_model(qmodel, rows=rows, cols=cols, batch=batch)


def _pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


@dataclass(frozen=True)
class _Params:
    rows: int
    cols: int
    p_max: int
    weight_depth: int
    table_depth: int
    param_depth: int
    act_depth: int
    max_layers: int
    groups: int


class ArrayConfig:
    """Generator parameters of one engine build.

    Parameters (keyword-only)
    -------------------------
    rows, cols : int
        MAC array size R x C (powers of two; ``cols >= 2``). Rows hold filters of one rotation
        class, columns hold output pixels of one output row.
    p_max : int
        Largest period P of any layer (slots of the circular index buffer window).
    weight_depth : int
        Weight-buffer entries; one entry holds one step's ``rows`` int8 weights.
    table_depth : int
        Period-table slots of all layers together (one 9-bit support mask each).
    param_depth : int
        Output channels of all layers together (bias, multiplier and shift each).
    act_depth : int
        Bytes of activation memory (both ping-pong regions); a multiple of ``2 * cols``.
    max_layers : int
        Layer descriptors the sequencer can hold.
    groups : int
        Row groups G (1, 2 or 4, at most ``rows``; default 2 when ``rows >= 2``). Each layer runs
        1, 2 or up to G groups (``hw.layout.layer_mapping``: the fewest cycles): with ``g``
        groups the array's rows split into ``g`` groups of ``rows / g`` that compute the same
        filters for ``g`` consecutive output rows, each fed by its own activation read port (a
        copy of the activation banks: G copies in all), so rotation classes of ``rows / g``
        filters do not leave rows idle; a layer whose output is exactly ``cols / 2`` wide may
        instead fold two output rows into the two column halves, and a layer on ``g <= G / 2``
        groups may run flat tiles (C consecutive pixels wrapping from one output row into the
        next, each group reading its two rows through two ports), so map widths that are not a
        multiple of ``cols`` do not leave columns idle.

    Members
    -------
    config_id : int
        Stable 32-bit fingerprint (``zlib.crc32`` of the parameters).
    banks : int
        Byte-wide activation banks, ``2 * cols``.
    bank_depth : int
        Bytes per activation bank, ``act_depth / banks``.
    words_per_entry : int
        32-bit load words per weight entry, ``max(1, rows / 4)``.
    """

    def __init__(self, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS, p_max: int = 16,
                 weight_depth: int = 8192, table_depth: int = 128, param_depth: int = 512,
                 act_depth: int = 32768, max_layers: int = 16, groups: int | None = None):
        if groups is None:
            groups = 2 if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 2 else 1
        values = dict(rows=rows, cols=cols, p_max=p_max, weight_depth=weight_depth,
                      table_depth=table_depth, param_depth=param_depth, act_depth=act_depth,
                      max_layers=max_layers, groups=groups)
        for name, v in values.items():
            lo, hi = _LIMITS[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"ArrayConfig {name} must be an integer in {lo}..{hi}, not {v!r}")
        for name in ("rows", "cols"):
            if not _pow2(values[name]):
                raise ValueError(f"ArrayConfig {name} must be a power of two (bank and word "
                                 f"addressing are shifts), not {values[name]}")
        if act_depth % (2 * cols):
            raise ValueError(f"ArrayConfig act_depth must be a multiple of 2 * cols = {2 * cols} "
                             f"(one byte per bank), not {act_depth}")
        if not _pow2(groups):
            raise ValueError(f"ArrayConfig groups must be 1, 2 or 4, not {groups}")
        if groups > rows:
            raise ValueError(f"ArrayConfig groups ({groups}) must not exceed rows ({rows})")
        if p_max > table_depth:
            raise ValueError(f"ArrayConfig p_max ({p_max}) must not exceed table_depth ({table_depth})")
        words = {
            "weight_depth": weight_depth * max(1, rows // 4),
            "act_depth": act_depth // 4,
        }
        for name, w in words.items():
            if w > 1 << ADDR_BITS:
                raise ValueError(f"ArrayConfig {name} = {values[name]} needs {w} load words, more "
                                 f"than the load port's {1 << ADDR_BITS} word addresses")
        self._p = _Params(**values)

    # Read-only parameters.
    rows = property(lambda self: self._p.rows)
    cols = property(lambda self: self._p.cols)
    p_max = property(lambda self: self._p.p_max)
    weight_depth = property(lambda self: self._p.weight_depth)
    table_depth = property(lambda self: self._p.table_depth)
    param_depth = property(lambda self: self._p.param_depth)
    act_depth = property(lambda self: self._p.act_depth)
    max_layers = property(lambda self: self._p.max_layers)
    groups = property(lambda self: self._p.groups)

    @property
    def banks(self) -> int:
        return 2 * self.cols

    @property
    def bank_depth(self) -> int:
        return self.act_depth // self.banks

    @property
    def words_per_entry(self) -> int:
        return max(1, self.rows // 4)

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols

    @property
    def config_id(self) -> int:
        return zlib.crc32(repr(self.as_dict()).encode()) & 0xFFFF_FFFF

    def as_dict(self) -> dict:
        """The parameters as a plain dict (keyword arguments of the constructor)."""
        return dict(self._p.__dict__)

    def replace(self, **changes) -> "ArrayConfig":
        """A copy with some parameters changed (validated again)."""
        return ArrayConfig(**{**self.as_dict(), **changes})

    def capacity(self) -> dict:
        """``{Space: words}``: how many load words each space of this engine holds."""
        from .descriptors import DESC_HEADER_WORDS, DESC_LAYER_WORDS
        return {
            Space.DESCRIPTORS: DESC_HEADER_WORDS + DESC_LAYER_WORDS * self.max_layers,
            Space.TABLES: self.table_depth,
            Space.WEIGHTS: self.weight_depth * self.words_per_entry,
            Space.BIAS: self.param_depth,
            Space.REQUANT: self.param_depth,
            Space.INPUT: self.act_depth // 4,
        }

    def __eq__(self, other):
        return isinstance(other, ArrayConfig) and self._p == other._p

    def __hash__(self):
        return hash(self._p)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"ArrayConfig({args})"

    def _overflow(self, qmodel, batch: int, depth_first: int) -> tuple | None:
        """The first ``(field, need, layer)`` of ``qmodel``'s needs that this engine lacks, run
        in batches of ``batch`` frames with ``depth_first`` layers taken frame by frame; None
        when it fits."""
        from .layout import requirements
        req = requirements(qmodel, rows=self.rows, cols=self.cols, groups=self.groups,
                           limits=self.as_dict(), batch=batch, depth_first=depth_first)
        for field, (need, layer) in req.items():
            if need > getattr(self, field):
                return field, need, layer
        return None

    def _resolve(self, qmodel, batch: int, depth_first: int | None) -> tuple:
        """``(depth_first, overflow)``: the prefix given, or with None the one
        :meth:`depth_first_for` picks, and its :meth:`_overflow` (each prefix checked once)."""
        from .layout import depth_first_choices, model_cycles
        if depth_first is not None:
            return depth_first, self._overflow(qmodel, batch, depth_first)
        choices = depth_first_choices(len(qmodel.layers), batch)
        over = {k: self._overflow(qmodel, batch, k) for k in choices}
        fits = [k for k in choices if over[k] is None]
        if len(fits) <= 1:          # one frame, one prefix that fits or none: nothing to choose
            k = fits[0] if fits else 0
            return k, over[k]
        return min(fits, key=lambda k: (model_cycles(qmodel, rows=self.rows, cols=self.cols,
                                                     groups=self.groups, batch=batch,
                                                     depth_first=k), k)), None

    def depth_first_for(self, qmodel, *, batch: int = 1) -> int:
        """How many of ``qmodel``'s first layers a run of ``batch`` frames takes frame by frame
        on this engine (``hw.layout.build_layout``'s ``depth_first``): of
        ``hw.layout.depth_first_choices``, the fastest (cycle model) that fits this engine's
        memories and descriptor slots, the fewest layers on a tie; 0 when none fits (then
        :meth:`check_model` says why)."""
        return self._resolve(qmodel, batch, None)[0]

    def fits(self, qmodel, *, batch: int = 1, depth_first: int | None = None) -> bool:
        """Whether ``qmodel`` runs here (run ``batch`` frames at a time, its first
        ``depth_first`` layers frame by frame; None: any prefix): :meth:`check_model` passes."""
        return self._resolve(qmodel, batch, depth_first)[1] is None

    def check_model(self, qmodel, *, batch: int = 1, depth_first: int | None = None) -> None:
        """Raise ``ValueError`` naming the layer and the overflow when ``qmodel`` (run ``batch``
        frames at a time, its first ``depth_first`` layers frame by frame; None: as
        :meth:`depth_first_for` picks) cannot run here."""
        depth_first, over = self._resolve(qmodel, batch, depth_first)
        if over is None:
            return
        field, need, layer = over
        have = getattr(self, field)
        names = {"p_max": "period P", "weight_depth": "weight entries",
                 "table_depth": "period-table slots", "param_depth": "output channels",
                 "act_depth": "activation bytes", "max_layers": "layers"}
        run = f" in batches of {batch} frames" if batch > 1 else ""
        if depth_first:
            run += f" (its first {depth_first} layers frame by frame)"
        hint = ""
        if field == "act_depth":
            # Say how far another depth-first prefix would bring the activations.
            from .layout import depth_first_choices, requirements
            least = min((requirements(qmodel, rows=self.rows, cols=self.cols, groups=self.groups,
                                      batch=batch, depth_first=k)["act_depth"][0], k)
                        for k in depth_first_choices(len(qmodel.layers), batch))
            if least[0] < need:
                hint = (f"; with its first {least[1]} layers frame by frame (depth-first) it "
                        f"would need {least[0]}")
        raise ValueError(f"Model {qmodel.name!r}{run} does not fit {self!r}: the model needs "
                         f"{need} {names[field]} in total, {need - have} more than "
                         f"{field} = {have} (overflowing at layer {layer!r}){hint}")

    @classmethod
    def shape_for_model(cls, qmodel, *, macs: int = DEFAULT_ROWS * DEFAULT_COLS,
                        max_aspect: int = 4, batch: int = 1) -> tuple[int, int]:
        """``(rows, cols)`` with ``rows * cols == macs`` (powers of two, at most ``max_aspect``
        times longer one way than the other) on which the cycle model runs ``qmodel`` (``batch``
        frames a run) fastest with its best row groups; ties go to the squarer shape, then to
        more rows.

        Rows hold the filters of a class (or of mixed classes) and columns output pixels, so
        small maps with large classes want more rows (FashionNet's 7 x 7 conv3 at PS4_P4: 49 /
        52 on 16 x 4, 49 / 56 on 8 x 8), while a tile never takes fewer than ``rows`` cycles, so
        short layers want fewer.
        """
        from .layout import model_cycles
        if isinstance(macs, bool) or not isinstance(macs, int) or not _pow2(macs):
            raise ValueError(f"MAC count must be a power of two, not {macs!r}")
        shapes = []
        for b in range(macs.bit_length()):
            rows, cols = 1 << b, macs >> b
            if (max(rows, cols) <= max_aspect * min(rows, cols)
                    and all(_LIMITS[n][0] <= v <= _LIMITS[n][1] for n, v in (("rows", rows), ("cols", cols)))):
                shapes.append((rows, cols))
        if not shapes:
            raise ValueError(f"No array shape of {macs} MACs within aspect {max_aspect} and the limits "
                             f"rows {_LIMITS['rows']}, cols {_LIMITS['cols']}")

        def cost(shape):
            rows, cols = shape
            cycles = min(model_cycles(qmodel, rows=rows, cols=cols, groups=g, batch=batch)
                         for g in (1, 2, 4) if g <= rows)
            return cycles, abs(math.log2(rows / cols)), -rows
        return min(shapes, key=cost)

    @classmethod
    def for_model(cls, qmodel, *, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS,
                  groups: int | None = None, batch: int = 1) -> "ArrayConfig":
        """The smallest config (depths rounded up to powers of two) that runs ``qmodel``
        (``batch`` frames a run: the activation memory holds them all).

        ``groups=None`` picks the row groups (1, 2 or 4, at most ``rows``) with which the cycle
        model (``hw.layout.model_cycles``) runs the model fastest; among equally fast ones the
        fewest (each group is another copy of the activation banks).

        For a batch, the activation memory is sized for the depth-first prefix
        (``hw.layout.build_layout``'s ``depth_first``) whose banks take the fewest
        :data:`BANK_BLOCK_BYTES` blocks of block RAM, the fastest of those: a batch's big early
        maps then hold one frame, and the small late maps, which gain from the batch, all of
        them (FashionNet_PSD2_P8 in batches of two: 27,648 activation bytes instead of 37,888,
        so each of its 64 banks fits a RAMB18E1 instead of a RAMB36E1).

        Raises ``ValueError`` for models the engine cannot run at all (non-periodic sparse
        layers, unsupported shapes) or that exceed the address ranges of the load port.
        """
        from .layout import depth_first_choices, model_cycles, requirements
        for name, v in (("rows", rows), ("cols", cols)):
            lo, hi = _LIMITS[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or not _pow2(v):
                raise ValueError(f"ArrayConfig {name} must be a power of two in {lo}..{hi}, not {v!r}")
        if groups is None:
            options = [g for g in (1, 2, 4) if g <= rows]
            groups = min(options, key=lambda g: (model_cycles(qmodel, rows=rows, cols=cols,
                                                              groups=g, batch=batch), g))

        def need(k):
            return {f: n for f, (n, _) in requirements(qmodel, rows=rows, cols=cols, groups=groups,
                                                       batch=batch, depth_first=k).items()}

        choices = depth_first_choices(len(qmodel.layers), batch)
        needs = {k: need(k) for k in choices}

        def cost(k):
            # Block RAMs a bank needs first (a bank one byte past a block takes another), then
            # cycles: the depth-first prefix that keeps the banks smallest, the fastest of those.
            bank = -(-needs[k]["act_depth"] // (2 * cols))
            return (-(-bank // BANK_BLOCK_BYTES),
                    model_cycles(qmodel, rows=rows, cols=cols, groups=groups, batch=batch,
                                 depth_first=k), k)
        req = needs[min(choices, key=cost) if len(choices) > 1 else choices[0]]
        # Activation memory in whole 64-byte bank rows (not a power of two: it is the largest memory).
        unit = 2 * cols * 64
        act = max(-(-req["act_depth"] // unit) * unit, unit)
        p_max = _next_pow2(req["p_max"])
        table = _next_pow2(max(req["table_depth"], 16, p_max))
        return cls(rows=rows, cols=cols, p_max=p_max,
                   weight_depth=_next_pow2(max(req["weight_depth"], 16)), table_depth=table,
                   param_depth=_next_pow2(max(req["param_depth"], 16)), act_depth=act,
                   max_layers=max(req["max_layers"], 1), groups=groups)
