"""The CSR_P weight buffer and its read port: one step's R weights per cycle.

Entry ``e`` of the weight buffer holds, for one (layer, class, filter block), step ``k``'s weight
of each of the R rows (``hw.layout``, WEIGHTS): every filter block's data vectors lie in
consecutive entries, so the sequencer replays a block for each pixel tile by counting the entry
address from the block's base, one entry a cycle with no bubbles, and only the non-zero pattern
positions are ever stored or streamed. Load words fill an entry 4 bytes at a time
(``words_per_entry`` words, byte-granular writes).

The buffer is built from segments of :data:`SEGMENT_DEPTH` entries, each its own memory with its
own output register, and the segment is chosen one cycle later from those registers: a block RAM
is at most 2048 entries deep at byte width, so a deeper buffer needs a multiplexer among block
RAMs spread over the chip, which should not follow their slow clock-to-out (~5.8 ns on the ECP5)
in the same cycle.
"""

from amaranth import Module, Signal, Const, unsigned, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .pipeline import registered_read

__all__ = ["WeightStreamer", "READ_LATENCY", "SEGMENT_DEPTH"]

#: Cycles from :attr:`WeightStreamer.addr` to :attr:`WeightStreamer.w`: the block-RAM read, a
#: register right after each segment (a block RAM's clock-to-out is most of a cycle on the ECP5),
#: then the segment select and its register.
READ_LATENCY = 3

#: Entries per segment: the depth of one block RAM at byte width (DP16KD 2048 x 9, RAMB18E1
#: 2048 x 9).
SEGMENT_DEPTH = 2048


class WeightStreamer(wiring.Component):
    """``depth`` entries of ``rows`` int8 weights.

    Parameters (keyword-only)
    -------------------------
    rows : int
        Weights per entry (a power of two).
    depth : int
        Entries.
    segment_depth : int
        Entries per segment memory (a power of two; default :data:`SEGMENT_DEPTH`).

    Members
    -------
    we, waddr, wdata : In
        Load-port writes (WEIGHTS space): word ``waddr`` is bytes ``4 * (waddr mod wpe) ..`` of
        entry ``waddr div wpe``.
    addr : In
        Entry to read; :attr:`w` holds it :data:`READ_LATENCY` cycles later.
    w : Out(data.ArrayLayout(signed(8), rows))
    """

    def __init__(self, *, rows: int, depth: int, segment_depth: int = SEGMENT_DEPTH):
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1 or rows & (rows - 1):
            raise ValueError(f"WeightStreamer rows must be a power of two, not {rows!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"WeightStreamer depth must be a positive integer, not {depth!r}")
        if (isinstance(segment_depth, bool) or not isinstance(segment_depth, int) or segment_depth < 1
                or segment_depth & (segment_depth - 1)):
            raise ValueError(f"WeightStreamer segment_depth must be a power of two, not {segment_depth!r}")
        self._rows, self._depth, self._seg = rows, depth, segment_depth
        self._wpe = max(1, rows // 4)
        ab = max(1, (depth - 1).bit_length())
        wb = max(1, (depth * self._wpe - 1).bit_length())
        super().__init__({
            "we": In(1), "waddr": In(wb), "wdata": In(32),
            "addr": In(ab), "w": Out(data.ArrayLayout(signed(8), rows)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def segment_depth(self) -> int:
        return self._seg

    @property
    def words_per_entry(self) -> int:
        return self._wpe

    def elaborate(self, platform):
        m = Module()
        R, wpe = self._rows, self._wpe
        # ``no_rw_check``: loads and frames never overlap (the load port is not ready while a
        # frame runs), so Yosys needs no read-old-data bypass after the block RAM.
        seg_depth = min(self._depth, self._seg)
        n_seg = -(-self._depth // seg_depth)
        sb = (seg_depth - 1).bit_length()
        part = Signal(range(wpe))
        entry = Signal(len(self.waddr))
        if wpe > 1:
            m.d.comb += [part.eq(self.waddr[:len(part)]), entry.eq(self.waddr >> len(part))]
        else:
            m.d.comb += entry.eq(self.waddr)
        seg_q = []
        for k in range(n_seg):
            mem = Memory(shape=unsigned(8 * R), depth=min(seg_depth, self._depth - k * seg_depth),
                         init=[], attrs={"no_rw_check": 1})
            m.submodules[f"mem{k}"] = mem
            wp = mem.write_port(granularity=8)
            m.d.comb += [wp.addr.eq(entry[:sb] if sb else 0),
                         wp.data.eq(self.wdata.replicate(wpe) if R >= 4 else self.wdata)]
            with m.If(self.we & ((entry >> sb) == k)):
                if R >= 4:
                    m.d.comb += wp.en.eq(Const(0xF, 4) << (part * 4))
                else:
                    m.d.comb += wp.en.eq((1 << R) - 1)
            rp, rdata = registered_read(m, mem, f"mem{k}")
            m.d.comb += rp.addr.eq(self.addr[:sb] if sb else 0)
            q = Signal(8 * R, name=f"seg{k}_q", reset_less=True)
            m.d.sync += q.eq(rdata)
            seg_q.append(q)
        # The segment of the read, aligned with the segment registers.
        sel = Signal(range(n_seg), name="seg_sel")
        sel_q = Signal(range(n_seg), name="seg_sel_q")
        if n_seg > 1:
            m.d.sync += [sel.eq(self.addr >> sb), sel_q.eq(sel)]
        w_q = Signal(8 * R, name="w_q", reset_less=True)
        with m.Switch(sel_q):
            for k, q in enumerate(seg_q):
                with m.Case(k):
                    m.d.sync += w_q.eq(q)
        m.d.comb += self.w.as_value().eq(w_q)
        return m
