"""What the words of each load-port space mean: the engine's memory layout of a quantized model.

:func:`build_layout` turns a :class:`hw.qmodel.QModel` and an :class:`hw.array.ArrayConfig` into
the 32-bit words of every :class:`hw.memory_map.Space` (except INPUT, which
:meth:`Layout.input_words` encodes per frame) plus the engine's expected cycle count per layer.

Spaces
------
DESCRIPTORS
    The header and one descriptor a layer, as :mod:`hw.descriptors` defines them (the fields,
    their word addresses, and what the engine refuses with BAD_MODEL: ``check_descriptors``).
    An FC layer is a 1x1 conv on a 1 x 1 input with ``c_in`` channels (the previous output
    flattened in C, H, W order, which is exactly how activations are stored).
TABLES
    One word per period-table slot: bit ``t`` set when tap ``t`` (row-major) is in the support.
    Layer ``l``'s ``P`` slots start at its ``table_base``; filter ``f`` at input channel ``c``
    reads slot ``table_base + (f + c) mod P``.
WEIGHTS
    Weight entries of ``rows`` int8 (``words_per_entry`` little-endian words each). A layer runs
    ``G`` row groups (``groups`` field: 1, 2 or 4, at most the config's ``groups``; the one the
    cycle model finds fastest, :func:`layer_mapping`) of ``gs = rows / G`` rows. For each layer, rotation class
    ``r`` in ``0..P-1``, block ``b`` of ``gs`` filters and step ``k`` of the class's CSR_P data
    vector (``for c: for tap in support((r + c) mod P)``), one entry holds, in row ``i``, the
    weight of filter ``f = r + P * (b * gs + i mod gs)`` at step ``k`` (zero past the last
    filter): every group gets the same filters. A *mixed* layer (``mix`` field, :func:`mix_allowed`)
    instead gives group ``g`` the filters of class ``r + g`` (classes run in sets of ``G``, ``r`` a
    multiple of ``G``): row ``i`` holds filter ``f = r + g + P * (b * gs + i mod gs)``, ``g = i div gs``,
    and its step ``k`` is the step of class ``r``'s walk at input channel ``c`` with the filter's
    weight at channel ``(c - g) mod c_in`` (rotation: with ``P`` dividing ``c_in`` that channel's
    support is slot ``(r + c) mod P``, the one class ``r`` reads), so all groups share the tap
    walk and group ``g`` reads its activations ``g`` channel planes lower, wrapping by
    ``mix_wrap = c_in * hw_in`` at the first ``g`` channels. A layer whose output is exactly ``cols / 2`` wide and
    that runs one group *folds* instead (``fold`` field): columns ``cols/2 ..`` compute the next
    output row, so the C columns are full. A layer may also run *flat* tiles (``flat`` field,
    :func:`flat_tiles`): each group's C columns take C consecutive pixels of the flattened output
    map, wrapping from one output row into the next, so a map whose width is not a multiple of C
    leaves no columns idle at its row ends. With ``G`` flat groups the ``h_out`` rows are cut
    into ``G`` regions of ``flat_h = h_out / G`` rows (``flat_n = flat_h * w_out`` pixels), group
    ``g`` computing region ``g``; ``flat_in = s * flat_h * w_in`` is the input address distance
    between regions. Group ``g`` reads through two ports: port ``2g`` the pixels of the tile's
    first output row, port ``2g + 1`` those of the next one (the fold is the case
    ``w_out = C / 2``). Mixed groups all compute the same pixels (one output row per tile, or flat
    tiles of the whole map: group ``g`` then reads through ports ``2g`` and ``2g + 1`` or, when
    the layer has as many groups as the engine has ports, stride 1 and ``w_in = w_out``, through
    port ``g`` alone: the tile's C pixels are then C consecutive input bytes, even across a row
    end). An FC (a 1x1 conv on a 1 x 1 map) may *split its inputs* instead (``mix`` = 2,
    :func:`split_allowed`): its K inputs are described as a map of ``h_in = G`` rows of
    ``K / G`` values (``c_in = K / G`` channels of pitch ``hw_in``, 1, or ``B`` where a batch
    stores the map tall; rows ``w_in = K / G * hw_in`` apart), so that row group
    ``g`` reads row ``g``, the chunk ``g * K / G ..`` of the inputs, through its port; row ``i``
    of group ``g`` holds filter ``f = r + P * (b * gs + i mod gs)``'s steps of that chunk. Only
    group 0's output row exists (``h_out = 1``): the engine adds the groups' partial sums of each
    filter into it as the array drains (``gateware.core``). Without it an FC's 1 x 1 output
    fills one column of C, so its cycles are ``ceil(C_o / R) * K``; split, ``ceil(C_o / gs) *
    K / G`` (FashionNet's 1024 -> 10 on 8 x 8: 2,048 -> 1,280).
BIAS, REQUANT
    One word per output channel at ``param_base + f``: the int32 bias; ``M | s << 16``.
INPUT
    The int8 frame in C, H, W order (a batch: stored as its input map, see Batches), 4 bytes a
    word, little-endian (``hw.memory_map``), padded with zero bytes to whole words.

Activations
-----------
Every activation map lives in one flat byte space (``act_depth`` bytes, C, H, W order from a base
address); byte ``n`` sits in bank ``n mod 2C`` at bank address ``n div 2C``. Layer
``l`` reads region ``l mod 2`` and writes region ``(l + 1) mod 2`` (ping-pong); the input frame is
region 0 at address 0.

Padded rows
-----------
A map's rows are ``w`` bytes apart, except where the layer that reads it runs faster with
*padded* rows (:func:`_row_pitches`): a stride-2 layer's mixed flat tiles with a port a group
(one port reads both output rows of a tile) need the second row's input to start a whole number
of bank rows after where the first row's would run on, ``2 * (pitch - w_out)`` a multiple of
``2C``, so the map is stored with rows ``pitch = w + ((w_out - w) mod C)`` bytes apart (the
padding bytes are never read: the layer's taps stop inside the row). The descriptor's ``w_in``
(the reader's) and ``out_w`` (the writer's) are that pitch; the engine reads the second row's
columns ``2 * (pitch - w_out) / 2C`` bank rows further (``gateware.act_buffer``, ``rd_jump``) and
a flat or folded writer's second-row lanes ``pitch - w_out`` bytes further (``wr_gap``). A
writer of padded rows runs no flat tiles in several regions (their region distance is counted in
pixels) and is not pooled. A padded input map is sent padded (:meth:`Layout.input_words`,
``input_len``).

Cycles
------
:mod:`hw.cycles` counts each layer's cycles; :func:`layer_mapping` picks the mapping (row groups,
fold, flat tiles, mixed classes, split inputs) with the fewest, and a layout's
``expected_cycles`` sums its runs (after the first layer, :func:`hw.cycles.prefetch_cycles` of each
descriptor load hide behind the previous layer's drain).

Batches
-------
``build_layout(..., batch=B)`` runs B frames at once. Every map holds all of them: *tall*
(channel ``c`` of frame ``b`` at ``c * B * hw + b * hw``, the frames' rows following each other
like the rows of one map) unless an FC reads it or wrote it (then frame after frame,
``b * C * hw + c * hw``: an FC reads a frame's values as one vector). With ``B`` =
:data:`hw.descriptors.INTERLEAVE_FRAMES` (2), a map an FC reads is instead *interleaved* where
value ``v`` of frame ``b`` (``v = c * hw + y * w + x``) at ``v * B + b``, the layer before
writing its pixels 2 bytes apart (``out_w = 2 * w_out``; pooled, since session 22, ``out_w =
2 * (w_out // 2)``, its pooled pixels 2 bytes apart), so that
the FC takes both frames in two columns, each weight read once for the batch; the FC's own
output, a 1 x 1 map, is then tall (``f * B + b``). The ``hw_in`` and ``out_hw`` fields are
channel pitches, ``out_w`` the output's row pitch. A layer runs its frames one by one (``frames = B`` passes,
``frame_in`` / ``frame_out`` the base steps from one frame to the next; the ``passes`` of
:func:`hw.cycles.layer_cycles`) or, where the engine can and it is faster, *tall*
(``frame_in = 0``): one pass of flat tiles over all ``B * h_out`` rows, which cross from one frame
into the next, the input rows checked frame-locally (``h_in``, ``h_out`` are a frame's).
``frames = 1`` and zero frame fields for a single frame.

Pooling
-------
A layer with ``pool`` (2x2 max-pool, stride 2, after requantization) runs the same tiles as
without on the conv rows the pool reads (its descriptor's ``h_out`` is even: an odd last conv
row, which the pool drops, is not computed; an odd last column is, since at stride 1 the engine
needs ``w_in = w_out``) and stores the pooled map (``out_w = w_out // 2``,
``out_hw = (h_out // 2) * out_w``); the engine pairs rows in its write-back (``gateware.output_path.PoolStage``), which adds :data:`hw.cycles.POOL_CYCLES`
to the layer's drain and nothing else. With ``G`` row groups a tile holds output rows
``oy .. oy + G - 1`` (``oy`` a multiple of ``G``, so even): the pooling pairs
``(oy + 2i, oy + 2i + 1)`` lie inside one tile for ``G = 2`` and ``G = 4`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .cycles import DESC_CYCLES, FRAME_OVERHEAD, layer_cycles, prefetch_cycles, tile_span
from .descriptors import (DESC_HEADER_WORDS, DESC_LAYER_WORDS, GROUP_CHOICES, LAYER_FIELDS,
                          INTERLEAVE_FRAMES, check_descriptors)
from .image import ImageError
from .memory_map import Space
from .variants import parse_variant

__all__ = ["Layout", "LayerPlan", "build_layout", "requirements",
           "layer_mapping", "model_cycles", "tile_bound", "row_bound", "flat_tiles",
           "mix_allowed", "split_allowed", "mixed_classes", "check_batch", "batch_arg",
           "depth_first_choices"]

def tile_bound(plan, *, rows: int, cols: int) -> float:
    """The utilization ``plan``'s mapping allows at best: its MACs over ``rows * cols`` times the
    cycles of its tiles alone (each ``max(L_r, tile_span(rows))``, as in
    :func:`hw.cycles.layer_cycles`), i.e. without the per-layer overhead and drain. What it lacks of
    1.0 is quantization: classes not filling the rows of a group, maps not filling the columns or
    the output rows of a tile."""
    G = plan.fields["groups"]
    gs = rows // G
    per = mixed_classes(plan.class_filters, G) if plan.fields["mix"] == 1 else plan.class_filters
    span = tile_span(rows)
    tile_cycles = plan.passes * sum(-(-n // gs) * plan.tiles * max(L, span)
                                    for L, n in zip(plan.steps, per) if n)
    return plan.macs / (rows * cols * tile_cycles)


def row_bound(class_filters, *, rows: int, groups: int) -> float:
    """The share of the array's rows that any mapping of a layer with ``class_filters`` (filters
    per rotation class) can keep busy on an engine with ``rows`` rows and up to ``groups`` row
    groups: the best, over ``g`` in {1, 2, 4} (at most ``groups`` and ``rows``), of its filters
    over ``sum(ceil(n / (rows / g)) * rows / g)``. Every mapping gives each group of ``rows / g``
    rows filters of one class (they share one tap walk), so a class of ``n`` filters takes at
    least ``ceil(n / (rows / g))`` group tiles, whatever the pixels, the mixing or the batch.
    Utilization never exceeds it; a layer whose bound is below a target cannot meet it on this
    engine (FashionNet's conv3 at PS2_P6: classes of 5 and 6 filters, 32 / 36 on 8 rows)."""
    best = 0.0
    for g in (1, 2, 4):
        if g > groups or g > rows:
            break
        gs = rows // g
        slots = sum(-(-n // gs) * gs for n in class_filters)
        if slots:
            best = max(best, sum(class_filters) / slots)
    return best


def mix_allowed(period: int, c_in: int, c_out: int, *, groups: int, pool: bool = False) -> bool:
    """Whether ``groups`` row groups may take ``groups`` different classes of a layer (the ``mix``
    field): rotation gives class ``r + g`` at channel ``c - g`` the support of class ``r`` at ``c``
    only when ``P`` divides ``c_in``; the classes must come in whole sets (``groups`` divides
    ``P``) of equal size (``P`` divides ``c_out``); pooled layers pair output rows across groups,
    so they do not mix."""
    return (groups in (2, 4) and period % groups == 0 and c_in % period == 0
            and c_out % period == 0 and not pool)


def split_allowed(period: int, c_in: int, *, groups: int, pool: bool = False) -> bool:
    """Whether ``groups`` row groups may split the ``c_in`` inputs of a 1x1 conv on a 1 x 1 map
    (an FC) into chunks, one a group (``mix`` = 2): each chunk must be whole periods (``P``
    divides ``c_in / groups``), so that every group's tap walk is class ``r``'s."""
    return (groups in (2, 4) and c_in % groups == 0 and (c_in // groups) % period == 0
            and not pool)


def mixed_classes(class_filters, groups: int) -> tuple:
    """Filters per class as a mixed layer walks them: class ``r`` (a multiple of ``groups``)
    carries its set of ``groups`` classes (one per group, each as many filters), the classes in
    between none (the sequencer passes them in one cycle each)."""
    return tuple(n if r % groups == 0 else 0 for r, n in enumerate(class_filters))


@dataclass(frozen=True)
class LayerPlan:
    """How the engine runs one layer.

    Members
    -------
    name : str
        The QLayer's name.
    fields : dict
        The descriptor fields (:data:`LAYER_FIELDS`).
    steps : tuple of int
        ``L_r``, the non-zeros per filter of each rotation class ``r``: the steps of each of its
        tiles (split inputs: ``L_r / G``, a group's chunk).
    class_filters : tuple of int
        Filters per class ``r``.
    macs : int
        Non-zero MACs (pattern positions, zero padding included) of all the batch's frames, what
        the ``macs`` counter counts.
    dense_macs : int
        ``k^2 H_o W_o C_o C_i`` times the batch's frames.
    tiles : int
        Pixel tiles per filter block (and pass).
    columns : int
        Frames of the batch the layer takes in its columns, one a column: an FC reading an
        interleaved map, else 1.
    cycles : int
        Expected engine cycles of the layer (tiles plus :data:`hw.cycles.LAYER_OVERHEAD`, less
        the descriptor load the engine hides: all of it for the first, loaded while the engine
        idles, :func:`hw.cycles.prefetch_cycles` for the others).
    frame : int or None
        The frame of the batch this descriptor runs, for a layer of a depth-first prefix
        (:func:`build_layout`); None when it takes the whole batch (or the single frame).
    """

    name: str
    fields: dict
    steps: tuple
    class_filters: tuple
    macs: int
    dense_macs: int
    tiles: int
    cycles: int
    frame: int | None = None
    columns: int = 1

    @property
    def passes(self) -> int:
        """Passes over the layer's classes: the batch's frames one by one (``frame_in`` set), or
        one (a single frame, or the batch stacked into one tall map)."""
        return self.fields["frames"] if self.fields["frame_in"] else 1

    @property
    def tall(self) -> bool:
        """The batch's frames run as one map of ``frames * h_out`` rows (flat tiles cross from
        one frame into the next)."""
        return self.fields["frames"] > 1 and not self.fields["frame_in"]

    @property
    def mapping(self) -> str:
        """How the layer runs, in words: its row groups and the tile form (folded, flat tiles
        with their regions, mixed classes) and, for a batch, how it takes the frames."""
        f = self.fields
        G = f["groups"]
        words = [f"{G} group" + ("s" if G > 1 else "")]
        if f["fold"]:
            words.append("folded")
        if f["mix"] == 1:
            words.append(f"{G} classes a tile")
        if f["mix"] == 2:
            words.append(f"inputs split in {G}")
        if f["flat"]:
            regions = 1 if f["mix"] else G
            words.append("flat" + (f" in {regions} regions" if regions > 1 else ""))
        if self.tall:
            words.append(f"{f['frames']} frames as one map")
        elif self.columns > 1:
            words.append(f"{self.columns} frames in its columns")
        elif self.passes > 1:
            words.append("frame by frame")
        if self.frame is not None:
            words.append(f"frame {self.frame}, depth-first")
        return ", ".join(words)


@dataclass(frozen=True)
class Layout:
    """A model laid out for one engine configuration.

    Members
    -------
    config : hw.array.ArrayConfig
    sections : dict
        ``{Space: numpy.ndarray uint32}`` for every space but INPUT.
    layers : tuple of LayerPlan
        One per layer descriptor, in the order the engine runs them: a layer of a depth-first
        prefix has one per frame.
    input_shape, output_shape : tuple
        ``(C, H, W)`` of one input frame and of one frame's result.
    batch : int
        Frames a run takes (``input_words``, ``decode_output``).
    input_tall, output_tall : bool
        The batch's input and result maps are stored tall (channel ``c`` of frame ``b`` at
        ``c * B * hw + b * hw``), else frame after frame.
    input_pitch : int
        Bytes from one input row to the next: the frame's width, or more where the first layer
        reads padded rows (the padding bytes are sent as zeros).
    input_len, output_len : int
        Bytes of a run's input (``batch`` frames, padded rows included) and of its result.
    expected_cycles : int
        Sum of the layers' cycles plus :data:`hw.cycles.FRAME_OVERHEAD`: the ``cycles``
        counter's value.
    depth_first : int
        How many of the first layers a run takes frame by frame, frame after frame through all
        of them (:func:`build_layout`); 0: every layer takes the whole batch.
    """

    config: object
    sections: dict = field(repr=False)
    layers: tuple
    input_shape: tuple
    output_shape: tuple
    batch: int = 1
    input_tall: bool = False
    output_tall: bool = False
    depth_first: int = 0
    input_pitch: int | None = None

    def __post_init__(self):
        if self.input_pitch is None:
            object.__setattr__(self, "input_pitch", int(self.input_shape[2]))

    @property
    def input_len(self) -> int:
        c, h, _ = self.input_shape
        return self.batch * int(c) * int(h) * self.input_pitch

    @property
    def output_len(self) -> int:
        return self.batch * int(np.prod(self.output_shape))

    @property
    def expected_cycles(self) -> int:
        return FRAME_OVERHEAD + sum(l.cycles for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def schedule(self) -> list:
        """Per layer descriptor, how it runs and how well: ``{"layer", "frame", "mapping",
        "groups", "fold", "flat", "mix", "passes", "tall", "tiles", "cycles", "macs",
        "utilization", "tile_bound"}`` (``frame``: :attr:`LayerPlan.frame`)
        (``utilization``: MACs over
        ``rows * cols`` times the layer's cycles, overhead included; ``tile_bound``:
        :func:`tile_bound`, what its mapping allows at best)."""
        R, C = self.config.rows, self.config.cols
        return [{"layer": l.name, "frame": l.frame, "mapping": l.mapping,
                 **{k: l.fields[k] for k in ("groups", "fold", "flat", "mix")},
                 "passes": l.passes, "tall": l.tall,
                 "tiles": l.tiles, "cycles": l.cycles, "macs": l.macs,
                 "utilization": round(l.macs / (R * C * l.cycles), 4),
                 "tile_bound": round(tile_bound(l, rows=R, cols=C), 4)} for l in self.layers]

    def _arrange(self, x, shape, tall):
        """``x``: ``[B, C, H, W]`` -> the stored order of a map (tall or frame after frame)."""
        x = x.reshape((self.batch,) + tuple(shape))
        return (x.transpose(1, 0, 2, 3) if tall else x).reshape(-1)

    def input_words(self, frame) -> np.ndarray:
        """INPUT words of one int8 frame ``[C, H, W]`` (a batch: ``[B, C, H, W]``, stored as
        :attr:`input_tall` says), rows :attr:`input_pitch` bytes apart (zeros in the padding),
        4 bytes a word, LE."""
        x = np.asarray(frame)
        want = tuple(self.input_shape) if self.batch == 1 else (self.batch,) + tuple(self.input_shape)
        what = "Input frame" if self.batch == 1 else f"Input batch of {self.batch} frames"
        if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{what} must hold integers, not dtype {x.dtype}")
        if tuple(x.shape) != want:
            raise ValueError(f"{what} must have shape {list(want)}, not {list(x.shape)}")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError(f"{what} values must be in -128..127, not {int(x.min() if x.min() < -128 else x.max())}")
        x = x.astype(np.int8).reshape((self.batch,) + tuple(self.input_shape))
        w = self.input_shape[2]
        if self.input_pitch != w:
            x = np.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.input_pitch - w)))
        c, h = self.input_shape[:2]
        b = self._arrange(x, (c, h, self.input_pitch), self.input_tall).view(np.uint8)
        b = np.concatenate([b, np.zeros(-len(b) % 4, np.uint8)])
        return b.view("<u4").astype(np.uint32)

    def load_words(self, frame=None) -> np.ndarray:
        """``[n, 3]`` uint32 rows ``(space, addr, data)``: every section's words, then ``frame``'s INPUT words.

        The order the engine accepts them in (any order works; this one is what tests replay).
        """
        rows = [np.stack([np.full(len(w), int(s), np.uint32), np.arange(len(w), dtype=np.uint32),
                          np.asarray(w, np.uint32)], axis=1)
                for s, w in sorted(self.sections.items())]
        if frame is not None:
            w = self.input_words(frame)
            rows.append(np.stack([np.full(len(w), int(Space.INPUT), np.uint32),
                                  np.arange(len(w), dtype=np.uint32), w], axis=1))
        return np.concatenate(rows) if rows else np.zeros((0, 3), np.uint32)

    def decode_output(self, data) -> np.ndarray:
        """The result bytes (``output_len`` of them) as int8 ``output_shape`` (a batch:
        ``[B, *output_shape]``)."""
        raw = np.frombuffer(bytes(data), dtype=np.int8)
        shape = tuple(self.output_shape)
        if raw.size != self.output_len:
            what = f"{self.batch} x " if self.batch > 1 else ""
            raise ValueError(f"Result must be {self.output_len} bytes ({what}{list(shape)}), "
                             f"not {raw.size}")
        if self.output_tall:
            c, h, w = shape
            out = raw.reshape(c, self.batch, h, w).transpose(1, 0, 2, 3)
        else:
            out = raw.reshape((self.batch,) + shape)
        return (out[0] if self.batch == 1 else out).copy()

    def encode_output(self, outputs) -> np.ndarray:
        """The inverse of :meth:`decode_output`: int8 result bytes in the order the engine sends
        them, from ``output_shape`` (a batch: ``[B, *output_shape]``)."""
        x = np.asarray(outputs, dtype=np.int64)
        return self._arrange(x, self.output_shape, self.output_tall).astype(np.int8)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_variant(layer):
    v = parse_variant(layer.variant) if layer.variant else None
    if v is not None and not v.is_periodic and not v.is_dense:
        raise ValueError(f"Layer {layer.name!r}: variant {layer.variant} is not periodic, so there is "
                         f"no period table for the engine's index buffer to replay (every kernel has "
                         f"its own support); use a PS/PSD variant, or the dense pSC9 baseline")


def _plan_shapes(qmodel, rows, cols):
    """Per layer: (qlayer, csrp, in_shape, conv out (h, w) the engine computes, stored out
    shape). A pooled layer's h is even: the odd last conv row the pool drops is left out."""
    from .reference import validate_layer
    if not qmodel.layers:
        raise ValueError(f"Model {qmodel.name!r} has no layers")
    shape = tuple(int(v) for v in qmodel.input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"Model {qmodel.name!r}: input_shape must be (C, H, W) of positive sizes, "
                         f"not {qmodel.input_shape!r}")
    out = []
    for l in qmodel.layers:
        _check_variant(l)
        image = validate_layer(l)
        if l.kind == "fc":
            if int(np.prod(shape)) != l.c_in:
                raise ValueError(f"Layer {l.name!r}: fc c_in = {l.c_in} but its input {list(shape)} "
                                 f"has {int(np.prod(shape))} values")
            in_shape = (l.c_in, 1, 1)
        else:
            if shape != (l.c_in, l.h_in, l.w_in):
                raise ValueError(f"Layer {l.name!r}: input shape {[l.c_in, l.h_in, l.w_in]} does not "
                                 f"match the previous output {list(shape)}")
            in_shape = shape
        h_conv = (in_shape[1] + 2 * (l.k // 2) - l.k) // l.stride + 1
        w_conv = (in_shape[2] + 2 * (l.k // 2) - l.k) // l.stride + 1
        o = (l.c_out, h_conv // 2, w_conv // 2) if l.pool else (l.c_out, h_conv, w_conv)
        if l.pool:
            # The pool drops an odd last conv row, so the engine does not compute it.
            h_conv -= h_conv % 2
        out.append((l, image, in_shape, (h_conv, w_conv), o))
        shape = o
    return out


def _class_steps(table, c_in):
    P = table.period
    sizes = [len(s) for s in table.supports]
    return tuple(sum(sizes[(r + c) % P] for c in range(c_in)) for r in range(P))


def _regions(sizes, cols, batch=1):
    """Ping-pong regions for maps of ``sizes`` bytes a frame (map ``j`` in region ``j mod 2``):
    ``((base 0, base 1), bytes)``."""
    align = 2 * cols
    up = lambda v: -(-v // align) * align
    size = [0, 0]
    for j, v in enumerate(sizes):
        size[j % 2] = max(size[j % 2], batch * v)
    return (0, up(size[0])), up(size[0]) + up(size[1])


def check_batch(batch, *, name: str = "Batch") -> int:
    """``batch`` (frames a run) as an int; ``ValueError`` naming ``name`` unless it is a whole
    number >= 1."""
    if not _is_int(batch) or batch < 1:
        raise ValueError(f"{name} must be a whole number of frames >= 1, not {batch!r}")
    return int(batch)


def batch_arg(text: str) -> int:
    """An argparse ``type`` for a ``--batch`` option: :func:`check_batch` of the text."""
    import argparse
    try:
        return check_batch(int(text, 10))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of frames >= 1, not {text!r}") from None


TALL, FRAMES, INTERLEAVED = "tall", "frames", "interleaved"


def _map_kinds(plans, batch):
    """Per activation map (0: the input, ``i + 1``: layer ``i``'s output), how a batch stores it:
    :data:`TALL` (channel ``c`` of frame ``b`` at ``c * B * hw + b * hw``: the frames stacked into
    a map of ``B * H`` rows), :data:`FRAMES` (frame after frame, ``b * C * hw + c * hw``) or
    :data:`INTERLEAVED` (value ``v`` of frame ``b`` at ``v * B + b``).

    An FC reads a frame's values as one vector: its input is interleaved (``B`` =
    :data:`INTERLEAVE_FRAMES`: the layer before writes its pixels, pooled or not, ``B`` bytes
    apart), so that it takes the frames in its columns, and its output, a 1 x 1 map, is then
    tall; else both are frame after frame. Every other map is tall."""
    n = len(plans)
    fc = [p[0].kind == "fc" for p in plans]
    kinds = []
    for j in range(n + 1):
        if batch == 1:
            kinds.append(FRAMES)
        elif j < n and fc[j]:
            inter = batch == INTERLEAVE_FRAMES and j > 0
            kinds.append(INTERLEAVED if inter else FRAMES)
        elif j > 0 and fc[j - 1]:
            kinds.append(TALL if kinds[j - 1] == INTERLEAVED else FRAMES)
        else:
            kinds.append(TALL)
    return kinds


def _padded_pitch(plan, cols):
    """The row pitch of layer ``plan``'s input map with which it can run mixed flat tiles with a
    port a group at stride 2 (``2 * (pitch - w_out)`` a multiple of ``2 * cols``: the tile's
    second row starts whole bank rows on), or None: not a stride-2 conv, or one whose taps reach
    past the row's last pixel (the padding bytes hold no zeros). The smallest such pitch, which
    may be the width itself."""
    l, _, in_shape, (_, w_conv), _ = plan
    w = int(in_shape[2])
    if l.kind == "fc" or l.stride != 2 or (w_conv - 1) * l.stride + l.k - 1 - l.k // 2 >= w:
        return None
    return w + (w_conv - w) % cols


def _one_port(plan, pitch, cols) -> bool:
    """A tile of layer ``plan``'s flat pixels reads one run of its input map (rows ``pitch``
    bytes apart) per port, its second output row whole bank rows on: stride 1 with ``w_in =
    w_out``, or stride 2 with a :func:`_padded_pitch`."""
    l, _, in_shape, (_, w_conv), _ = plan
    if l.stride == 1:
        return l.kind != "fc" and in_shape[2] == w_conv and pitch == w_conv
    return _padded_pitch(plan, cols) is not None and (pitch - w_conv) % cols == 0


#: Padded rows cost activation memory and, on the input, link bytes: a layout takes them only
#: where they save at least this fraction of the run's cycles.
PAD_MIN_GAIN = 0.01


def _row_pitches(plans, kinds, cost, cols):
    """Per activation map (as :func:`_map_kinds`), its row pitch: None (its width), or the
    :func:`_padded_pitch` of the layer that reads it: the pitches with the fewest cycles
    (``cost(i, pitch_in, padded_out)``: layer ``i``'s cycles; ties: fewer padded maps), if they
    save at least :data:`PAD_MIN_GAIN` of the unpadded run's, else none. Not for the input of an
    FC or an interleaved map, nor the output of a pooled layer; a pitch of exactly
    ``INTERLEAVE_FRAMES`` widths would read as an interleaved map."""
    n = len(plans)
    widths = [int(plans[0][2][2])] + [int(p[4][2]) for p in plans]
    options = []
    for j, w in enumerate(widths):
        opts = [None]
        if j < n and kinds[j] != INTERLEAVED and (j == 0 or not plans[j - 1][0].pool):
            p = _padded_pitch(plans[j], cols)
            if p is not None and p != w and p != INTERLEAVE_FRAMES * w:
                opts.append(p)
        options.append(opts)
    # Map by map, for each pitch of map j the best (cycles, padded maps, pitches) up to it.
    key = lambda p: 0 if p is None else p
    best = {key(p): (0, int(p is not None), [p]) for p in options[0]}
    for i in range(n):
        nxt = {}
        for po in options[i + 1]:
            nxt[key(po)] = min((c + cost(i, path[-1], po is not None), k + (po is not None), path + [po])
                               for c, k, path in best.values())
        best = nxt
    cycles, _, path = min(best.values(), key=lambda v: v[:2])
    plain = sum(cost(i, None, False) for i in range(n))
    return path if cycles <= (1 - PAD_MIN_GAIN) * plain else [None] * (n + 1)


def _map_strides(shape, kind, batch, pitch=None):
    """``(channel pitch, frame stride, row pitch)`` in bytes of a stored ``(C, H, W)`` map whose
    rows are ``pitch`` bytes apart (None: ``W``)."""
    w = int(shape[2]) if pitch is None else int(pitch)
    hw = int(shape[1]) * w
    if kind == TALL:
        return batch * hw, hw, w
    if kind == INTERLEAVED:
        return batch * hw, 1, batch * w
    return hw, int(shape[0]) * hw, w


def _choose(plan, kind_in, kind_out, *, rows, cols, groups, batch, pitch_in=None,
            padded_out=False):
    """The mapping of one planned layer for a batch (:func:`layer_mapping` plus ``"tall"``,
    ``"columns"`` and ``"conv"``, the conv map a pass computes, ``(h_out, w_out)``): its frames
    one by one (``passes = batch``), or stacked into one tall map where the engine can run that
    (flat tiles of one region; both maps tall; no pooling; ``s * h_out == h_in``, so that the
    frames' rows line up; at least two output rows a frame), whichever is faster; an FC whose
    input is interleaved takes the batch in its columns, the frames as the pixels of a
    ``1 x batch`` map. ``pitch_in``: the input's row pitch (None: its width); ``padded_out``:
    the output map has padded rows (:func:`_row_pitches`)."""
    l, image, in_shape, (h_conv, w_conv), _ = plan
    tall_in, tall_out = kind_in == TALL, kind_out == TALL
    P = image.period
    steps = _class_steps(image.table, in_shape[0])
    per = tuple(l.c_out // P + (r < l.c_out % P) for r in range(P))
    pitch_in = int(in_shape[2]) if pitch_in is None else pitch_in
    kw = dict(rows=rows, cols=cols, groups=groups, pool=bool(l.pool), c_in=in_shape[0],
              contiguous=_one_port(plan, pitch_in, cols), padded_out=padded_out,
              split=l.k == 1 and in_shape[1:] == (1, 1))
    if kind_in == INTERLEAVED:
        # (Split inputs add their partial sums on INTERLEAVE_FRAMES columns, the batch's frames.)
        return steps, per, dict(layer_mapping(steps, per, 1, batch, **kw), tall=False,
                                columns=batch, conv=(1, batch))
    best = dict(layer_mapping(steps, per, h_conv, w_conv, passes=batch, **kw), tall=False,
                columns=1, conv=(h_conv, w_conv))
    if (batch > 1 and tall_in and tall_out and l.kind != "fc" and not l.pool
            and l.stride * h_conv == in_shape[1] and h_conv >= 2):
        tall = layer_mapping(steps, per, batch * h_conv, w_conv, tall=True, **kw)
        if tall is not None and tall["cycles"] < best["cycles"]:
            best = dict(tall, tall=True, columns=1, conv=(h_conv, w_conv))
    return steps, per, best


@dataclass(frozen=True)
class _Run:
    """One layer descriptor of a run: plan ``i`` on frame ``frame`` of the batch (a depth-first
    layer) or on all its frames (``frame`` None), reading its input at ``in_base`` (channel pitch
    ``in_pitch``, ``in_frame`` from one frame to the next) and writing its output at
    ``out_base`` (``out_pitch``, ``out_frame``, rows ``out_w`` apart; its input's ``in_w``
    apart); ``cycles``: its
    expected cycles, less the
    descriptor load hidden behind the previous run's drain (:func:`hw.cycles.prefetch_cycles`),
    or, for the first, the whole load (:data:`hw.cycles.DESC_CYCLES`: it runs while the engine
    idles)."""
    i: int
    frame: int | None
    in_base: int
    in_pitch: int
    in_frame: int
    out_base: int
    out_pitch: int
    out_frame: int
    out_w: int
    in_w: int
    steps: tuple
    per: tuple
    mapping: dict
    cycles: int = 0


def depth_first_choices(n_layers: int, batch: int) -> tuple:
    """The depth-first prefixes (:func:`build_layout`'s ``depth_first``) of a model of
    ``n_layers`` layers in runs of ``batch`` frames: 0 (every layer takes the whole batch) and,
    for a batch, 2 .. ``n_layers`` (a prefix of one layer saves no memory: it is that layer run
    frame by frame)."""
    return (0,) + (tuple(range(2, n_layers + 1)) if batch > 1 else ())


def _runs(plans, batch, depth_first, *, rows, cols, groups):
    """``(runs, act_bytes, result_base)``: the layer descriptors of a run of ``batch`` frames in
    the order the engine runs them (:class:`_Run`), the activation bytes their maps take and
    where the result map starts.

    ``depth_first = 0``: each layer takes the whole batch, reading region ``i mod 2`` and
    writing region ``(i + 1) mod 2`` (ping-pong; the input is region 0). ``depth_first = k``:
    the first ``k`` layers run one frame at a time, frame after frame through all ``k`` of them,
    so the maps between them hold one frame, in two scratch regions; layer ``k - 1`` writes its
    frame into the batch's map, which the later layers take whole. Region Y (at 0, where INPUT
    writes) holds the batch's input and the scratch maps, then every other map after layer
    ``k - 1``'s; region X, after it, layer ``k - 1``'s map and the maps in between.
    """
    n = len(plans)
    if not _is_int(depth_first) or depth_first not in depth_first_choices(n, batch):
        raise ValueError(f"depth_first must be one of {list(depth_first_choices(n, batch))} for "
                         f"{n} layers in runs of {batch} frame{'s' * (batch > 1)}, not {depth_first!r}")
    align = 2 * cols
    up = lambda v: -(-v // align) * align
    k = depth_first
    kinds = _map_kinds(plans, batch)

    def choose(i, pitch_in, padded_out):
        # A depth-first layer runs its frames one by one, between maps of one frame.
        first = i < k
        return _choose(plans[i], FRAMES if first else kinds[i], FRAMES if first else kinds[i + 1],
                       rows=rows, cols=cols, groups=groups, batch=1 if first else batch,
                       pitch_in=pitch_in, padded_out=padded_out)
    cache = {}

    def cost(i, pitch_in, padded_out):
        key = (i, pitch_in, padded_out)
        if key not in cache:
            cache[key] = choose(i, pitch_in, padded_out)
        return cache[key][2]["cycles"] * (batch if i < k else 1)
    pitch = _row_pitches(plans, kinds, cost, cols)
    choices = [cache[(i, pitch[i], pitch[i + 1] is not None)] for i in range(len(plans))]
    # Map j is layer j's input (j = n: the result), its rows pitch[j] bytes apart (None: its width).
    shapes = [plans[0][2]] + [p[4] for p in plans]
    size = [int(np.prod(s_)) if p is None else int(s_[0]) * int(s_[1]) * p
            for s_, p in zip(shapes, pitch)]
    scratch = (0, 0)
    if k == 0:
        bases, act = _regions(size, cols, batch)
        region = [bases[j % 2] for j in range(n + 1)]
    else:
        # Region Y (at 0, where INPUT writes): the input, then the two scratch maps; region X
        # after it.
        inp = up(batch * size[0])
        s0, s1 = (up(max((size[j] for j in range(s, k, 2)), default=0)) for s in (1, 2))
        y = max([inp + s0 + s1] + [up(batch * size[j]) for j in range(k + 1, n + 1, 2)])
        act = y + up(max(batch * size[j] for j in range(k, n + 1, 2)))
        region = [0] + [None] * (k - 1) + [y if (j - k) % 2 == 0 else 0 for j in range(k, n + 1)]
        scratch = (inp, inp + s0)
    runs = []
    for b in range(batch if k else 0):
        for i in range(k):
            _, _, in_shape, _, o = plans[i]
            if i == 0:
                in_pitch, step, in_w = _map_strides(in_shape, kinds[0], batch, pitch[0])
                in_base = region[0] + b * step
            else:
                (in_pitch, _, in_w), in_base = (_map_strides(in_shape, FRAMES, 1, pitch[i]),
                                                scratch[(i - 1) % 2])
            if i == k - 1:
                out_pitch, step, out_w = _map_strides(o, kinds[k], batch, pitch[k])
                out_base = region[k] + b * step
            else:
                (out_pitch, _, out_w), out_base = (_map_strides(o, FRAMES, 1, pitch[i + 1]),
                                                   scratch[i % 2])
            runs.append(_Run(i, b, in_base, in_pitch, 0, out_base, out_pitch, 0, out_w, in_w,
                             *choices[i]))
    for i in range(k, n):
        _, _, in_shape, _, o = plans[i]
        steps, per, mapping = choices[i]
        in_pitch, in_frame, in_w = _map_strides(in_shape, kinds[i], batch, pitch[i])
        out_pitch, out_frame, out_w = _map_strides(o, kinds[i + 1], batch, pitch[i + 1])
        if mapping["columns"] > 1:
            # The frames are the pixels of one output row (each filter's B bytes in a row).
            out_w = mapping["conv"][1]
        passes = batch > 1 and not mapping["tall"] and mapping["columns"] == 1
        runs.append(_Run(i, None, region[i], in_pitch, in_frame if passes else 0, region[i + 1],
                         out_pitch, out_frame if passes else 0, out_w, in_w, steps, per, mapping))
    # The first descriptor loads while the engine idles before the start, each later one while
    # the previous layer drains.
    runs = [replace(r, cycles=r.mapping["cycles"] - (DESC_CYCLES if p is None else prefetch_cycles(
                rows, cols, pool=bool(plans[p.i][0].pool), trailing=p.mapping["trailing"])))
            for p, r in zip([None] + runs[:-1], runs)]
    return runs, act, region[n]


def flat_tiles(h_conv: int, w_conv: int, *, cols: int, groups: int) -> int | None:
    """Flat tiles per block of an ``h_conv x w_conv`` map in ``groups`` regions of
    ``h_conv / groups`` rows, or None where the engine cannot run them: rows that do not split
    evenly, or a tile of ``cols`` consecutive flat pixels that would touch three output rows (a
    group has two read ports, one per output row)."""
    if h_conv % groups:
        return None
    n = h_conv // groups * w_conv
    for n0 in range(0, n, cols):
        if (min(n0 + cols, n) - 1) // w_conv - n0 // w_conv > 1:
            return None
    return -(-n // cols)


def layer_mapping(steps, class_filters, h_conv: int, w_conv: int, *, rows: int, cols: int,
                  groups: int, pool: bool = False, c_in: int | None = None, passes: int = 1,
                  tall: bool = False, contiguous: bool = False, padded_out: bool = False,
                  split: bool = False) -> dict | None:
    """How the engine maps one layer: ``{"groups", "fold", "flat", "mix", "group_rows", "tiles",
    "steps", "cycles", "entries", "trailing"}`` (``steps``: each class's steps a tile, ``steps``
    itself unless the inputs are split; ``trailing``: the empty classes after the last one with
    filters, checked after the layer's last step, :func:`hw.cycles.prefetch_cycles`).

    Among ``G`` in :data:`GROUP_CHOICES` up to the config's ``groups`` (and ``rows``), the column
    fold (one group, a map exactly ``cols / 2`` wide, a config with at least two groups), flat
    tiles (:func:`flat_tiles`; ``G`` groups need ``2 G`` read ports, so at most ``groups / 2``;
    not for a pooled layer) and, given ``c_in``, mixed classes (:func:`mix_allowed`: the groups
    take ``G`` classes of the same pixels, one output row a tile or flat tiles of the whole map
    with ``2 G`` ports, or with ``G`` = ``groups`` ports where the layer is ``contiguous``: stride
    1 and ``w_in = w_out``, or stride 2 on padded rows (:func:`_padded_pitch`), so that one port
    a group reads a tile's two rows), the mapping with the fewest cycles
    (:func:`hw.cycles.layer_cycles`), then the fewest weight entries (blocks of ``rows / G`` filters
    times the class's steps), then the fewest groups, then not flat, then not mixed.

    ``padded_out``: the layer writes padded rows, so its flat tiles take one region (their
    output crosses a row end only by a tile's ``split``, not by a region's pixel count).

    ``split``: the layer is a 1x1 conv on a 1 x 1 map (an FC) with ``c_in`` inputs, so ``G``
    groups may each take a chunk of ``c_in / G`` of them (``mix`` = 2: :func:`split_allowed`),
    their partial sums added by the engine; its tiles then take ``L_r / G`` steps.

    ``passes``: the layer runs that many frames one after the other
    (:func:`hw.cycles.layer_cycles`).
    ``tall``: ``h_conv`` rows are a batch's frames stacked into one map, which the engine runs
    only with flat tiles of one region (one group, or mixed groups); None when no such mapping
    exists.
    """
    best = None
    period = len(class_filters)
    for G in GROUP_CHOICES:
        if G > groups or G > rows:
            continue
        gs = rows // G
        # Folding only ever saves tiles, so a one-group layer that can fold does.
        fold = int(G == 1 and groups >= 2 and w_conv == cols // 2)
        options = [(0, 0, -(-h_conv // 2) if fold else -(-h_conv // G) * -(-w_conv // cols))]
        flat = (flat_tiles(h_conv, w_conv, cols=cols, groups=G)
                if 2 * G <= groups and not pool and not (padded_out and G > 1) else None)
        if flat is not None:
            options.append((1, 0, flat))
        if c_in is not None and mix_allowed(period, c_in, sum(class_filters), groups=G, pool=pool):
            options.append((0, 1, h_conv * -(-w_conv // cols)))
            # Mixed groups share the pixels: flat tiles of the whole map, 2 G ports (or G, one
            # a group, when the tile's pixels are consecutive input bytes).
            ports_ok = 2 * G <= groups or (contiguous and G == groups)
            mix_flat = flat_tiles(h_conv, w_conv, cols=cols, groups=1) if ports_ok else None
            if mix_flat is not None:
                options.append((1, 1, mix_flat))
        if split and c_in is not None and split_allowed(period, c_in, groups=G, pool=pool):
            options.append((0, 2, 1))
        if tall:
            # Frame-local rows are tracked for a tile's two rows (ports 2g, 2g + 1) only.
            options = [o for o in options if o[0] and (o[1] or G == 1)]
        for is_flat, mix, tiles in options:
            per = mixed_classes(class_filters, G) if mix == 1 else class_filters
            # Split inputs: each group's chunk holds c_in / G channels, a whole number of periods.
            st = tuple(s // G for s in steps) if mix == 2 else steps
            entries = sum(-(-n // gs) * s for n, s in zip(per, st))
            cycles = layer_cycles(st, per, tiles, rows=rows, cols=cols, group_rows=gs, pool=pool,
                                  passes=passes)
            key = (cycles, entries, G, is_flat, mix)
            if best is None or key < best[0]:
                trailing = len(per) - 1 - max(i for i, n in enumerate(per) if n)
                best = (key, dict(groups=G, fold=0 if is_flat or mix else fold, flat=is_flat,
                                  mix=mix, group_rows=gs, tiles=tiles, steps=st, cycles=cycles,
                                  entries=entries, trailing=trailing))
    return best[1] if best else None


def model_cycles(qmodel, *, rows: int, cols: int, groups: int, batch: int = 1,
                 depth_first: int = 0) -> int:
    """Expected engine cycles of one run of ``batch`` frames of ``qmodel`` on an array with
    ``groups`` row groups, its first ``depth_first`` layers run frame by frame
    (:func:`build_layout`): the cycle model of :func:`build_layout`, without building the words."""
    check_batch(batch)
    plans = _plan_shapes(qmodel, rows, cols)
    runs, _, _ = _runs(plans, batch, depth_first, rows=rows, cols=cols, groups=groups)
    return FRAME_OVERHEAD + sum(r.cycles for r in runs)


def requirements(qmodel, *, rows: int, cols: int, groups: int = 1, limits: dict | None = None,
                 batch: int = 1, depth_first: int = 0) -> dict:
    """``{ArrayConfig field: (needed, layer)}`` for running ``qmodel``.

    ``layer`` names where the need arises: for the running totals (weights, tables, parameters)
    the first layer at which the total passes ``limits[field]`` (or the last layer without limits),
    for activations the layer with the largest map, for ``p_max`` the layer with the largest period.
    ``depth_first``: the run's first layers taken frame by frame (:func:`build_layout`), which
    changes the activation bytes and the layer descriptors (``max_layers``) it needs.
    """
    plans = _plan_shapes(qmodel, rows, cols)
    limits = limits or {}
    req = {}

    first_over = {}

    def need(field, value, layer, running=False):
        if running:
            # Running totals: the need is the final total; name the first layer that overflows.
            if value > limits.get(field, float("inf")):
                first_over.setdefault(field, layer)
            req[field] = (value, first_over.get(field, layer))
        elif field not in req or value > req[field][0]:
            req[field] = (value, layer)

    check_batch(batch)
    runs, act, _ = _runs(plans, batch, depth_first, rows=rows, cols=cols, groups=groups)
    mappings = {r.i: r.mapping for r in runs}
    weights = tables = params = 0
    biggest = (int(np.prod(plans[0][2])), plans[0][0].name)
    for i, plan in enumerate(plans):
        l, image, in_shape, (h_conv, w_conv), out_shape = plan
        P = image.period
        weights += mappings[i]["entries"]
        tables += P
        params += l.c_out
        need("p_max", P, l.name)
        need("weight_depth", weights, l.name, running=True)
        need("table_depth", tables, l.name, running=True)
        need("param_depth", params, l.name, running=True)
        biggest = max(biggest, (int(np.prod(out_shape)), l.name))
    need("act_depth", act, biggest[1])
    need("max_layers", len(runs), plans[-1][0].name)
    return req


def _weight_entries(l, image, in_shape, per, steps, *, mix, gs, G, rows) -> list:
    """The weight entries of one layer (:data:`Space.WEIGHTS`): per class ``r`` (a mixed
    layer's in sets of ``G``) and block of ``gs`` filters, ``steps[r]`` entries of ``rows``
    int8."""
    P = image.period
    split = mix == 2
    nnz = [len(s_) for s_ in image.table.supports]
    out = []
    for r in range(0, P, G if mix == 1 else 1):
        for b in range(-(-per[r] // gs)):
            block = np.zeros((steps[r], rows), dtype=np.int8)
            for row in range(rows):
                # Row i of group g = i // gs holds filter q = i mod gs of the block (mixed:
                # of class r + g, its data rotated so channel c - g meets step channel c;
                # split: the steps of its chunk g, channels g * K / G ..).
                g = row // gs if mix else 0
                f = r + (g if mix == 1 else 0) + P * (b * gs + row % gs)
                if f < l.c_out:
                    if split:
                        block[:, row] = image.data(f)[g * steps[r]:(g + 1) * steps[r]]
                    else:
                        tail = sum(nnz[(f + c) % P] for c in range(in_shape[0] - g, in_shape[0]))
                        block[:, row] = np.roll(image.data(f), tail)
            out.append(block)
    return out


def build_layout(qmodel, config, *, batch: int = 1, depth_first: int | None = None) -> Layout:
    """Lay ``qmodel`` out for ``config``; ``ValueError`` (naming the layer) when it cannot run.

    ``batch`` frames run together: each map holds all of them (:func:`_map_kinds`), and each
    layer takes them one by one or, where that is faster, as one tall map (:func:`_choose`).
    ``depth_first = k`` runs the first ``k`` layers one frame at a time instead, frame after
    frame through all ``k`` (:func:`_runs`), so that their maps hold one frame: the big early
    maps of a network then need no room for the whole batch. ``None`` (the default): of
    :func:`depth_first_choices`, the one with the fewest cycles whose maps and descriptors fit
    ``config`` (ties: the smallest ``k``).
    """
    check_batch(batch)
    R, C = config.rows, config.cols
    plans = _plan_shapes(qmodel, R, C)
    if depth_first is None:
        depth_first = config.depth_first_for(qmodel, batch=batch)
    config.check_model(qmodel, batch=batch, depth_first=depth_first)
    runs, _, result_base = _runs(plans, batch, depth_first, rows=R, cols=C, groups=config.groups)
    kinds = _map_kinds(plans, batch)
    tables, bias, requant, entries, desc_layers, layer_plans = [], [], [], [], [], []
    layer_at = {}       # plan index -> (table_base, weight_base, param_base) of its weights
    for run in runs:
        i = run.i
        l, image, in_shape, _, o = plans[i]
        P = image.period
        steps, per, mapping = run.steps, run.per, run.mapping
        G, fold, gs, mix = mapping["groups"], mapping["fold"], mapping["group_rows"], mapping["mix"]
        tall, columns = mapping["tall"], mapping["columns"]
        frames = 1 if run.frame is not None or columns > 1 else batch
        h_conv, w_conv = mapping["conv"]
        # Flat regions: G of h_out / G rows; mixed groups share one region, the whole map (tall:
        # all the frames' rows).
        regions = 1 if mix else G
        flat_h = (frames if tall else 1) * h_conv // regions if mapping["flat"] else 0
        # Split inputs (an FC on G groups): the K inputs read as a map of G rows of K / G values,
        # group g taking row g (its chunk) as the channels of a 1 x 1 pixel. The row pitch is
        # the chunk's K / G channel pitches: a tall map (a 1x1 conv's input in a batch) holds
        # each frame's values every B bytes, not consecutively.
        split = mix == 2
        in_pitch = run.in_pitch
        # (w_in: the input's row pitch, which padded rows make more than its width.)
        c_in, h_in, w_in = ((in_shape[0] // G, G, in_shape[0] // G * in_pitch) if split
                            else (in_shape[0], in_shape[1], run.in_w))
        if columns > 1 and not split:
            w_in = w_conv                   # the frames: a 1 x B map, B bytes a channel
        full_steps, steps = steps, mapping["steps"]
        if i not in layer_at:
            # A depth-first layer's frames share its weights, table and parameters.
            layer_at[i] = (len(tables), sum(len(e) for e in entries), len(bias))
            tables += [int(m) for m in image.table.bitmasks()]
            bias += [int(v) & 0xFFFF_FFFF for v in np.asarray(l.bias, dtype=np.int64)]
            requant += [int(m) | int(s) << 16 for m, s in zip(np.asarray(l.multiplier), np.asarray(l.shift))]
            entries += _weight_entries(l, image, in_shape, per, steps, mix=mix, gs=gs, G=G, rows=R)
        table_base, weight_base, param_base = layer_at[i]
        # (Split inputs walk the G chunks as rows one apart: a 1x1 conv's stride on a 1 x 1 map
        # changes nothing, so it runs as stride 1 there.)
        fields = dict(c_in=c_in, h_in=h_in, w_in=w_in,
                      hw_in=in_pitch, c_out=l.c_out, h_out=h_conv, w_out=w_conv,
                      out_w=run.out_w, out_hw=run.out_pitch, k=l.k, stride=1 if split else l.stride,
                      relu=int(bool(l.relu)),
                      pool=int(bool(l.pool)), period=P, q=l.c_out // P, rem=l.c_out % P,
                      table_base=table_base, weight_base=weight_base, param_base=param_base,
                      in_base=run.in_base, out_base=run.out_base, groups=G, fold=fold,
                      flat=mapping["flat"], flat_n=flat_h * w_conv, flat_h=flat_h,
                      flat_in=0 if mix else l.stride * flat_h * run.in_w, mix=mix,
                      mix_wrap=in_shape[0] * in_pitch if mix == 1 else 0, frames=frames,
                      frame_in=run.in_frame, frame_out=run.out_frame)
        tiles, cycles = mapping["tiles"], run.cycles
        macs = frames * sum(n * s for n, s in zip(per, full_steps)) * h_conv * w_conv
        dense = frames * l.k * l.k * h_conv * w_conv * l.c_out * in_shape[0]
        desc_layers.append([fields[f] for f in LAYER_FIELDS])
        layer_plans.append(LayerPlan(l.name, fields, steps, per, macs, dense, tiles, cycles,
                                     frame=run.frame, columns=columns))

    out_shape = plans[-1][4]
    # (Only a conv's input rows are ever padded: the input map is then the frame's shape.)
    in_c, in_h, in_w = (int(v) for v in plans[0][2])
    input_pitch = runs[0].in_w if runs[0].in_w != in_w else None
    header = [len(runs), batch * in_c * in_h * runs[0].in_w, batch * int(np.prod(out_shape)),
              result_base]
    desc = np.zeros(DESC_HEADER_WORDS + DESC_LAYER_WORDS * len(runs), dtype=np.uint32)
    desc[:len(header)] = header
    for i, d in enumerate(desc_layers):
        at = DESC_HEADER_WORDS + i * DESC_LAYER_WORDS
        desc[at:at + len(d)] = d
    try:
        check_descriptors(desc, config)
    except ImageError as e:       # the engine would refuse it: say so now, not at LOAD_IMAGE
        raise ValueError(f"{qmodel.name}: {e}") from None
    wbytes = np.concatenate(entries).view(np.uint8) if entries else np.zeros((0, R), np.uint8)
    wbytes = wbytes.reshape(-1, R)
    wpe = config.words_per_entry
    padded = np.zeros((wbytes.shape[0], 4 * wpe), dtype=np.uint8)
    padded[:, :R] = wbytes
    sections = {
        Space.DESCRIPTORS: desc,
        Space.TABLES: np.array(tables, dtype=np.uint32),
        Space.WEIGHTS: padded.reshape(-1).view("<u4").astype(np.uint32),
        Space.BIAS: np.array(bias, dtype=np.uint32),
        Space.REQUANT: np.array(requant, dtype=np.uint32),
    }
    return Layout(config, sections, tuple(layer_plans), tuple(int(v) for v in qmodel.input_shape),
                  tuple(int(v) for v in out_shape), batch=batch, input_tall=kinds[0] == TALL,
                  output_tall=kinds[-1] == TALL, depth_first=depth_first, input_pitch=input_pitch)
