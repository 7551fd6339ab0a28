"""The address guard: every step the sequencer issues is checked against the memories it reads.

The loader checks each descriptor field against its range (``hw.descriptors.check_descriptors``), not
their products: a hand-made descriptor whose map or weights pass the end of their memory loads.
Instead of letting its addresses wrap, the sequencer feeds each issued step through this guard,
and stops the frame when :attr:`AddressGuard.bad` rises (the core checks the writes itself):

- **Reads.** On each read port that feeds the array this layer (``feeds``:
  :func:`gateware.sequencer.port_feeds`), the lowest and highest ok column's byte (column ``j``
  at ``addr + j``, or ``addr + 2j`` at stride 2; columns ``j >= split`` of a flat tile's second
  output row ``2C * jump`` bytes further on) must lie in ``0 .. act_depth - 1``. Columns that
  are not ok read zero, so their addresses do not matter.
- **Weights.** The step's weight entry must be below ``weight_depth``. It counts up by one from a
  block's base, so ``weight_depth`` itself is the first bad entry, seen before any wrap.
- **Window.** While the layer walks, the accumulators whose sums form the step's addresses must
  stay inside ``+-2**act_addr_bits``, where every legal map lies. The address terms are then wide
  enough that every sum the read check sees is the true address, not one wrapped back into range.

Every check is registered off the step's path: ``bad`` rises :data:`GUARD_LATENCY` - 1 cycles after
a step that reads outside (the sequencer's sticky flag adds one), and 1 cycle after an accumulator
leaves the window.
"""

from amaranth import Module, Signal, Mux, Cat, signed, unsigned
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from .pipeline import delayed

__all__ = ["AddressGuard", "GUARD_LATENCY", "TERM_MARGIN_BITS"]

#: Bits the signed address terms need beyond ``act_addr_bits``: a step's address sums up to four
#: accumulators inside the window (``+-2**act_addr_bits``) and offsets of at most ``8 *
#: act_depth``, so ``|sum| < 16 * 2**act_addr_bits``: four more bits and a sign keep it exact.
TERM_MARGIN_BITS = 5

#: Cycles from an issued step to the sequencer's ``fault`` when its activation or weight read lies
#: outside its memory: the read check's registers (addresses and ok bits, the lowest and highest ok
#: column's address, the compare), then the sequencer's sticky flag; the weight check is delayed to
#: match. (The window check takes 2 cycles from the accumulator that left the window; the core's
#: write check 1 from the sequencer's ``wr_fault``.)
GUARD_LATENCY = 4


