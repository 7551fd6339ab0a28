"""The engine core: load port -> memories -> sequencer -> weight streamer / activation buffer ->
systolic array -> output path -> activation buffer (next layer) -> result stream.

:class:`Core` has exactly :class:`gateware.interfaces.CoreSignature`. Load words are decoded by
space (``hw.memory_map``), registered and written into the memories a cycle after they are
accepted; no write ever waits, so the load stream is ready whenever the core is idle (and
back-pressured while it runs a frame, so an early INPUT word can never collide with a
write-back). The compute pipeline has a fixed latency and no internal back-pressure; the only
elastic points are the load and result streams.

Pipeline of one step: issue registers (S1) -> bank addresses (S2) -> weight entry / activation
bank reads -> landing and bank output registers -> column select and zero padding -> the array (skew, MAC, accumulate, drain, deskew) -> the tile's tag
(popped from a FIFO sized for the tiles in flight) gives each drained row its channel and address
-> output path (bias, requantization, ReLU, clamp) -> optional 2x2 max-pool -> write-back of C
bytes (pooled: C/2, or C/4 when folded).

With ``config.groups == G`` (2 or 4) the activation buffer has G read ports (G copies of the
banks) and the array an injection point at every row ``k * R / G``: a layer may run 2 (or 4) row
groups of R/2 (R/4) rows computing the same filters for consecutive output rows, so small
rotation classes (the occupancy trap) do not leave rows idle.
"""

from amaranth import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, data
from amaranth.lib.fifo import SyncFIFOBuffered

from hw.memory_map import Space
from hw.descriptors import INTERLEAVE_FRAMES
from hw.quant import ACC_BITS
from hw.array import ArrayConfig
from .interfaces import CoreSignature, MODEL_CHECK_LATENCY
from .act_buffer import ActBuffer, READ_LATENCY
from .weight_streamer import READ_LATENCY as WEIGHT_READ_LATENCY, WeightStreamer
from .systolic_array import SystolicArray, ARRAY_LATENCY
from .output_path import OutputPath, PoolStage, POOL_STORE, POOL_COMBINE, POOL_FOLD
from .sequencer import Sequencer, MODEL_CHECK_LATENCY as _SEQ_MODEL_CHECK_LATENCY
from .pipeline import delayed

# The layer before an FC in columns writes its pixels INTERLEAVE_FRAMES bytes apart through the
# activation buffer's ``wr_stride2``: the one stride besides 1 that its 2C banks take.
assert INTERLEAVE_FRAMES == 2, "ActBuffer writes at stride 1 or 2 only"

__all__ = ["Core", "WRITEBACK_LATENCY", "TAG_LATENCY", "TAG_FIFO_SPARE", "tag_fifo_need",
           "tag_fifo_depth"]

#: Registers between the output side (pool stage) and the activation buffer's write request: the
#: pool stage's output select, the write address's lane rotation and the write/load choice in
#: one cycle were the ECP5's critical path (10.29 ns); one cycle more per layer drain.
WRITEBACK_LATENCY = 1


def TAG_LATENCY(rows: int, cols: int) -> int:
    """Cycles from a tile tag's push (with the tile's last step, at the sequencer's outputs) to
    its pop (the tile's first drained row, :attr:`SystolicArray.out_first`): the activation
    read, then the array. Every cycle exactly, since nothing between them stalls
    (``tests/test_formal.py`` proves it on the whole 2 x 2 engine, and at 8 x 8 by parts)."""
    return READ_LATENCY + ARRAY_LATENCY(rows, cols)


#: Entries the core's tile-tag FIFO keeps beyond what the tags in flight need: the need is proved
#: for all time only at the engine sizes ``tests/test_formal.py`` affords (the whole 2 x 2 core;
#: by parts up to 8 x 8, 16 x 4 and 4 x 16); larger engines rest on the same code and on the
#: cocotb watch, and two entries of LUT RAM are cheap insurance.
TAG_FIFO_SPARE = 2


