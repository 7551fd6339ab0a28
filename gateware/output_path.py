"""The output path: per-channel bias, requantization, ReLU and int8 clamp of one filter row a cycle.

It takes one drained row of the array (C int32 accumulators of one output channel) per cycle and
computes, exactly as :func:`hw.quant.requantize`::

    y = clamp(((acc + bias) * M + 2**(s - 1)) >> s, lo, 127)      lo = 0 if relu else -128

with every intermediate wide enough never to wrap (``acc + bias`` in 33 bits, the product in 50).
The rounding is done after the shift, ``(x + 2**(s-1)) >> s == ((x >> (s-1)) + 1) >> 1``, so it
needs no wide adder. Each operation has its own register stage (param read, bias register, add,
multiplier operands, two partial products, their sum, shift by ``s - 1``, round and compare,
select) so
that no wide adder follows a memory read or a multiplier in the same cycle: the 33 x 16 product
is split at bit 17 into two products that each fit one 18 x 18 multiplier (ECP5 MULT18X18D; one
DSP48E1 each), registered, then added. The channel's
bias, ``M`` and ``s`` live in two small memories written through the load port (BIAS, REQUANT).
A sideband (the write address and lane mask) travels alongside unchanged.

:class:`PoolStage` follows it: the optional 2x2 max-pool (stride 2) of a pooled layer, which pairs
each row with the other output row of its pooling pair (kept in a small row memory) and emits
pooled bytes, :data:`POOL_LATENCY` cycles later; rows of other layers pass straight through.
"""

from amaranth import Module, Signal, Mux, signed, unsigned
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.quant import ACC_BITS, MULTIPLIER_BITS, SHIFT_MAX
from .multiplier import RegisteredMultiplier
from .pipeline import registered_read

__all__ = ["OutputPath", "OUTPUT_LATENCY", "PoolStage", "POOL_LATENCY", "POOL_STORE",
           "POOL_COMBINE", "POOL_FOLD"]

#: Cycles from :attr:`OutputPath.valid` to :attr:`OutputPath.out_valid`.
OUTPUT_LATENCY = 9