class AddressGuard(wiring.Component):
    """Registered bounds checks of a layer walk's issued steps.

    Parameters (keyword-only)
    -------------------------
    config : hw.array.ArrayConfig
        The engine's configuration: ``act_depth``, ``weight_depth``, ``cols`` and the read ports
        (``max(1, groups)``).
    act_addr_bits : int
        Bits of an activation address (``ActBuffer.addr_bits``); the window is
        ``+-2**act_addr_bits``.
    term_bits : int
        Width of the signed input address terms and of :attr:`addr`: at least ``act_addr_bits +
        TERM_MARGIN_BITS``, so that a step's address is exact while its terms are in the window.
    out_bits : int
        Width of the unsigned output address terms.
    entry_bits : int
        Width of :attr:`entry` (one bit more than the weight memory's address, so that
        ``weight_depth`` itself is seen).

    Members
    -------
    step : In(1)
        A step is issued this cycle (the sequencer's ``step_valid``).
    stride2 : In(1)
        The layer reads every other byte (column ``j`` at ``addr + 2j``).
    addr : In(data.ArrayLayout(signed(term_bits), ports))
        Each read port's column-0 address of the step, at full width.
    ok : In(data.ArrayLayout(cols, ports))
        Each read port's ok columns.
    split, jump : In
        Columns ``j >= split`` of every port read ``2 * cols * jump`` bytes further on
        (``ActBuffer.rd_split``, ``rd_jump``: ``jump`` as wide as a bank address, so that the
        distance stays below ``2**act_addr_bits``).
    feeds : In(ports)
        The ports whose bytes reach the array this layer (the others are not checked).
    entry : In(entry_bits)
        The step's weight entry.
    walking : In(1)
        The layer is walking: :attr:`in_terms` and :attr:`out_terms` hold its accumulators.
    in_terms : In(data.ArrayLayout(signed(term_bits), 4))
        The input address accumulators (channel, row, column and row-origin terms).
    out_terms : In(data.ArrayLayout(out_bits, 2))
        The output address accumulators (block and pixel-row terms).
    bad : Out(1)
        A check failed: a read or weight entry of the step ``GUARD_LATENCY - 1`` cycles ago, or
        an accumulator of the cycle before left the window. Not sticky.
    """

    def __init__(self, *, config, act_addr_bits: int, term_bits: int, out_bits: int,
                 entry_bits: int):
        from hw.array import ArrayConfig
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"AddressGuard config must be an ArrayConfig, not {config!r}")
        for name, v in (("act_addr_bits", act_addr_bits), ("term_bits", term_bits),
                        ("out_bits", out_bits), ("entry_bits", entry_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AddressGuard {name} must be a positive integer, not {v!r}")
        if (config.act_depth - 1).bit_length() > act_addr_bits:
            raise ValueError(f"AddressGuard act_addr_bits ({act_addr_bits}) cannot address "
                             f"act_depth = {config.act_depth}")
        if term_bits < act_addr_bits + TERM_MARGIN_BITS:
            raise ValueError(f"AddressGuard term_bits ({term_bits}) must be at least "
                             f"act_addr_bits + {TERM_MARGIN_BITS} = {act_addr_bits + TERM_MARGIN_BITS}")
        if out_bits < act_addr_bits:
            raise ValueError(f"AddressGuard out_bits ({out_bits}) must be at least act_addr_bits "
                             f"= {act_addr_bits}")
        if (1 << entry_bits) <= config.weight_depth:
            raise ValueError(f"AddressGuard entry_bits ({entry_bits}) must hold weight_depth = "
                             f"{config.weight_depth}")
        self._cfg = config
        self._ab = act_addr_bits
        ports = max(1, config.groups)
        super().__init__({
            "step": In(1), "stride2": In(1),
            "addr": In(data.ArrayLayout(signed(term_bits), ports)),
            "ok": In(data.ArrayLayout(config.cols, ports)),
            "split": In(range(config.cols + 1)),
            "jump": In(max(1, act_addr_bits - (2 * config.cols).bit_length() + 1)),
            "feeds": In(ports), "entry": In(entry_bits),
            "walking": In(1),
            "in_terms": In(data.ArrayLayout(signed(term_bits), 4)),
            "out_terms": In(data.ArrayLayout(unsigned(out_bits), 2)),
            "bad": Out(1),
        })

    @property
    def config(self):
        return self._cfg

    @property
    def act_addr_bits(self) -> int:
        return self._ab

    def elaborate(self, platform):
        m = Module()
        cfg, AB, C = self._cfg, self._ab, self._cfg.cols
        ports = max(1, cfg.groups)

        # Window: every legal map lies in 0 .. act_depth - 1 <= 2**AB - 1, and a step moves an
        # accumulator by at most 8 * act_depth, so sums of terms inside the window are exact.
        def outside(v):
            top = v[AB:]
            return (top != 0) & (top != (1 << len(top)) - 1) if v.shape().signed else top != 0
        window_bad = Signal()
        terms = [self.in_terms[i] for i in range(4)] + [self.out_terms[i] for i in range(2)]
        m.d.sync += window_bad.eq(self.walking & Cat(*[outside(t) for t in terms]).any())

        # Reads: per port, the lowest and highest ok column's byte (stage 1: the step's address
        # and the ok bits of a port that feeds; 2: the two bytes' addresses; 3: the compare).
        g_valid, g_s2 = Signal(), Signal()
        g_split = Signal.like(self.split)
        m.d.sync += [g_valid.eq(self.step), g_s2.eq(self.stride2), g_split.eq(self.split)]
        read_bad = []
        for k in range(ports):
            g_addr = Signal.like(self.addr[k], name=f"g_addr{k}")
            g_ok = Signal(C, name=f"g_ok{k}")
            m.d.sync += [g_addr.eq(self.addr[k]), g_ok.eq(Mux(self.feeds[k], self.ok[k], 0))]
            lo_j, hi_j = Signal(range(C), name=f"g_lo{k}"), Signal(range(C), name=f"g_hi{k}")
            for j in reversed(range(C)):          # the last taken wins: the lowest
                with m.If(g_ok[j]):
                    m.d.comb += lo_j.eq(j)
            for j in range(C):                    # the highest
                with m.If(g_ok[j]):
                    m.d.comb += hi_j.eq(j)
            lo = Signal.like(self.addr[k], name=f"g_lo_addr{k}")
            hi = Signal.like(self.addr[k], name=f"g_hi_addr{k}")
            any_ok = Signal(name=f"g_any{k}")
            # Whether the lowest / highest ok column lies past the split, from the ok bits
            # beside the priority encoders (not after them), and the jumped base ready in a
            # register: the split adds a choice of operand, not a third one.
            g_jaddr = Signal.like(self.addr[k], name=f"g_jaddr{k}")
            m.d.sync += g_jaddr.eq(self.addr[k] + self.jump * (2 * C))
            below = Signal(C, name=f"g_below{k}")
            m.d.comb += below.eq(Cat(*[j < g_split for j in range(C)]))
            lo_past, hi_past = Signal(name=f"g_lo_past{k}"), Signal(name=f"g_hi_past{k}")
            m.d.comb += [lo_past.eq((g_ok & below) == 0), hi_past.eq((g_ok & ~below) != 0)]
            m.d.sync += [lo.eq(Mux(lo_past, g_jaddr, g_addr) + Mux(g_s2, lo_j << 1, lo_j)),
                         hi.eq(Mux(hi_past, g_jaddr, g_addr) + Mux(g_s2, hi_j << 1, hi_j)),
                         any_ok.eq(g_valid & (g_ok != 0))]
            bad = Signal(name=f"read_bad{k}")
            m.d.sync += bad.eq(any_ok & ((lo < 0) | (hi >= cfg.act_depth)))
            read_bad.append(bad)

        # Weights: registered, then delayed to the reads' latency.
        weight_bad = Signal()
        m.d.sync += weight_bad.eq(self.step & (self.entry >= cfg.weight_depth))
        weight_bad = delayed(m, weight_bad, GUARD_LATENCY - 2, "weight_bad")

        m.d.comb += self.bad.eq(window_bad | weight_bad | Cat(*read_bad).any())
        return m
