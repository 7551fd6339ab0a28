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

__all__ = ["WeightStreamer", "READ_LATENCY", "BANK_DEPTH"]

#: Cycles from :attr:`WeightStreamer.addr` to :attr:`WeightStreamer.w`: the block-RAM read, a
#: register next to the bank's block RAMs (their clock-to-out is most of a cycle on the ECP5,
#: ~5.8 ns, so no long route follows it in the same cycle), the bank select, and one more
#: register: the weight buffer's block RAMs are spread over the chip, the array is in one place.
READ_LATENCY = 4
#: Entries per bank: a DP16KD holds 2048 x 9 bits, its deepest configuration with byte writes.
BANK_DEPTH = 2048


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
        entry = Signal(len(self.addr))           # the entry a load word writes
        part = Signal(range(wpe))
        if wpe > 1:
            m.d.comb += [part.eq(self.waddr[:len(part)]), entry.eq(self.waddr >> len(part))]
        else:
            m.d.comb += entry.eq(self.waddr)
        en = Signal(R)
        with m.If(self.we):
            if R >= 4:
                m.d.comb += en.eq(Const(0xF, 4) << (part * 4))
            else:
                m.d.comb += en.eq((1 << R) - 1)

        # Banks of BANK_DEPTH entries, each read into a register of its own (placed by its block
        # RAMs), then the addressed bank's register is selected into `w`. One memory of the
        # whole depth would put a mux over its block RAMs right after their outputs.
        bank_bits = min(len(self.addr), (BANK_DEPTH - 1).bit_length())
        n_banks = -(-self._depth // BANK_DEPTH)
        sel1, sel2 = Signal(range(n_banks)), Signal(range(n_banks))
        m.d.sync += [sel1.eq(self.addr >> bank_bits), sel2.eq(sel1)]
        held = []
        for b in range(n_banks):
            # ``no_rw_check``: loads and frames never overlap (the load port is not ready while
            # a frame runs), so Yosys needs no read-old-data bypass after the block RAM.
            mem = Memory(shape=unsigned(8 * R), depth=min(self._depth - b * BANK_DEPTH, BANK_DEPTH),
                         init=[], attrs={"no_rw_check": 1})
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=8)
            m.d.comb += [wp.addr.eq(entry[:bank_bits]),
                         wp.data.eq(self.wdata.replicate(wpe) if R >= 4 else self.wdata)]
            with m.If((entry >> bank_bits) == b):
                m.d.comb += wp.en.eq(en)
            rp = mem.read_port()
            q = Signal(8 * R, name=f"bank{b}_q", reset_less=True)
            m.d.comb += rp.addr.eq(self.addr[:bank_bits])
            m.d.sync += q.eq(rp.data)
            held.append(q)
        selected = Signal(8 * R, reset_less=True)
        with m.Switch(sel2):
            for b, q in enumerate(held):
                with m.Case(b):
                    m.d.sync += selected.eq(q)
        m.d.sync += self.w.as_value().eq(selected)
        return m
