"""amaranth.sim tests of gateware.systolic_array: skewed injection, accumulate, drain order."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.systolic_array import SystolicArray, ARRAY_LATENCY


def run_tiles(rows, cols, tiles, gaps=None):
    """Feed tiles (W [L, R], A [L, C]) back to back (optional idle cycles before each); collect
    (cycle, first, row data) of every drained row."""
    dut = SystolicArray(rows=rows, cols=cols)
    got = []
    gaps = gaps or [0] * len(tiles)

    async def tb(ctx):
        cyc = 0

        async def tick():
            nonlocal cyc
            await ctx.tick()
            cyc += 1
            if ctx.get(dut.out_valid):
                got.append((cyc, ctx.get(dut.out_first), [ctx.get(dut.out_data[j]) for j in range(cols)]))

        for (W, A), gap in zip(tiles, gaps):
            ctx.set(dut.valid, 0)
            for _ in range(gap):
                await tick()
            for k in range(len(W)):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, k == 0)
                ctx.set(dut.last, k == len(W) - 1)
                for i in range(rows):
                    ctx.set(dut.w[i], int(W[k, i]))
                for j in range(cols):
                    ctx.set(dut.a[j], int(A[k, j]))
                await tick()
        ctx.set(dut.valid, 0)
        for _ in range(3 * (rows + cols) + 10):
            await tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("rows,cols,seed", [(4, 4, 0), (8, 8, 1), (2, 8, 2), (8, 2, 3), (1, 2, 4)])
def test_matches_matmul(rows, cols, seed):
    rng = np.random.default_rng(seed)
    tiles = [(rng.integers(-128, 128, (L, rows)), rng.integers(-128, 128, (L, cols)))
             for L in rng.integers(rows, rows + 12, size=5)]
    gaps = [int(g) for g in rng.integers(0, 4, size=5)]
    got = run_tiles(rows, cols, tiles, gaps)
    want = []
    for W, A in tiles:
        acc = W.T.astype(np.int64) @ A.astype(np.int64)     # [R, C]
        want += [list(acc[i]) for i in reversed(range(rows))]
    assert [g[2] for g in got] == want, f"seed {seed}"
    assert [g[1] for g in got] == ([1] + [0] * (rows - 1)) * len(tiles), f"seed {seed}"


def test_extremes_and_latency():
    # -128 * -128 summed 300 times: the 32-bit accumulator must not wrap.
    R, C, L = 2, 2, 300
    W = np.full((L, R), -128)
    A = np.full((L, C), -128)
    got = run_tiles(R, C, [(W, A)])
    assert [g[2] for g in got] == [[L * 16384] * C] * R
    # The first row is visible ARRAY_LATENCY cycles after the cycle the last step was presented.
    assert got[0][0] == (L - 1) + ARRAY_LATENCY(R, C)


def test_rejects_bad_size():
    with pytest.raises(ValueError, match="rows must be a positive integer, not 0"):
        SystolicArray(rows=0, cols=2)
