"""A multiplier with registered operands and a registered product (latency 2).

The engine's multipliers (the MAC array's int8 products, the output path's requantization) sit
between registers on both sides. In the fabric that is three register sets around a ``*``;
Yosys's ``synth_xilinx`` packs them into the DSP48E1's own registers, but ``synth_ecp5`` maps
``*`` to a purely combinational MULT18X18D, so on the ECP5 the route from the operand registers
into the DSP row and the route back out to the product register were one timing path with the
multiplier between them (the full engine's critical path: 2.9 ns + 3.9 ns + 2.9 ns). On an ECP5
platform this component instantiates the MULT18X18D with its input and output registers
enabled, which splits that path in three.
"""

from __future__ import annotations

from amaranth import ClockSignal, Instance, Module, Signal, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredMultiplier", "LATENCY", "uses_mult18x18d"]

#: Cycles from ``a``/``b`` to ``p``.
LATENCY = 2


def uses_mult18x18d(platform) -> bool:
    """Whether :class:`RegisteredMultiplier` instantiates the ECP5's MULT18X18D on ``platform``."""
    return getattr(platform, "family", None) == "ecp5"


class RegisteredMultiplier(wiring.Component):
    """``p = a * b``, ``a`` and ``b`` registered on the way in and the product on the way out.

    Parameters (keyword-only)
    -------------------------
    a_shape, b_shape : Shape
        Operand shapes; signed or unsigned, each fitting an 18-bit signed operand (at most 18
        bits signed or 17 bits unsigned), the ECP5 multiplier's.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    p : Out(shape)
        ``a * b`` of the operands presented :data:`LATENCY` cycles earlier; signed unless both
        operands are unsigned, ``a_shape.width + b_shape.width`` bits.

    The registers are reset-less (data only).
    """

    def __init__(self, *, a_shape, b_shape):
        shapes = []
        for name, shape in (("a_shape", a_shape), ("b_shape", b_shape)):
            try:
                shape = Shape.cast(shape)
            except TypeError as e:
                raise TypeError(f"RegisteredMultiplier {name} must be a shape, not {shape!r}") from e
            limit = 18 if shape.signed else 17
            if not 1 <= shape.width <= limit:
                raise ValueError(f"RegisteredMultiplier {name} must be 1..{limit} bits "
                                 f"{'signed' if shape.signed else 'unsigned'} (an 18-bit signed "
                                 f"multiplier operand), not {shape.width}")
            shapes.append(shape)
        self._a_shape, self._b_shape = shapes
        width = self._a_shape.width + self._b_shape.width
        any_signed = self._a_shape.signed or self._b_shape.signed
        super().__init__({
            "a": In(self._a_shape), "b": In(self._b_shape),
            "p": Out(signed(width) if any_signed else unsigned(width)),
        })

    @property
    def a_shape(self) -> Shape:
        return self._a_shape

    @property
    def b_shape(self) -> Shape:
        return self._b_shape

    def elaborate(self, platform):
        m = Module()
        if not uses_mult18x18d(platform):
            a_q = Signal(self._a_shape, reset_less=True)
            b_q = Signal(self._b_shape, reset_less=True)
            m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), self.p.eq(a_q * b_q)]
            return m

        # Both operands as 18-bit signed (sign- or zero-extended): the product is exact and its
        # low a + b bits are p.
        a18, b18, p36 = Signal(signed(18)), Signal(signed(18)), Signal(signed(36))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36)]
        ports = {f"i_A{i}": a18[i] for i in range(18)}
        ports.update({f"i_B{i}": b18[i] for i in range(18)})
        ports.update({f"i_C{i}": 0 for i in range(18)})
        ports.update({f"o_P{i}": p36[i] for i in range(36)})
        regs = {}
        for reg in ("INPUTA", "INPUTB", "OUTPUT"):
            regs.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0",
                         f"p_REG_{reg}_RST": "RST0"})
        m.submodules.dsp = Instance(
            "MULT18X18D", **regs,
            # SOURCEB_MODE stays at its default (B_SHIFT, as in Yosys's own mapping): with SOURCEB
            # low the B pins are the operand. "B_INPUT" is not a mode prjtrellis knows (ecppack
            # aborted on it).
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE", p_GSR="DISABLED",
            p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
            i_CLK0=ClockSignal("sync"), i_CE0=1, i_RST0=0,
            i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0, **ports)
        return m
