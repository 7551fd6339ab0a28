"""gateware.multiplier: exact products two cycles after the operands (fabric), the ECP5
MULT18X18D instance with its registers (structure), and refusals."""

import re

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from gateware.multiplier import LATENCY, RegisteredMultiplier, uses_mult18x18d

SHAPES = [(signed(8), signed(8)), (unsigned(17), unsigned(16)), (signed(16), unsigned(16)),
          (signed(18), signed(18)), (unsigned(1), signed(3))]


def _range(shape):
    return (-(1 << shape.width - 1), (1 << shape.width - 1) - 1) if shape.signed else (0, (1 << shape.width) - 1)


@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_products_exact_after_latency(a_shape, b_shape):
    seed = 11
    rng = np.random.default_rng(seed)
    dut = RegisteredMultiplier(a_shape=a_shape, b_shape=b_shape)
    lo_a, hi_a = _range(a_shape)
    lo_b, hi_b = _range(b_shape)
    # The extremes first, then random pairs.
    pairs = [(a, b) for a in (lo_a, hi_a, 0) for b in (lo_b, hi_b, 0)]
    pairs += [(int(rng.integers(lo_a, hi_a + 1)), int(rng.integers(lo_b, hi_b + 1))) for _ in range(200)]

    async def tb(ctx):
        seen = []
        for t in range(len(pairs) + LATENCY):
            if t < len(pairs):
                ctx.set(dut.a, pairs[t][0])
                ctx.set(dut.b, pairs[t][1])
            await ctx.tick()
            if t + 1 >= LATENCY:
                seen.append(ctx.get(dut.p))
        for k, (a, b) in enumerate(pairs):
            assert seen[k] == a * b, f"seed {seed}: {a} * {b} gave {seen[k]}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


class _ECP5:
    family = "ecp5"


def test_ecp5_instance_uses_the_dsp_registers():
    assert uses_mult18x18d(_ECP5()) and not uses_mult18x18d(None)
    dut = RegisteredMultiplier(a_shape=signed(16), b_shape=unsigned(16))
    text = rtlil.convert(dut, platform=_ECP5())
    cell = re.search(r"cell \\MULT18X18D \\dsp\n(.*?)\n  end", text, re.S)
    assert cell, "no MULT18X18D instance"
    body = cell.group(1)
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        assert re.search(rf'parameter \\REG_{reg}_CLK "CLK0"', body), reg
    for reg in ("PIPELINE", "INPUTC"):
        assert re.search(rf'parameter \\REG_{reg}_CLK "NONE"', body), reg
    # The bitstream tools know SOURCEB_MODE B_SHIFT (the default) and not "B_INPUT".
    assert "SOURCEB_MODE" not in body and re.search(r"connect \\SOURCEB 1'0", body)
    assert re.search(r"connect \\SIGNEDA 1'1", body) and re.search(r"connect \\SIGNEDB 1'1", body)
    assert re.search(r"connect \\CE0 1'1", body) and re.search(r"connect \\RST0 1'0", body)
    for i in range(18):
        assert f"connect \\A{i} " in body and f"connect \\B{i} " in body
    for i in range(36):
        assert f"connect \\P{i} " in body
    # No fabric multiplier next to the DSP.
    assert "$mul" not in text


@pytest.mark.parametrize("kw,message", [
    (dict(a_shape=signed(19), b_shape=signed(8)), "a_shape must be 1..18 bits signed"),
    (dict(a_shape=signed(8), b_shape=unsigned(18)), "b_shape must be 1..17 bits unsigned"),
    (dict(a_shape="x", b_shape=signed(8)), "a_shape must be a shape"),
])
def test_refuses_operands_wider_than_the_dsp(kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RegisteredMultiplier(**kw)
