"""amaranth.sim tests of gateware.index_buffer: circular slot walk and window reads."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.index_buffer import IndexBuffer


@pytest.mark.parametrize("seed", range(4))
def test_wraps_within_window(seed):
    rng = np.random.default_rng(seed)
    depth, p_max = 32, 16
    table = rng.integers(1, 512, size=depth)
    base, period = int(rng.integers(0, depth - p_max)), int(rng.integers(1, p_max + 1))
    start = int(rng.integers(0, period))
    moves = rng.integers(0, 2, size=60)
    dut = IndexBuffer(table_depth=depth, p_max=p_max)
    seen = []

    async def tb(ctx):
        for a, v in enumerate(table):
            ctx.set(dut.we, 1)
            ctx.set(dut.waddr, a)
            ctx.set(dut.wdata, int(v))
            await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.base, base)
        ctx.set(dut.period, period)
        ctx.set(dut.restart, 1)
        ctx.set(dut.start_slot, start)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for mv in moves:
            ctx.set(dut.advance, int(mv))
            seen.append((ctx.get(dut.slot), ctx.get(dut.mask), ctx.get(dut.next_mask)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    slot = start
    for (s, mask, nxt), mv in zip(seen, moves):
        assert 0 <= s < period, f"seed {seed}: slot {s} left the window of {period}"
        assert s == slot, f"seed {seed}"
        assert mask == table[base + slot] and nxt == table[base + (slot + 1) % period], f"seed {seed}"
        slot = (slot + mv) % period


def test_rejects_p_max_beyond_depth():
    with pytest.raises(ValueError, match=r"p_max \(9\) must not exceed table_depth \(8\)"):
        IndexBuffer(table_depth=8, p_max=9)
