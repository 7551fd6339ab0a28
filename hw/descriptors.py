"""The layer descriptors the engine's sequencer runs: their fields, and what an engine refuses.

The DESCRIPTORS load space (:mod:`hw.layout` writes it) holds a header (:data:`HEADER_FIELDS`:
layer count, input and output lengths in bytes, activation address of the result) in words
``0 .. DESC_HEADER_WORDS - 1``, then one descriptor per layer: field ``i`` of
:data:`LAYER_FIELDS` of layer ``l`` at word ``DESC_HEADER_WORDS + l * DESC_LAYER_WORDS + i``, one
unsigned word each. The engine's loader (``gateware.descriptor_check``, the sequencer's
``model_ok``) refuses with BAD_MODEL what :func:`check_header` and :func:`check_descriptors`
refuse: a header outside :func:`header_limits`, a missing descriptor, a field outside
:func:`layer_limits` or :data:`LAYER_FIELD_PAIRS`, ``q`` and ``rem`` that do not split ``c_out``
(:func:`split_matches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .image import ImageError
from .link import ErrorCode
from .memory_map import LEN_BITS, Space

__all__ = ["HEADER_FIELDS", "LAYER_FIELDS", "DESC_HEADER_WORDS", "DESC_LAYER_WORDS", "GROUP_CHOICES",
           "INTERLEAVE_FRAMES",
           "MAX_LEN", "header_limits", "check_header", "FieldLimit", "ENUM_LIMIT", "LAYER_FIELD_PAIRS",
           "split_matches", "layer_limits", "check_descriptors"]

HEADER_FIELDS = ("n_layers", "input_len", "output_len", "result_base")
LAYER_FIELDS = ("c_in", "h_in", "w_in", "hw_in", "c_out", "h_out", "w_out", "out_w", "out_hw",
                "k", "stride", "relu", "pool", "period", "q", "rem", "table_base", "weight_base",
                "param_base", "in_base", "out_base", "groups", "fold", "flat", "flat_n", "flat_h",
                "flat_in", "mix", "mix_wrap", "frames", "frame_in", "frame_out")
DESC_HEADER_WORDS = 32
DESC_LAYER_WORDS = 32
#: Row groups a layer may run (each a power of two, at most the config's ``groups``).
GROUP_CHOICES = (1, 2, 4)
#: Frames of a batch an FC takes in its columns (``hw.layout``), one a column. Two things in the
#: engine are sized by it: the layer before the FC writes the frames interleaved, its pixels this
#: many bytes apart (its descriptor's ``out_w = INTERLEAVE_FRAMES * w_out``; the activation
#: buffer writes at stride 1 or 2, so 2 is the most), and the core adds the row groups' partial
#: sums of split inputs (``mix`` = 2) on this many columns.
INTERLEAVE_FRAMES = 2


#: Largest input or output length in bytes the engine's length ports carry
#: (``gateware.interfaces.CoreSignature``: :data:`hw.memory_map.LEN_BITS` bits).
MAX_LEN = (1 << LEN_BITS) - 1


def header_limits(config) -> dict:
    """The largest header values an engine of ``config`` runs: ``n_layers`` (its descriptor
    slots), ``input_len`` (bytes of its INPUT space), ``output_len``, ``result_end``
    (``result_base + output_len``: the result must end inside the activation memory). Both
    lengths are also at most :data:`MAX_LEN`, what the core's length ports carry."""
    return {"n_layers": config.max_layers,
            # (ArrayConfig keeps every space within the load port's word addresses.)
            "input_len": min(4 * config.capacity()[Space.INPUT], MAX_LEN),
            "output_len": min(config.act_depth, MAX_LEN),
            "result_end": config.act_depth}


