"""amaranth.sim tests of gateware.index_buffer: circular slot walk, class moves and window reads."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.index_buffer import IndexBuffer


def _lowest(mask):
    """Hand reference: index of the lowest set bit (0 when none) and the mask without it."""
    for t in range(9):
        if mask >> t & 1:
            return t, mask & ~(1 << t)
    return 0, 0


@pytest.mark.parametrize("seed", range(6))
def test_walk_wraps_within_window(seed):
    """Random restarts, advances and class moves; every output is the table entry of the slot
    a plain modular walk says it should be."""
    rng = np.random.default_rng(seed)
    depth, p_max = 32, 16
    table = rng.integers(0, 512, size=depth)
    base, period = int(rng.integers(0, depth - p_max)), int(rng.integers(1, p_max + 1))
    dut = IndexBuffer(table_depth=depth, p_max=p_max)
    seen = []
    ops = []

    async def tb(ctx):
        for a, v in enumerate(table):
            ctx.set(dut.we, 1)
            ctx.set(dut.waddr, a)
            ctx.set(dut.wdata, int(v))
            await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.base, base)
        ctx.set(dut.period, period)
        await ctx.tick()          # base and period hold still from the cycle before start
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick()
        cls = 0
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for _ in range(80):
            op = int(rng.integers(0, 7))
            if op == 6 and cls + 2 >= period:
                op = 5
            if op == 5 and cls + 1 >= period:
                op = 0
            ops.append(op)
            ctx.set(dut.advance, int(op in (1, 2, 3)))
            ctx.set(dut.restart, int(op == 4))
            ctx.set(dut.next_class, int(op in (5, 6)))
            seen.append({n: ctx.get(getattr(dut, n)) for n in
                         ("slot", "mask", "next_mask", "first_tap", "rest", "next_first_tap",
                          "next_rest")})
            await ctx.tick()
            if op in (5, 6):
                cls += 1
                ctx.set(dut.advance, 0)
                if op == 6:
                    # Back-to-back class moves (empty classes in the sequencer).
                    await ctx.tick()
                    cls += 1
                # A class move is followed by a restart at the new class (as in the sequencer).
                ctx.set(dut.next_class, 0)
                ctx.set(dut.advance, 0)
                ctx.set(dut.restart, 1)
                await ctx.tick()
                ctx.set(dut.restart, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    cls, slot = 0, 0
    for i, (got, op) in enumerate(zip(seen, ops)):
        where = f"seed {seed}, step {i}, base {base}, period {period}"
        assert got["slot"] == slot, where
        cur, nxt = int(table[base + slot]), int(table[base + (slot + 1) % period])
        assert got["mask"] == cur and got["next_mask"] == nxt, where
        assert (got["first_tap"], got["rest"]) == _lowest(cur), where
        assert (got["next_first_tap"], got["next_rest"]) == _lowest(nxt), where
        if op in (1, 2, 3):
            slot = (slot + 1) % period
        elif op == 4:
            slot = cls
        elif op in (5, 6):
            cls += 1 + (op == 6)
            slot = cls


def test_rejects_p_max_beyond_depth():
    with pytest.raises(ValueError, match=r"p_max \(9\) must not exceed table_depth \(8\)"):
        IndexBuffer(table_depth=8, p_max=9)


@pytest.mark.parametrize("name,value", [("table_depth", 0), ("p_max", True), ("p_max", 2.0)])
def test_rejects_bad_sizes(name, value):
    kwargs = {"table_depth": 8, "p_max": 4, name: value}
    with pytest.raises(ValueError, match=f"IndexBuffer {name} must be a positive integer"):
        IndexBuffer(**kwargs)
