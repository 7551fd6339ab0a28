"""The output path: per-channel bias, requantization, ReLU and int8 clamp of one filter row a cycle.

It takes one drained row of the array (C int32 accumulators of one output channel) per cycle and
computes, exactly as :func:`hw.quant.requantize`::

    y = clamp(((acc + bias) * M + 2**(s - 1)) >> s, lo, 127)      lo = 0 if relu else -128

with every intermediate wide enough never to wrap (``acc + bias`` in 33 bits, the product in 50,
the rounded sum in 51). Each operation has its own register stage (param read, add, multiply,
round, shift, clamp) so that no wide adder follows a multiplier in the same cycle. The channel's
bias, ``M`` and ``s`` live in two small memories written through the load port (BIAS, REQUANT).
A sideband (the write address and lane mask) travels alongside unchanged.
"""

from amaranth import Module, Signal, Const, Mux, signed, unsigned
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.quant import ACC_BITS, MULTIPLIER_BITS, SHIFT_MAX

__all__ = ["OutputPath", "OUTPUT_LATENCY"]

#: Cycles from :attr:`OutputPath.valid` to :attr:`OutputPath.out_valid`.
OUTPUT_LATENCY = 6


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
        bias_mem = Memory(shape=signed(32), depth=self._depth, init=[])
        rq_mem = Memory(shape=unsigned(MULTIPLIER_BITS + 6), depth=self._depth, init=[])
        m.submodules.bias_mem, m.submodules.rq_mem = bias_mem, rq_mem
        for mem, we, addr, d in ((bias_mem, self.bias_we, self.bias_addr, self.bias_data),
                                 (rq_mem, self.rq_we, self.rq_addr, self.rq_data)):
            wp = mem.write_port()
            m.d.comb += [wp.en.eq(we), wp.addr.eq(addr), wp.data.eq(d)]
        bias_rp, rq_rp = bias_mem.read_port(), rq_mem.read_port()
        m.d.comb += [bias_rp.addr.eq(self.channel), rq_rp.addr.eq(self.channel)]

        def stage(prev_valid, prev_side, prev_relu, n):
            v, s, r = Signal(name=f"v{n}"), Signal(self._side, name=f"side{n}"), Signal(name=f"relu{n}")
            m.d.sync += [v.eq(prev_valid), s.eq(prev_side), r.eq(prev_relu)]
            return v, s, r

        # Stage 1: parameters arrive from memory.
        v1, side1, relu1 = stage(self.valid, self.side, self.relu, 1)
        acc1 = [Signal(signed(ACC_BITS), name=f"acc1_{j}") for j in range(C)]
        m.d.sync += [acc1[j].eq(self.acc[j]) for j in range(C)]
        mult = Signal(unsigned(MULTIPLIER_BITS))
        shift = Signal(range(SHIFT_MAX + 1))
        m.d.comb += [mult.eq(rq_rp.data[:MULTIPLIER_BITS]), shift.eq(rq_rp.data[MULTIPLIER_BITS:])]
        # Stage 2: + bias.
        v2, side2, relu2 = stage(v1, side1, relu1, 2)
        m2, s2 = Signal.like(mult), Signal.like(shift)
        m.d.sync += [m2.eq(mult), s2.eq(shift)]
        sum2 = [Signal(signed(ACC_BITS + 1), name=f"sum2_{j}") for j in range(C)]
        m.d.sync += [sum2[j].eq(acc1[j] + bias_rp.data) for j in range(C)]
        # Stage 3: * M.
        v3, side3, relu3 = stage(v2, side2, relu2, 3)
        s3 = Signal.like(shift)
        rnd3 = Signal(signed(ACC_BITS + MULTIPLIER_BITS + 3))
        m.d.sync += [s3.eq(s2), rnd3.eq(Const(1, 1) << (s2 - 1)[:6])]
        prod3 = [Signal(signed(ACC_BITS + MULTIPLIER_BITS + 2), name=f"prod3_{j}") for j in range(C)]
        m.d.sync += [prod3[j].eq(sum2[j] * m2) for j in range(C)]
        # Stage 4: + 2**(s-1).
        v4, side4, relu4 = stage(v3, side3, relu3, 4)
        s4 = Signal.like(shift)
        m.d.sync += s4.eq(s3)
        t4 = [Signal(signed(ACC_BITS + MULTIPLIER_BITS + 3), name=f"t4_{j}") for j in range(C)]
        m.d.sync += [t4[j].eq(prod3[j] + rnd3) for j in range(C)]
        # Stage 5: >> s (arithmetic).
        v5, side5, relu5 = stage(v4, side4, relu4, 5)
        q5 = [Signal(signed(ACC_BITS + MULTIPLIER_BITS + 3), name=f"q5_{j}") for j in range(C)]
        m.d.sync += [q5[j].eq(t4[j] >> s4) for j in range(C)]
        # Stage 6: clamp to lo..127.
        m.d.sync += [self.out_valid.eq(v5), self.out_side.eq(side5)]
        for j in range(C):
            lo = Mux(relu5, 0, -128)
            m.d.sync += self.out_data[j].eq(Mux(q5[j] > 127, 127, Mux(q5[j] < lo, lo, q5[j])))
        return m