def check_header(descriptors, config) -> None:
    """Refuse a model header the engine cannot run, as its loader does when a LOAD_IMAGE ends.

    The engine clears the header when a load begins, so words missing from ``descriptors`` (the
    image's DESCRIPTORS section, None when it has none) count as 0. ``build_layout`` never
    writes such a header; this is the hardware's check (``gateware.sequencer``'s ``model_ok``)
    for hand-made or corrupted images, whose CRC is good but whose model is not.

    Raises
    ------
    hw.image.ImageError
        With code ``BAD_MODEL``, naming the header field, its value and the allowed range.
    """
    words = np.zeros(len(HEADER_FIELDS), dtype=np.int64)
    if descriptors is not None:
        given = np.asarray(descriptors, dtype=np.int64)[:len(HEADER_FIELDS)]
        words[:len(given)] = given
    hdr = dict(zip(HEADER_FIELDS, (int(w) for w in words)))
    lim = header_limits(config)
    ranges = {"n_layers": (1, lim["n_layers"]), "input_len": (1, lim["input_len"]),
              "output_len": (1, lim["output_len"])}
    for name, (lo, hi) in ranges.items():
        if not lo <= hdr[name] <= hi:
            what = " (the image has no DESCRIPTORS header)" if descriptors is None else ""
            raise ImageError(ErrorCode.BAD_MODEL, f"model header {name} = {hdr[name]}{what}: "
                                                  f"this engine runs {lo}..{hi}")
    end = hdr["result_base"] + hdr["output_len"]
    if end > lim["result_end"]:
        raise ImageError(ErrorCode.BAD_MODEL, f"model header result_base + output_len = "
                                              f"{hdr['result_base']} + {hdr['output_len']} = {end}: "
                                              f"past the {lim['result_end']}-byte activation memory")


@dataclass(frozen=True)
class FieldLimit:
    """The values an engine runs in one descriptor field: ``lo .. hi``, or only ``values``.

    Members
    -------
    lo, hi : int
        The smallest and largest value.
    values : tuple of int or None
        When not every value of ``lo .. hi`` is allowed (a choice such as ``k``), the allowed
        ones, all below :data:`ENUM_LIMIT`.
    """
    lo: int
    hi: int
    values: tuple | None = None

    def allows(self, value: int) -> bool:
        return self.lo <= value <= self.hi and (self.values is None or value in self.values)

    def __str__(self):
        if self.values is None:
            return f"{self.lo}..{self.hi}"
        *head, last = (str(v) for v in self.values)
        return f"{', '.join(head)} or {last}" if head else last


#: Choice fields take values below this (the engine keeps one allowed bit per value).
ENUM_LIMIT = 8

#: Fields whose largest value depends on an earlier field of the same layer:
#: ``{field: (earlier field, the config's depth or None)}``. ``rem`` < ``period``;
#: ``table_base + period`` <= ``table_depth``; ``param_base + c_out`` <= ``param_depth``.
LAYER_FIELD_PAIRS = {"rem": ("period", None), "table_base": ("period", "table_depth"),
                     "param_base": ("c_out", "param_depth")}


def split_matches(c_out: int, period: int, q: int, rem: int) -> bool:
    """``q`` and ``rem`` split ``c_out`` by ``period`` (``q * period + rem == c_out``): the class
    sizes the sequencer walks then name filters ``< c_out`` only, so every parameter it reads for
    an existing output row lies in the layer's ``param_base .. param_base + c_out - 1`` (checked
    by the loader when ``rem`` is written, the last of the four)."""
    return q * period + rem == c_out