class OutputPath(wiring.Component):
    """Requantize ``cols`` accumulators of one output channel per cycle.

    Parameters (keyword-only)
    -------------------------
    cols : int
        Lanes (array columns).
    param_depth : int
        Output channels the parameter memories hold.
    side_bits : int
        Width of the sideband carried from :attr:`side` to :attr:`out_side`.

    Members
    -------
    valid, acc, channel, relu, side : In
        One row: C accumulators, its global channel index, ReLU, sideband.
    out_valid, out_data, out_side : Out
        C int8 results and the sideband, :data:`OUTPUT_LATENCY` cycles later.
    bias_we, bias_addr, bias_data, rq_we, rq_addr, rq_data : In
        Load-port writes of the BIAS (int32) and REQUANT (``M | s << 16``) words.
    """

    def __init__(self, *, cols: int, param_depth: int, side_bits: int):
        for name, v in (("cols", cols), ("param_depth", param_depth), ("side_bits", side_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"OutputPath {name} must be a positive integer, not {v!r}")
        self._cols, self._depth, self._side = cols, param_depth, side_bits
        pb = max(1, (param_depth - 1).bit_length())
        super().__init__({
            "valid": In(1), "acc": In(data.ArrayLayout(signed(ACC_BITS), cols)),
            "channel": In(pb), "relu": In(1), "side": In(side_bits),
            "out_valid": Out(1), "out_data": Out(data.ArrayLayout(signed(8), cols)),
            "out_side": Out(side_bits),
            "bias_we": In(1), "bias_addr": In(pb), "bias_data": In(32),
            "rq_we": In(1), "rq_addr": In(pb), "rq_data": In(32),
        })

    @property
    def cols(self) -> int:
        return self._cols

    def elaborate(self, platform):
        m = Module()
        C = self._cols
        # ``no_rw_check``: parameters are written only while the engine is idle.
        bias_mem = Memory(shape=signed(32), depth=self._depth, init=[], attrs={"no_rw_check": 1})
        rq_mem = Memory(shape=unsigned(MULTIPLIER_BITS + 6), depth=self._depth, init=[],
                        attrs={"no_rw_check": 1})
        m.submodules.bias_mem, m.submodules.rq_mem = bias_mem, rq_mem
        for mem, we, addr, d in ((bias_mem, self.bias_we, self.bias_addr, self.bias_data),
                                 (rq_mem, self.rq_we, self.rq_addr, self.rq_data)):
            wp = mem.write_port()
            m.d.comb += [wp.en.eq(we), wp.addr.eq(addr), wp.data.eq(d)]
        bias_rp, bias_data = registered_read(m, bias_mem, "bias")
        rq_rp, rq_data = registered_read(m, rq_mem, "rq")
        m.d.comb += [bias_rp.addr.eq(self.channel), rq_rp.addr.eq(self.channel)]

        def stage(prev_valid, prev_side, prev_relu, n):
            v, s, r = Signal(name=f"v{n}"), Signal(self._side, name=f"side{n}"), Signal(name=f"relu{n}")
            m.d.sync += [v.eq(prev_valid), s.eq(prev_side), r.eq(prev_relu)]
            return v, s, r

        # Stage 1: parameters arrive from memory.
        v1, side1, relu1 = stage(self.valid, self.side, self.relu, 1)
        acc1 = [Signal(signed(ACC_BITS), name=f"acc1_{j}", reset_less=True) for j in range(C)]
        m.d.sync += [acc1[j].eq(self.acc[j]) for j in range(C)]
        mult = Signal(unsigned(MULTIPLIER_BITS))
        shift = Signal(range(SHIFT_MAX + 1))
        m.d.comb += [mult.eq(rq_data[:MULTIPLIER_BITS]), shift.eq(rq_data[MULTIPLIER_BITS:])]
        # Stage 2: the bias read is registered (a BRAM output feeds no adder directly).
        v2, side2, relu2 = stage(v1, side1, relu1, 2)
        m2, s2 = Signal.like(mult, reset_less=True), Signal.like(shift, reset_less=True)
        m.d.sync += [m2.eq(mult), s2.eq(shift)]
        bias2 = Signal(signed(32), reset_less=True)
        acc2 = [Signal(signed(ACC_BITS), name=f"acc2_{j}", reset_less=True) for j in range(C)]
        m.d.sync += [bias2.eq(bias_data)] + [acc2[j].eq(acc1[j]) for j in range(C)]
        # Stage 2b: + bias.
        v2b, side2b, relu2b = stage(v2, side2, relu2, "2b")
        m2b, s2b = Signal.like(mult, reset_less=True), Signal.like(shift, reset_less=True)
        m.d.sync += [m2b.eq(m2), s2b.eq(s2)]
        sum2 = [Signal(signed(ACC_BITS + 1), name=f"sum2_{j}", reset_less=True) for j in range(C)]
        m.d.sync += [sum2[j].eq(acc2[j] + bias2) for j in range(C)]
        # Stages 3p and 3a: the two partial products of sum2 * M (low 17 bits unsigned, high 16
        # signed), each a RegisteredMultiplier: operands registered where the multiplier sits
        # (3p; on the ECP5 inside the MULT18X18D), product registered (3a). The shift is
        # prepared for stage 4: by s - 1 (the rounding is finished after it, in stage 5).
        LO = 17
        v3p, side3p, relu3p = stage(v2b, side2b, relu2b, "3p")
        sh3p, exact3p = Signal.like(shift, reset_less=True), Signal(reset_less=True)
        m.d.sync += [sh3p.eq(Mux(s2b == 0, 0, s2b - 1)), exact3p.eq(s2b == 0)]
        v3a, side3a, relu3a = stage(v3p, side3p, relu3p, "3a")
        sh3a, exact3a = Signal.like(shift, reset_less=True), Signal(reset_less=True)
        m.d.sync += [sh3a.eq(sh3p), exact3a.eq(exact3p)]
        plo, phi = [], []
        for j in range(C):
            lo = RegisteredMultiplier(a_shape=unsigned(LO), b_shape=unsigned(MULTIPLIER_BITS))
            hi = RegisteredMultiplier(a_shape=signed(ACC_BITS + 1 - LO),
                                      b_shape=unsigned(MULTIPLIER_BITS))
            m.submodules[f"mul_lo{j}"], m.submodules[f"mul_hi{j}"] = lo, hi
            m.d.comb += [lo.a.eq(sum2[j][:LO]), lo.b.eq(m2b),
                         hi.a.eq(sum2[j][LO:].as_signed()), hi.b.eq(m2b)]
            plo.append(lo.p)
            phi.append(hi.p)
        # Stage 3: their sum (= sum2 * M).
        v3, side3, relu3 = stage(v3a, side3a, relu3a, 3)
        sh3, exact3 = Signal.like(shift, reset_less=True), Signal(reset_less=True)
        m.d.sync += [sh3.eq(sh3a), exact3.eq(exact3a)]
        prod3 = [Signal(signed(ACC_BITS + MULTIPLIER_BITS + 2), name=f"prod3_{j}", reset_less=True) for j in range(C)]
        m.d.sync += [prod3[j].eq((phi[j] << LO) + plo[j]) for j in range(C)]
        # Stage 4: >> (s - 1) (arithmetic). (x + 2**(s-1)) >> s == ((x >> (s-1)) + 1) >> 1, so
        # the rounding constant needs no wide adder of its own: it becomes the 9-bit increment
        # and the shifted compares of stage 5.
        v4, side4, relu4 = stage(v3, side3, relu3, 4)
        exact4 = Signal(reset_less=True)
        m.d.sync += exact4.eq(exact3)
        y4 = [Signal(signed(ACC_BITS + MULTIPLIER_BITS + 2), name=f"y4_{j}", reset_less=True) for j in range(C)]
        m.d.sync += [y4[j].eq(prod3[j] >> sh3) for j in range(C)]
        # Stage 5: round (s > 0: q = (y + 1) >> 1) and the clamp's compares, all read off y
        # (q > 127 <=> y > 254; q < 0 <=> y < -1; q < -128 <=> y < -257); stage 6 selects. (The
        # 50-bit compares and the select in one cycle were a critical path on the ECP5.)
        v5, side5, relu5 = stage(v4, side4, relu4, 5)
        q5 = [Signal(signed(8), name=f"q5_{j}", reset_less=True) for j in range(C)]
        over5 = [Signal(name=f"over5_{j}", reset_less=True) for j in range(C)]
        under5 = [Signal(name=f"under5_{j}", reset_less=True) for j in range(C)]
        for j in range(C):
            y = y4[j]
            m.d.sync += [q5[j].eq(Mux(exact4, y[:8], (y[:9] + 1)[1:9])),
                         over5[j].eq(Mux(exact4, y > 127, y > 254)),
                         under5[j].eq(Mux(relu4, Mux(exact4, y < 0, y < -1),
                                          Mux(exact4, y < -128, y < -257)))]
        m.d.sync += [self.out_valid.eq(v5), self.out_side.eq(side5)]
        for j in range(C):
            m.d.sync += self.out_data[j].eq(Mux(over5[j], 127, Mux(under5[j], Mux(relu5, 0, -128), q5[j])))
        return m


#: Extra cycles the :class:`PoolStage` adds to a pooled layer's rows (non-pooled rows pass through).
POOL_LATENCY = 2

#: :attr:`PoolStage.op` values: keep the row's horizontal maxima for a later row (write nothing),
#: combine them with the kept ones (the pooled row), or pool the two column halves of a folded row.
POOL_STORE, POOL_COMBINE, POOL_FOLD = 0, 1, 2


class PoolStage(wiring.Component):
    """The optional 2x2 max-pool (stride 2) after requantization, one filter row a cycle.

    With :attr:`pool` low a row passes through unchanged in the same cycle. With :attr:`pool`
    high, lanes ``2i`` and ``2i + 1`` (two horizontally adjacent output pixels: tiles start at
    even x) are reduced to their maximum ``h[i]`` and, :data:`POOL_LATENCY` cycles later:

    - ``op == POOL_STORE``: ``h`` is kept in slot :attr:`addr` of a small row memory (``rows``
      slots of ``cols / 2`` bytes); the row is still emitted (its sideband says what to write,
      normally nothing);
    - ``op == POOL_COMBINE``: lanes ``0 .. cols/2 - 1`` carry ``max(h[i], kept[addr][i])``, the
      pooled row of the kept (upper) and this (lower) output row;
    - ``op == POOL_FOLD``: lanes ``0 .. cols/4 - 1`` carry ``max(h[i], h[i + cols/4])``: a folded
      row holds output row ``y`` in its lower column half and ``y + 1`` in its upper half.

    A combine may follow its store by a single cycle (the store is bypassed into the read).
    Every compare is 8 bits wide and registered.

    Members
    -------
    valid, data, side, pool, op, addr : In
        One requantized row (``cols`` int8), its sideband, whether the layer pools (used a
        cycle after it changes: it must hold still while rows flow and for the cycle before),
        the row's pool operation and kept-row slot.
    out_valid, out_data, out_side : Out
        The row (or its pooled lanes) and the sideband.
    """

    def __init__(self, *, cols: int, rows: int, side_bits: int):
        for name, v in (("cols", cols), ("rows", rows), ("side_bits", side_bits)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"PoolStage {name} must be a positive integer, not {v!r}")
        if cols < 2 or cols % 2:
            raise ValueError(f"PoolStage cols must be even, not {cols!r}")
        self._cols, self._rows, self._side = cols, rows, side_bits
        super().__init__({
            "valid": In(1), "data": In(data.ArrayLayout(signed(8), cols)), "side": In(side_bits),
            "pool": In(1), "op": In(2), "addr": In(range(max(2, rows))),
            "out_valid": Out(1), "out_data": Out(data.ArrayLayout(signed(8), cols)),
            "out_side": Out(side_bits),
        })

    def elaborate(self, platform):
        m = Module()
        C, H = self._cols, self._cols // 2

        def smax(a, b):
            # Compared as unsigned with the sign bits flipped: the carry chain's carry-out is
            # then the answer, with no signed-overflow LUT between it and the select.
            return Mux((a.as_unsigned() ^ 0x80) > (b.as_unsigned() ^ 0x80), a, b)

        # Stage A: horizontal maxima of lane pairs, and each lane's other operand for stage B:
        # the kept row's (combine; store: unused) or, for a fold, the upper column half's maximum.
        # A local copy of the layer's pool flag: the flag's register sits in the sequencer, and
        # the route from there into the output select below and on into the activation
        # buffer's write crossbar was the full engine's critical path (4 ns of it the flag's
        # route). The flag only changes between layers, when no row is in flight.
        pool = Signal()
        m.d.sync += pool.eq(self.pool)
        va, opa = Signal(), Signal(2)
        sidea = Signal(self._side)
        addra = Signal.like(self.addr)
        h = [Signal(signed(8), name=f"hmax{i}") for i in range(H)]
        other = [Signal(signed(8), name=f"other{i}") for i in range(H)]
        m.d.sync += [va.eq(self.valid & pool), opa.eq(self.op), sidea.eq(self.side),
                     addra.eq(self.addr)]
        m.d.sync += [h[i].eq(smax(self.data[2 * i], self.data[2 * i + 1])) for i in range(H)]
        kept = Memory(shape=data.ArrayLayout(signed(8), H), depth=max(2, self._rows), init=[])
        m.submodules.kept = kept
        wp = kept.write_port()
        m.d.comb += [wp.en.eq(va & (opa == POOL_STORE)), wp.addr.eq(addra)]
        for i in range(H):
            m.d.comb += wp.data[i].eq(h[i])
        # The kept row is read asynchronously (distributed RAM), with the store of this same
        # cycle bypassed in, and registered here: stage B's compares then start from registers
        # alone (a registered memory read followed by the compare in one cycle was the slowest
        # path of the output side), and a combine may still follow its store by one cycle.
        rp = kept.read_port(domain="comb")
        m.d.comb += rp.addr.eq(self.addr)
        bypass = wp.en & (addra == self.addr)
        for i in range(H):
            kept_i = Mux(bypass, wp.data[i], rp.data[i])
            if i < C // 4:
                j = i + C // 4
                fold_i = smax(self.data[2 * j], self.data[2 * j + 1])   # = h[i + C/4]
                m.d.sync += other[i].eq(Mux(self.op == POOL_FOLD, fold_i, kept_i))
            else:
                m.d.sync += other[i].eq(kept_i)
        # Stage B: the vertical (or folded) maximum; a fold's lanes from C/4 on are zero.
        vb = Signal()
        sideb = Signal(self._side)
        pooled = Signal(data.ArrayLayout(signed(8), C))
        m.d.sync += [vb.eq(va), sideb.eq(sidea)]
        for i in range(H):
            if i < C // 4:
                m.d.sync += pooled[i].eq(smax(h[i], other[i]))
            else:
                m.d.sync += pooled[i].eq(Mux(opa == POOL_FOLD, 0, smax(h[i], other[i])))
        for i in range(H, C):
            m.d.sync += pooled[i].eq(0)
        with m.If(pool):
            m.d.comb += [self.out_valid.eq(vb), self.out_data.eq(pooled), self.out_side.eq(sideb)]
        with m.Else():
            m.d.comb += [self.out_valid.eq(self.valid), self.out_data.eq(self.data),
                         self.out_side.eq(self.side)]
        return m
