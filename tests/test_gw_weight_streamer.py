"""amaranth.sim tests of gateware.weight_streamer: load-word packing and in-order replay."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.weight_streamer import READ_LATENCY, WeightStreamer


@pytest.mark.parametrize("rows,depth,segment", [(1, 16, 2048), (2, 16, 2048), (4, 16, 2048),
                                               (8, 16, 2048), (16, 16, 2048), (8, 13, 4), (4, 9, 8),
                                               (2, 16, 1)])
def test_replays_entries(rows, depth, segment):
    """Entries replayed in any order (segments of ``segment`` entries, the last one partial)."""
    rng = np.random.default_rng(rows + depth)
    entries = rng.integers(-128, 128, size=(depth, rows)).astype(np.int8)
    wpe = max(1, rows // 4)
    padded = np.zeros((depth, 4 * wpe), np.uint8)
    padded[:, :rows] = entries.view(np.uint8)
    words = padded.reshape(-1).view("<u4")           # the layout hw.layout writes
    order = list(range(depth)) + list(range(3, 9)) * 2 + [int(e) for e in rng.integers(0, depth, 20)]
    dut = WeightStreamer(rows=rows, depth=depth, segment_depth=segment)
    got = []

    async def tb(ctx):
        for a, w in enumerate(words):
            ctx.set(dut.we, 1)
            ctx.set(dut.waddr, a)
            ctx.set(dut.wdata, int(w))
            await ctx.tick()
        ctx.set(dut.we, 0)
        for t in range(len(order) + READ_LATENCY - 1):
            if t < len(order):
                ctx.set(dut.addr, order[t])
            await ctx.tick()
            if t + 1 >= READ_LATENCY:
                got.append([ctx.get(dut.w[i]) for i in range(rows)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == [list(entries[e]) for e in order]


def test_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="rows must be a power of two, not 3"):
        WeightStreamer(rows=3, depth=4)
    with pytest.raises(ValueError, match="segment_depth must be a power of two, not 3"):
        WeightStreamer(rows=4, depth=4, segment_depth=3)