def layer_limits(config) -> dict:
    """``{field: FieldLimit}`` for every field of :data:`LAYER_FIELDS`: what an engine of
    ``config`` runs in a layer descriptor, one field at a time, plus :data:`LAYER_FIELD_PAIRS`.

    Every descriptor :func:`build_layout` writes lies inside them. They are no proof that a layer
    fits (a map's size is a product of fields): they keep each field to what its memory, its
    register and the sequencer's choices can hold, so that no field is cut to its register's
    width and no choice falls outside the engine's cases."""
    A, T, W, Pd = config.act_depth, config.table_depth, config.weight_depth, config.param_depth

    def span(lo, hi):
        return FieldLimit(lo, hi)

    def choice(*values):
        assert max(values) < ENUM_LIMIT
        return FieldLimit(min(values), max(values), tuple(values))

    size = span(1, A)          # a count of pixels, rows or channels of a map in the activations
    offset = span(0, A)        # a distance in the activations (0: unused)
    lim = dict(c_in=size, h_in=size, w_in=size, hw_in=size, c_out=span(1, Pd), h_out=size,
               w_out=size, out_w=size, out_hw=size, k=choice(1, 3), stride=choice(1, 2),
               relu=choice(0, 1), pool=choice(0, 1), period=span(1, config.p_max),
               q=span(0, Pd), rem=span(0, config.p_max - 1), table_base=span(0, T - 1),
               weight_base=span(0, W - 1), param_base=span(0, Pd - 1), in_base=span(0, A - 1),
               out_base=span(0, A - 1),
               groups=choice(*(g for g in GROUP_CHOICES if g <= config.groups)),
               fold=choice(0, 1), flat=choice(0, 1), flat_n=offset, flat_h=offset, flat_in=offset,
               mix=choice(0, 1, 2), mix_wrap=offset, frames=size, frame_in=offset,
               frame_out=offset)
    assert tuple(lim) == LAYER_FIELDS
    return lim


def check_descriptors(descriptors, config) -> None:
    """Refuse a DESCRIPTORS section the engine cannot run, as its loader does when a LOAD_IMAGE
    ends: the header (:func:`check_header`), a whole descriptor for each of its ``n_layers``,
    and every layer word of the section (those past ``n_layers`` too) inside
    :func:`layer_limits` and :data:`LAYER_FIELD_PAIRS`, with ``q`` and ``rem`` splitting
    ``c_out`` (:func:`split_matches`), taking the words in address order as the engine receives
    them. Products of fields (a map's size, a layer's weight entries) are not checked here: the
    engine's address guard stops a frame whose layer addresses memory past its end
    (``ErrorCode.ADDRESS_FAULT``).

    Raises
    ------
    hw.image.ImageError
        With code ``BAD_MODEL``, naming the layer, the field, its value and the allowed range.
    """
    check_header(descriptors, config)
    words = [int(w) for w in np.asarray(descriptors, dtype=np.int64)]
    n_layers = words[0]
    have = max(0, len(words) - DESC_HEADER_WORDS) // DESC_LAYER_WORDS
    if have < n_layers:
        raise ImageError(ErrorCode.BAD_MODEL,
                         f"model header n_layers = {n_layers}, but the DESCRIPTORS section holds "
                         f"{have} whole layer descriptor{'s' * (have != 1)} "
                         f"({len(words)} words, {DESC_HEADER_WORDS} + {DESC_LAYER_WORDS} a layer)")
    lim = layer_limits(config)
    depth = config.as_dict()
    for at in range(DESC_HEADER_WORDS, len(words)):
        layer, i = divmod(at - DESC_HEADER_WORDS, DESC_LAYER_WORDS)
        name, value = LAYER_FIELDS[i], words[at]
        if not lim[name].allows(value):
            raise ImageError(ErrorCode.BAD_MODEL, f"layer {layer} descriptor field {name} = "
                                                  f"{value}: this engine runs {lim[name]}")
        if name in LAYER_FIELD_PAIRS:
            other, mem = LAYER_FIELD_PAIRS[name]
            v = words[at - i + LAYER_FIELDS.index(other)]
            hi = depth[mem] - v if mem else v - 1
            if value > hi:
                rule = f"{name} + {other} <= {mem} = {depth[mem]}" if mem else f"{name} < {other}"
                raise ImageError(ErrorCode.BAD_MODEL, f"layer {layer} descriptor field {name} = "
                                                      f"{value} with {other} = {v}: this engine "
                                                      f"needs {rule}")
        if name == "rem":
            at0 = at - i
            c_out, period, q = (words[at0 + LAYER_FIELDS.index(n)] for n in ("c_out", "period", "q"))
            if not split_matches(c_out, period, q, value):
                raise ImageError(ErrorCode.BAD_MODEL, f"layer {layer} descriptor fields q = {q}, "
                                                      f"rem = {value} with period = {period}: this "
                                                      f"engine needs q * period + rem = c_out = "
                                                      f"{c_out}")
