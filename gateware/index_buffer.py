"""The period-P circular index buffer: which taps the current input channel's kernel uses.

With rotation (METHOD.md), filter class ``r`` at input channel ``c`` uses period-table slot
``(r + c) mod P``, so the whole CSR_P column-index vector of a layer is its P support masks. The
buffer holds the tables of every layer (``table_depth`` slots written through the TABLES space,
one 9-bit tap mask a slot); a layer's window is ``base .. base + P - 1`` and a circular slot
counter walks it: :attr:`restart` sets the slot to ``r``, :attr:`advance` moves to the next input
channel, wrapping from ``P - 1`` to 0, so a read never leaves the window. :attr:`mask` (the current
slot) and :attr:`next_mask` (the slot after it) are combinational reads so the tap walker can
cross a channel boundary without a bubble.
"""

from amaranth import Module, Signal, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["IndexBuffer", "TAP_BITS"]

#: Taps of a 3x3 kernel: one mask bit each.
TAP_BITS = 9


class IndexBuffer(wiring.Component):
    """Period tables of all layers plus the circular slot pointer of the running layer.

    Parameters (keyword-only)
    -------------------------
    table_depth : int
        Slots of all layers together.
    p_max : int
        Largest period (width of the slot counter).

    Members
    -------
    we, waddr, wdata : In
        Load-port writes (TABLES space).
    base, period : In
        The running layer's window.
    restart, start_slot : In
        Set the slot to ``start_slot`` (the class ``r``) next cycle.
    advance : In(1)
        Step to the next slot (``(slot + 1) mod period``) next cycle.
    slot : Out
        Current slot (0 .. period - 1).
    mask, next_mask : Out(TAP_BITS)
        Tap masks of the current slot and of the one after it.
    """

    def __init__(self, *, table_depth: int, p_max: int):
        for name, v in (("table_depth", table_depth), ("p_max", p_max)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"IndexBuffer {name} must be a positive integer, not {v!r}")
        if p_max > table_depth:
            raise ValueError(f"IndexBuffer p_max ({p_max}) must not exceed table_depth ({table_depth})")
        self._depth, self._p_max = table_depth, p_max
        ab = max(1, (table_depth - 1).bit_length())
        super().__init__({
            "we": In(1), "waddr": In(ab), "wdata": In(TAP_BITS),
            "base": In(ab), "period": In(range(p_max + 1)),
            "restart": In(1), "start_slot": In(range(p_max)), "advance": In(1),
            "slot": Out(range(p_max)), "mask": Out(TAP_BITS), "next_mask": Out(TAP_BITS),
        })

    @property
    def table_depth(self) -> int:
        return self._depth

    @property
    def p_max(self) -> int:
        return self._p_max

    def elaborate(self, platform):
        m = Module()
        mem = Memory(shape=unsigned(TAP_BITS), depth=self._depth, init=[])
        m.submodules.mem = mem
        wp = mem.write_port()
        m.d.comb += [wp.en.eq(self.we), wp.addr.eq(self.waddr), wp.data.eq(self.wdata)]
        cur, nxt = mem.read_port(domain="comb"), mem.read_port(domain="comb")
        following = Signal.like(self.slot)
        m.d.comb += following.eq(Mux(self.slot + 1 >= self.period, 0, self.slot + 1))
        m.d.comb += [cur.addr.eq(self.base + self.slot), nxt.addr.eq(self.base + following),
                     self.mask.eq(cur.data), self.next_mask.eq(nxt.data)]
        with m.If(self.restart):
            m.d.sync += self.slot.eq(self.start_slot)
        with m.Elif(self.advance):
            m.d.sync += self.slot.eq(following)
        return m