def tag_fifo_need(rows: int, cols: int) -> int:
    """Entries the tile tags in flight need. Tags are popped :func:`TAG_LATENCY` ``D`` cycles
    after their push and pushed at least ``s = max(rows, 2)`` cycles apart (the sequencer holds
    a tile's last step), so at a push the ``floor(D / s)`` pushes of the ``D`` cycles before it
    still wait (the oldest leaves only in the push's own cycle, which a ``SyncFIFOBuffered``'s
    ``w_rdy`` does not count): ``floor(D / s) + 1``.
    ``tests/test_formal.py::test_tag_fifo_depth_suffices`` proves that many suffice and one fewer
    does not."""
    return TAG_LATENCY(rows, cols) // max(rows, 2) + 1


def tag_fifo_depth(rows: int, cols: int) -> int:
    """Entries of the core's tile-tag FIFO: :func:`tag_fifo_need` plus :data:`TAG_FIFO_SPARE`
    (6 at 8 x 8, where 4 suffice)."""
    return tag_fifo_need(rows, cols) + TAG_FIFO_SPARE


# The load word's register, then the sequencer's header and check registers: within the
# interface's promise.
assert 1 + _SEQ_MODEL_CHECK_LATENCY <= MODEL_CHECK_LATENCY


class Core(wiring.Component):
    """The sparse systolic engine, sized by an :class:`hw.array.ArrayConfig`.

    Parameters (keyword-only)
    -------------------------
    config : hw.array.ArrayConfig
    pack_pairs : bool or None
        Passed to the :class:`gateware.systolic_array.SystolicArray`: two PEs per multiplier
        (one DSP48E1 per two MACs). None (default) decides from the platform: not on Lattice
        parts, else packed (also in simulation). Results and cycle counts do not depend on it.

    Members
    -------
    (see :class:`gateware.interfaces.CoreSignature`)
    config : hw.array.ArrayConfig
        The generator parameters (read-only).
    pack_pairs : bool or None
        The ``pack_pairs`` parameter (read-only).
    """

    def __init__(self, *, config: ArrayConfig, pack_pairs: bool | None = None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"Core config must be a hw.array.ArrayConfig, not {type(config).__name__}")
        if pack_pairs is not None and not isinstance(pack_pairs, bool):
            raise TypeError(f"Core pack_pairs must be a bool or None, not {pack_pairs!r}")
        self._cfg = config
        self._pack_pairs = pack_pairs
        super().__init__(CoreSignature())

    @property
    def config(self) -> ArrayConfig:
        return self._cfg

    @property
    def pack_pairs(self) -> bool | None:
        return self._pack_pairs

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        m.submodules.act = act = ActBuffer(cols=C, bank_depth=cfg.bank_depth, ports=cfg.groups)
        m.submodules.ws = ws = WeightStreamer(rows=R, depth=cfg.weight_depth)
        m.submodules.seq = seq = Sequencer(config=cfg, act_addr_bits=act.addr_bits)
        GM = cfg.groups
        m.submodules.array = arr = SystolicArray(rows=R, cols=C, groups=GM,
                                                 pack_pairs=self._pack_pairs)
        side = data.StructLayout({"addr": act.addr_bits, "mask": C, "done": 1,
                                  "pool_op": 2, "pool_addr": range(max(2, R)),
                                  "split": range(C + 1)})
        m.submodules.out = out = OutputPath(cols=C, param_depth=cfg.param_depth,
                                            side_bits=side.size)
        m.submodules.pool = pool = PoolStage(cols=C, rows=R, side_bits=side.size)

        # Load port.
        ld = self.load
        m.d.comb += [ld.ready.eq(~seq.busy), self.config_id.eq(cfg.config_id),
                     self.busy.eq(seq.busy), seq.start.eq(self.start), seq.abort.eq(self.abort),
                     seq.unload.eq(self.unload),
                     self.input_len.eq(seq.input_len), self.output_len.eq(seq.output_len),
                     self.model_ok.eq(seq.model_ok)]
        # Each accepted load word is registered, decoded by space, before it fans out to the
        # memories (the ready decode from the sequencer's state and the route to a far block
        # RAM's write enable did not fit one cycle on the ECP5); it is written a cycle later,
        # long before a frame's first read.
        wr = Signal()
        m.d.comb += wr.eq(ld.valid & ld.ready)
        we = {sp: Signal(name=f"ld_we_{sp.name.lower()}") for sp in (
            Space.DESCRIPTORS, Space.TABLES, Space.WEIGHTS, Space.BIAS, Space.REQUANT, Space.INPUT)}
        for sp, en in we.items():
            m.d.sync += en.eq(wr & (ld.payload.space == sp))
        addr = Signal.like(ld.payload.addr, name="ld_addr_q", reset_less=True)
        word = Signal.like(ld.payload.data, name="ld_data_q", reset_less=True)
        m.d.sync += [addr.eq(ld.payload.addr), word.eq(ld.payload.data)]
        m.d.comb += [
            seq.desc_we.eq(we[Space.DESCRIPTORS]), seq.desc_addr.eq(addr), seq.desc_data.eq(word),
            seq.table_we.eq(we[Space.TABLES]), seq.table_addr.eq(addr), seq.table_data.eq(word),
            ws.we.eq(we[Space.WEIGHTS]), ws.waddr.eq(addr), ws.wdata.eq(word),
            out.bias_we.eq(we[Space.BIAS]), out.bias_addr.eq(addr), out.bias_data.eq(word),
            out.rq_we.eq(we[Space.REQUANT]), out.rq_addr.eq(addr), out.rq_data.eq(word),
            act.ld_en.eq(we[Space.INPUT]), act.ld_addr.eq(addr), act.ld_data.eq(word),
        ]

        # Step: S1 (sequencer registers) -> READ_LATENCY cycles of activation reads (the
        # weight entry is read in the first WEIGHT_READ_LATENCY; a register chain covers the
        # rest) -> array inputs.
        m.d.comb += [ws.addr.eq(seq.w_addr), act.rd_addr.eq(seq.rd_addr),
                     act.rd_stride2.eq(seq.rd_stride2), act.rd_ok.eq(seq.rd_ok),
                     act.rd_split.eq(seq.rd_split), act.rd_jump.eq(seq.rd_jump),
                     seq.rd_data0.eq(act.rd_data[0])]

        ctl = [(seq.step_valid, arr.valid), (seq.step_first, arr.first), (seq.step_last, arr.last)]
        for src, dst in ctl:
            m.d.comb += dst.eq(delayed(m, src, READ_LATENCY, src.name))
        m.d.comb += [arr.w.eq(delayed(m, ws.w, READ_LATENCY - WEIGHT_READ_LATENCY, "w", reset_less=True)),
                     arr.a.eq(act.rd_data)]
        if GM >= 2:
            for p in range(2, GM + 1):
                m.d.comb += [getattr(act, f"rd{p}_addr").eq(getattr(seq, f"rd{p}_addr")),
                             getattr(act, f"rd{p}_ok").eq(getattr(seq, f"rd{p}_ok")),
                             getattr(arr, f"a{p}").eq(getattr(act, f"rd{p}_data"))]
            m.d.comb += arr.split.eq(seq.split)
            # Tiles spanning two output rows (``merge``): group g's columns take the bytes of
            # port 2g or of port 2g + 1 (each column's ok bit is set in at most one of the two,
            # and a column without it reads zero). ``sequencer.port_feeds`` states the same rule
            # for the address guard.
            for j in range(C):
                m.d.comb += arr.a[j].eq(Mux(seq.merge[0], act.rd_data[j] | act.rd2_data[j],
                                            act.rd_data[j]))
            if GM == 4:
                for j in range(C):
                    m.d.comb += arr.a3[j].eq(Mux(seq.merge[1], act.rd3_data[j] | act.rd4_data[j],
                                                 act.rd3_data[j]))

        # Tags of the tiles in flight (tiles issue at least R cycles apart).
        m.submodules.tags = tags = SyncFIFOBuffered(width=seq.tag_layout.size,
                                                    depth=tag_fifo_depth(R, C))
        # (seq.tag is always ready: the tags in flight fit, so w_rdy is high on every push:
        # proved for all time on the whole 2 x 2 engine and by parts at 8 x 8, and the cocotb
        # testbench watches every cycle the FIFO is full, in every run.)
        m.d.comb += [tags.w_en.eq(seq.tag.valid), tags.w_data.eq(seq.tag.payload)]
        tag = data.View(seq.tag_layout, tags.r_data)
        m.d.comb += tags.r_en.eq(arr.out_first)

        # Per drained row (R-1 first): channel, address, whether it exists. With G row groups of
        # gs = R / G rows, rows (g+1)*gs-1 .. g*gs are output row oy + g (pooled: pair g // 2),
        # same filters (mixed: the same pixels, filters of class r + g); the tag names row R-1
        # (group G-1's top filter).
        idx = Signal(range(R))
        ch = Signal.like(tag.channel)
        at = Signal.like(tag.addr)
        cur_idx, cur_ch, cur_at = Signal.like(idx), Signal.like(ch), Signal.like(at)
        gat, cur_gat = Signal.like(at), Signal.like(at)      # address of the group's top row
        gch, cur_gch = Signal.like(ch), Signal.like(ch)      # channel of the group's top row
        t_rows, t_cols, t_live, t_odd, t_split = (Signal.like(tag.rows), Signal.like(tag.cols),
                                                  Signal.like(tag.live), Signal(),
                                                  Signal.like(tag.split))
        rows, cols, live, odd, wsplit = (Signal.like(tag.rows), Signal.like(tag.cols),
                                         Signal.like(tag.live), Signal(), Signal.like(tag.split))
        g2 = Signal()
        g4 = Signal()
        split = Signal()
        if GM >= 2:
            # The port at row R/2 is split in every grouped layer; those at R/4, 3R/4 with 4.
            m.d.comb += [g4.eq(seq.split[0] if GM == 4 else 0), split.eq(seq.split[GM // 2 - 1]),
                         g2.eq(split & ~g4)]
        q = Signal(range(R))                       # filter index within the group
        gidx = Signal(range(4))                    # row group
        lb = lambda n: max(0, n.bit_length() - 1)
        q4 = max(1, R // 4)
        m.d.comb += [q.eq(Mux(g4, idx & (q4 - 1), Mux(g2, idx & (R // 2 - 1) if R >= 2 else 0, idx))),
                     gidx.eq(Mux(g4, idx >> lb(q4), Mux(g2, idx >> lb(max(1, R // 2)), 0)))]
        crossing = Signal()                        # idx is the top row of a group below the first
        m.d.comb += crossing.eq(split & (q == Mux(g4, q4 - 1, R // 2 - 1)))
        # Between groups: one output row, or for a pooled layer one pooled row when leaving a
        # pair (into an odd group) and none inside it.
        gstep = Signal.like(seq.group_step_addr)
        m.d.comb += gstep.eq(Mux(seq.pool & ~gidx[0], 0, seq.group_step_addr))
        with m.If(arr.out_first):
            m.d.comb += [idx.eq(R - 1), ch.eq(tag.channel), at.eq(tag.addr), gat.eq(tag.addr),
                         gch.eq(tag.channel),
                         rows.eq(tag.rows), cols.eq(tag.cols), live.eq(tag.live), odd.eq(tag.odd),
                         wsplit.eq(tag.split)]
            m.d.sync += [t_rows.eq(tag.rows), t_split.eq(tag.split),
                         t_cols.eq(tag.cols), t_live.eq(tag.live), t_odd.eq(tag.odd)]
        with m.Else():
            m.d.comb += [idx.eq(cur_idx - 1), rows.eq(t_rows), cols.eq(t_cols), live.eq(t_live),
                         odd.eq(t_odd), wsplit.eq(t_split)]
            with m.If(crossing):
                # The group below holds the same filters (the same top channel) or, mixed, the
                # filters of class r + g - 1 (one channel lower): seq.mix is that step.
                m.d.comb += [ch.eq(cur_gch - seq.mix), at.eq(cur_gat - gstep),
                             gat.eq(at), gch.eq(ch)]
            with m.Else():
                m.d.comb += [ch.eq(cur_ch - seq.row_step), at.eq(cur_at - seq.row_step_addr),
                             gat.eq(cur_gat), gch.eq(cur_gch)]
        with m.If(arr.out_valid):
            m.d.sync += [cur_idx.eq(idx), cur_ch.eq(ch), cur_at.eq(at), cur_gat.eq(gat),
                         cur_gch.eq(gch)]
        row_on = Signal()
        m.d.comb += row_on.eq((q < rows) & (gidx < live))
        sd = Signal(side)
        m.d.comb += [sd.addr.eq(at), sd.mask.eq(cols), sd.done.eq(idx == 0), sd.pool_addr.eq(q),
                     sd.split.eq(wsplit)]
        # 2x2 max-pool: the upper row of each vertical pair is kept (and writes nothing), the
        # lower one writes the pooled row. Row groups: odd groups (rows oy + 1, oy + 3, drained
        # before their partners) keep, even groups combine (a pair whose odd row does not
        # exist writes nothing); one group: the tiles of rows oy and oy + 1 follow each other
        # (tag.odd); folded: both rows are in the same drained row.
        drop = Signal()
        # (Its own signal, not read back from ``sd``: a field of ``sd`` deciding another made
        # Verilator see ``sd`` as a combinational loop, UNOPTFLAT.)
        pool_op = Signal(2)
        with m.If(seq.fold):
            m.d.comb += pool_op.eq(POOL_FOLD)
        with m.Elif(split):
            m.d.comb += [pool_op.eq(Mux(gidx[0], POOL_STORE, POOL_COMBINE)),
                         drop.eq(gidx + 1 >= live)]
        with m.Else():
            m.d.comb += pool_op.eq(Mux(odd, POOL_COMBINE, POOL_STORE))
        # Inactive rows are not written, but row 0 still carries the tile's done marker.
        m.d.comb += [out.valid.eq(arr.out_valid & (row_on | (idx == 0))), out.channel.eq(ch),
                     out.relu.eq(seq.relu), out.side.eq(sd), sd.pool_op.eq(pool_op)]
        with m.If(~row_on | (seq.pool & ((pool_op == POOL_STORE) | drop))):
            m.d.comb += sd.mask.eq(0)
        # The address guard's write half: the row's lanes ``at + j`` (``mask`` bit ``j``; ``at +
        # 2j`` with ``out_step2``, ``at + j + out_gap`` from the tag's split on) must lie in the
        # activation memory. ``at`` is exact (its tag's sums are, while the sequencer's
        # half of the guard holds, and a row's address is reached by subtracting what its tag
        # added, in as many bits), so a lane past the end is caught here, before the output
        # path; the sequencer stops the frame long before its last write-back.
        ck_at, ck_mask, ck_split = Signal.like(at), Signal(C), Signal.like(wsplit)
        m.d.sync += [ck_at.eq(at), ck_mask.eq(Mux(arr.out_valid, sd.mask, 0)), ck_split.eq(wsplit)]
        wr_fault = Signal()
        ck_s2 = Signal()
        m.d.sync += ck_s2.eq(seq.out_step2)
        # Each lane's first bad row address, ``act_depth - j`` (less the gap past the split):
        # the gap is a per-layer constant, so its limits are registers and the check stays one
        # compare of ``at`` (an add before it was the ULX3S critical path at 93.8 MHz).
        lim_gap = [Signal(range(-C, cfg.act_depth + 1), name=f"wr_lim_gap{j}") for j in range(C)]
        m.d.sync += [lim_gap[j].eq(cfg.act_depth - j - seq.out_gap) for j in range(C)]
        m.d.sync += wr_fault.eq(Cat(*[
            ck_mask[j] & (ck_at >= Mux(ck_s2, cfg.act_depth - 2 * j,
                                       Mux(ck_split <= j, lim_gap[j], cfg.act_depth - j)))
            for j in range(C)]).any())
        m.d.comb += [seq.wr_fault.eq(wr_fault), self.fault.eq(seq.fault)]
        for j in range(C):
            m.d.comb += out.acc[j].eq(arr.out_data[j])
        if GM >= 2:
            for j, y in enumerate(self._split_sums(m, arr, seq.ksum, g4)):
                m.d.comb += out.acc[j].eq(y)

        # Optional 2x2 max-pool (pooled layers only: two cycles more), then write-back.
        psd = data.View(side, out.out_side)
        m.d.comb += [pool.valid.eq(out.out_valid), pool.data.eq(out.out_data),
                     pool.side.eq(out.out_side), pool.pool.eq(seq.pool), pool.op.eq(psd.pool_op),
                     pool.addr.eq(psd.pool_addr)]
        wb_valid = delayed(m, pool.out_valid, WRITEBACK_LATENCY, "wb_valid")
        wb_side = data.View(side, delayed(m, pool.out_side, WRITEBACK_LATENCY, "wb_side", reset_less=True))
        # (As a plain value: a delayed copy of the signed lane view made Yosys 0.70's ABC
        # reintegration assert on the full ULX3S engine.)
        wb_data = delayed(m, pool.out_data.as_value(), WRITEBACK_LATENCY, "wb_data", reset_less=True)
        m.d.comb += [act.wr_en.eq(wb_valid), act.wr_addr.eq(wb_side.addr), act.wr_mask.eq(wb_side.mask),
                     act.wr_stride2.eq(seq.out_step2),
                     act.wr_split.eq(wb_side.split), act.wr_gap.eq(seq.out_gap),
                     act.wr_data.eq(wb_data), seq.tile_done.eq(wb_valid & wb_side.done)]

        wiring.connect(m, wiring.flipped(self.result), seq.result)
        m.d.comb += self.counters.eq(seq.counters)
        return m

    def _split_sums(self, m, arr, ksum, g4):
        """The first ``INTERLEAVE_FRAMES`` columns' accumulators as the output path takes them: of a
        layer with split inputs (an FC on G groups, ``ksum``; its columns are one frame each of
        a batch) the groups' partial sums added.

        The groups' rows of one filter drain ``gs = R / G`` cycles apart, group G-1 first, so
        each row after the first group's adds the sum formed ``gs`` cycles before it: group 0's
        rows, the only ones written, end with the whole sums. Every other layer passes through.
        """
        R = self._cfg.rows
        half, q4 = R // 2, max(1, R // 4)
        # A local copy of the layer flag (it changes only between layers, with nothing in flight).
        on = Signal()
        m.d.sync += on.eq(ksum)
        # first_ago[k]: the drain's first row was k cycles ago, so this row is still the first
        # group's.
        first_ago = [arr.out_first]
        for k in range(1, half):
            t = Signal(name=f"ksum_first{k}")
            m.d.sync += t.eq(first_ago[-1])
            first_ago.append(t)
        first_group = Signal()
        m.d.comb += first_group.eq(Mux(g4, Cat(*first_ago[:q4]).any(), Cat(*first_ago).any()))
        add = Signal()
        m.d.comb += add.eq(on & ~first_group)
        sums = []
        for j in range(min(INTERLEAVE_FRAMES, self._cfg.cols)):
            hist = [Signal(signed(ACC_BITS), name=f"ksum{j}_hist{k}", reset_less=True)
                    for k in range(half)]
            y = Signal(signed(ACC_BITS), name=f"ksum{j}_y")
            m.d.comb += y.eq(arr.out_data[j] + Mux(add, Mux(g4, hist[q4 - 1], hist[half - 1]), 0))
            m.d.sync += [hist[0].eq(y)] + [hist[k].eq(hist[k - 1]) for k in range(1, half)]
            sums.append(y)
        return sums
