"""The period-P circular index buffer: which taps the current input channel's kernel uses.

With rotation (METHOD.md), filter class ``r`` at input channel ``c`` uses period-table slot
``(r + c) mod P``, so the whole CSR_P column-index vector of a layer is its P support masks. The
buffer holds the tables of every layer (``table_depth`` slots written through the TABLES space,
one 9-bit tap mask a slot); a layer's window is ``base .. base + P - 1`` and a circular slot
pointer walks it, wrapping from ``base + P - 1`` to ``base``, so a read never leaves the window.

Every output is a register and every table read is a registered read at an address held in a
register: the buffer prefetches the masks it may need next (the class's slots ``r``, ``r + 1``,
``r + 2``, and during the walk the slot after the next one) and keeps the address of the one
beyond, which each step moves by one with a compare against the window's last address. So no
control logic sits in front of a table read. :attr:`restart` starts the class's walk, :attr:`advance` moves
to the next input channel; :attr:`mask` / :attr:`next_mask` (the current slot and the one after
it, so the tap walker crosses a channel boundary without a bubble) come with their lowest tap and
the remaining taps already split off, the walker's next state.
"""

from amaranth import Module, Signal, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["IndexBuffer", "TAP_BITS", "split_lowest_tap"]

#: Taps of a 3x3 kernel: one mask bit each.
TAP_BITS = 9


