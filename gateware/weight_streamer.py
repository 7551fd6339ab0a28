"""The CSR_P weight buffer and its read port: one step's R weights per cycle.

Entry ``e`` of the weight buffer holds, for one (layer, class, filter block), step ``k``'s weight
of each of the R rows (``hw.layout``, WEIGHTS): every filter block's data vectors lie in
consecutive entries, so the sequencer replays a block for each pixel tile by counting the entry
address from the block's base, one entry a cycle with no bubbles, and only the non-zero pattern
positions are ever stored or streamed. Load words fill an entry 4 bytes at a time
(``words_per_entry`` words, byte-granular writes).
"""

from amaranth import Module, Signal, Const, unsigned, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["WeightStreamer", "READ_LATENCY"]

#: Cycles from :attr:`WeightStreamer.addr` to :attr:`WeightStreamer.w`: the block-RAM read and a
#: register right after it (a block RAM's clock-to-out is most of a cycle on the ECP5, ~5.8 ns,
#: so the route to the array starts at a register instead).
READ_LATENCY = 2


class WeightStreamer(wiring.Component):
    """``depth`` entries of ``rows`` int8 weights.

    Parameters (keyword-only)
    -------------------------
    rows : int
        Weights per entry (a power of two).
    depth : int
        Entries.

    Members
    -------
    we, waddr, wdata : In
        Load-port writes (WEIGHTS space): word ``waddr`` is bytes ``4 * (waddr mod wpe) ..`` of
        entry ``waddr div wpe``.
    addr : In
        Entry to read; :attr:`w` holds it :data:`READ_LATENCY` cycles later.
    w : Out(data.ArrayLayout(signed(8), rows))
    """

    def __init__(self, *, rows: int, depth: int):
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1 or rows & (rows - 1):
            raise ValueError(f"WeightStreamer rows must be a power of two, not {rows!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"WeightStreamer depth must be a positive integer, not {depth!r}")
        self._rows, self._depth = rows, depth
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
    def words_per_entry(self) -> int:
        return self._wpe

    def elaborate(self, platform):
        m = Module()
        R, wpe = self._rows, self._wpe
        # ``no_rw_check``: loads and frames never overlap (the load port is not ready while a
        # frame runs), so Yosys needs no read-old-data bypass after the block RAM.
        mem = Memory(shape=unsigned(8 * R), depth=self._depth, init=[], attrs={"no_rw_check": 1})
        m.submodules.mem = mem
        wp = mem.write_port(granularity=8)
        part = Signal(range(wpe))
        if wpe > 1:
            m.d.comb += [part.eq(self.waddr[:len(part)]),
                         wp.addr.eq(self.waddr >> len(part))]
        else:
            m.d.comb += wp.addr.eq(self.waddr)
        m.d.comb += wp.data.eq(self.wdata.replicate(wpe) if R >= 4 else self.wdata)
        with m.If(self.we):
            if R >= 4:
                m.d.comb += wp.en.eq(Const(0xF, 4) << (part * 4))
            else:
                m.d.comb += wp.en.eq((1 << R) - 1)
        rp = mem.read_port()
        m.d.comb += rp.addr.eq(self.addr)
        m.d.sync += self.w.as_value().eq(rp.data)
        return m