def split_lowest_tap(m, mask, name):
    """``(tap, rest)``: index of the lowest set bit of ``mask`` (0 when none) and ``mask`` without it."""
    tap = Signal(range(TAP_BITS), name=f"{name}_tap")
    rest = Signal(TAP_BITS, name=f"{name}_rest")
    for t in reversed(range(TAP_BITS)):
        with m.If(mask[t]):
            m.d.comb += tap.eq(t)
    m.d.comb += rest.eq(mask & (mask - 1))
    return tap, rest


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
        Load-port writes (TABLES space; only while no layer runs: the outputs are registered
        copies of the table).
    base, period : In
        The running layer's window (constant while it runs).
    start : In(1)
        A layer starts: the class slot becomes 0 (``base`` and ``period`` must have held their
        values since the cycle before; the first :attr:`restart` may come two cycles later).
    next_class : In(1)
        The class slot moves to the next class (``r + 1``; a restart may follow the next cycle).
    restart : In(1)
        The walk restarts at the class slot ``r`` (outputs valid the next cycle; it may repeat,
        and never comes with ``next_class``: ``tests/test_formal.py`` proves the sequencer
        keeps to that).
    advance : In(1)
        Step to the next slot (``(slot + 1) mod period``) next cycle.
    slot : Out
        Current slot (0 .. period - 1).
    mask, next_mask : Out(TAP_BITS)
        Tap masks of the current slot and of the one after it.
    first_tap, rest : Out
        The lowest tap of :attr:`mask` and the mask without it.
    next_first_tap, next_rest : Out
        The same of :attr:`next_mask`.
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
            "start": In(1), "next_class": In(1), "restart": In(1), "advance": In(1),
            "slot": Out(range(p_max)), "mask": Out(TAP_BITS), "next_mask": Out(TAP_BITS),
            "first_tap": Out(range(TAP_BITS)), "rest": Out(TAP_BITS),
            "next_first_tap": Out(range(TAP_BITS)), "next_rest": Out(TAP_BITS),
        })

    @property
    def table_depth(self) -> int:
        return self._depth

    @property
    def p_max(self) -> int:
        return self._p_max

    def elaborate(self, platform):
        m = Module()
        ab = len(self.base)
        mem = Memory(shape=unsigned(TAP_BITS), depth=self._depth, init=[])
        m.submodules.mem = mem
        wp = mem.write_port()
        m.d.comb += [wp.en.eq(self.we), wp.addr.eq(self.waddr), wp.data.eq(self.wdata)]

        # The window's last address, and one step along the window.
        last = Signal(ab + 1)
        m.d.sync += last.eq(self.base + self.period - 1)

        def following(ptr):
            return Mux(ptr == last, self.base, ptr + 1)

        def read(addr, en):
            """A registered table read (the address a register or a layer constant, so no
            control logic sits in front of the table)."""
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            return port.data

        # The class's slots r, r + 1, r + 2 (mod P) prefetched, and the address of slot r + 3. A
        # class move shifts them at once; the new third one arrives a cycle later (`moved`), so
        # `cls2` is slot r + 2 in every cycle.
        p = self.period
        cls_slot = Signal(range(self._p_max + 1))
        cls_ahead = Signal(ab)
        # The window's first three slots, added up every cycle: base and period hold still for
        # the whole descriptor load before `start`, so the start reads need no adder in front.
        start_addrs = [Signal(ab, name=f"start_addr{i}") for i in range(3)]
        m.d.sync += [sa.eq(self.base + Mux(p > i, i, Mux(p == 2, i & 1, 0)))
                     for i, sa in enumerate(start_addrs)]
        start_reads = [read(sa, self.start) for sa in start_addrs]
        shifted = read(cls_ahead, self.next_class)
        cls_masks = [Signal(TAP_BITS, name=f"class_mask{i}") for i in range(3)]
        started, moved = Signal(), Signal()
        m.d.sync += [started.eq(self.start), moved.eq(self.next_class & ~self.start)]
        cls2 = Signal(TAP_BITS)
        m.d.comb += cls2.eq(Mux(moved, shifted, cls_masks[2]))
        with m.If(started):
            m.d.sync += [cm.eq(rd) for cm, rd in zip(cls_masks, start_reads)]
        with m.Elif(self.next_class):
            m.d.sync += [cls_masks[0].eq(cls_masks[1]), cls_masks[1].eq(cls2)]
        with m.Elif(moved):
            m.d.sync += cls_masks[2].eq(shifted)
        with m.If(self.start):
            m.d.sync += [cls_slot.eq(0),
                         cls_ahead.eq(self.base + Mux(p > 3, 3, Mux(p == 2, 1, 0)))]
        with m.Elif(self.next_class):
            m.d.sync += [cls_slot.eq(cls_slot + 1), cls_ahead.eq(following(cls_ahead))]
        # During the walk: the slot after the next one prefetched, the address of the one after.
        walk_ahead = Signal(ab)
        after_next = Signal(TAP_BITS)
        fetched = read(walk_ahead, self.advance)
        fresh = Signal()
        m.d.sync += fresh.eq(self.advance & ~self.restart)

        cur_tap, cur_rest = split_lowest_tap(m, cls_masks[0], "restart_cur")
        nxt_tap, nxt_rest = split_lowest_tap(m, cls_masks[1], "restart_next")
        far = Mux(fresh, fetched, after_next)
        far_tap, far_rest = split_lowest_tap(m, far, "advance_next")
        with m.If(fresh):
            m.d.sync += after_next.eq(fetched)
        with m.If(self.restart):
            m.d.sync += [self.slot.eq(cls_slot), after_next.eq(cls2),
                         walk_ahead.eq(cls_ahead),
                         self.mask.eq(cls_masks[0]), self.first_tap.eq(cur_tap), self.rest.eq(cur_rest),
                         self.next_mask.eq(cls_masks[1]), self.next_first_tap.eq(nxt_tap),
                         self.next_rest.eq(nxt_rest)]
        with m.Elif(self.advance):
            m.d.sync += [self.slot.eq(Mux(self.slot + 1 >= self.period, 0, self.slot + 1)),
                         walk_ahead.eq(following(walk_ahead)),
                         self.mask.eq(self.next_mask), self.first_tap.eq(self.next_first_tap),
                         self.rest.eq(self.next_rest),
                         self.next_mask.eq(far), self.next_first_tap.eq(far_tap),
                         self.next_rest.eq(far_rest)]
        return m
