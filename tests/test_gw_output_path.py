"""amaranth.sim tests of gateware.output_path against hw.quant.requantize: rounding ties,
saturation, negative accumulators, extreme multipliers and shifts, ReLU."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st, HealthCheck

from gateware.output_path import OutputPath, OUTPUT_LATENCY
from hw.quant import requantize, ACC_BITS

COLS = 4
LO, HI = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1


def run_rows(rows):
    """rows: list of (acc[COLS], bias, M, s, relu). Returns the int8 outputs per row."""
    dut = OutputPath(cols=COLS, param_depth=len(rows), side_bits=8)
    got = []

    async def tb(ctx):
        for ch, (_, bias, m, s, _) in enumerate(rows):
            ctx.set(dut.bias_we, 1)
            ctx.set(dut.bias_addr, ch)
            ctx.set(dut.bias_data, int(bias) & 0xFFFF_FFFF)
            ctx.set(dut.rq_we, 1)
            ctx.set(dut.rq_addr, ch)
            ctx.set(dut.rq_data, int(m) | int(s) << 16)
            await ctx.tick()
        ctx.set(dut.bias_we, 0)
        ctx.set(dut.rq_we, 0)
        for ch, row in enumerate(rows + [None] * OUTPUT_LATENCY):
            if row is None:
                ctx.set(dut.valid, 0)
            else:
                acc, _, _, _, relu = row
                ctx.set(dut.valid, 1)
                ctx.set(dut.channel, ch)
                ctx.set(dut.relu, relu)
                ctx.set(dut.side, ch)
                for j in range(COLS):
                    ctx.set(dut.acc[j], int(acc[j]))
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append((ctx.get(dut.out_side), [ctx.get(dut.out_data[j]) for j in range(COLS)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


def reference(rows):
    return [(ch, [int(v) for v in requantize(np.asarray(acc, np.int64) + bias, m, s, relu=relu)])
            for ch, (acc, bias, m, s, relu) in enumerate(rows)]


def test_hand_worked_edges():
    rows = [
        # ties: (acc * M) / 2**s = k + 0.5 rounds up (towards +inf), also for negatives
        ([1, -1, 3, -3], 0, 1, 1, False),              # 0.5 -> 1, -0.5 -> 0, 1.5 -> 2, -1.5 -> -1
        ([5, -5, 2, -2], 0, 1, 2, False),              # 1.25 -> 1, -1.25 -> -1, 0.5 -> 1, -0.5 -> 0
        ([1000, -1000, 127, -129], 0, 1, 1, False),     # saturation at 127 / -128
        ([-7, 7, 0, -1], 0, 65535, 16, True),          # ReLU clamps negatives at 0
        ([HI, LO, HI, LO], 0, 65535, 47, False),       # widest product, largest shift: (2^47 - 2^31 - 2^16 + 1 + 2^46) >> 47 = 1
        ([100, -100, 0, 1], -50, 3, 3, False),         # bias added before scaling
    ]
    want = [[1, 0, 2, -1], [1, -1, 1, 0], [127, -128, 64, -64], [0, 7, 0, 0],
            [1, -1, 1, -1], [19, -56, -19, -18]]
    assert [g[1] for g in run_rows(rows)] == want
    assert run_rows(rows) == reference(rows)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_random_against_hw_quant(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(6):
        bias = int(rng.integers(-2**20, 2**20))
        acc = rng.integers(max(LO, LO - bias), min(HI, HI - bias) + 1, size=COLS)
        rows.append((acc, bias, int(rng.integers(1, 65536)), int(rng.integers(1, 48)),
                     bool(rng.integers(2))))
    assert run_rows(rows) == reference(rows), f"seed {seed}"


def test_pool_stage_against_numpy():
    """PoolStage: store / combine (also back to back, R = 2 style) / fold vs numpy, and the
    same-cycle pass-through of non-pooled rows."""
    from gateware.output_path import PoolStage, POOL_LATENCY, POOL_STORE, POOL_COMBINE, POOL_FOLD
    C, R = 8, 4
    rng = np.random.default_rng(3)
    dut = PoolStage(cols=C, rows=R, side_bits=8)
    # (pool, op, addr, data): pairs stored then combined in the same slots, one combine right
    # after its store, folds, and pass-through rows.
    rows = []
    for slot in (3, 2, 1, 0):
        rows.append((1, POOL_STORE, slot, rng.integers(-128, 128, C)))
    for slot in (3, 2, 1, 0):
        rows.append((1, POOL_COMBINE, slot, rng.integers(-128, 128, C)))
    rows.append((1, POOL_STORE, 1, rng.integers(-128, 128, C)))
    rows.append((1, POOL_COMBINE, 1, rng.integers(-128, 128, C)))
    rows.append((1, POOL_FOLD, 0, rng.integers(-128, 128, C)))
    rows.append((1, POOL_FOLD, 2, np.full(C, -128)))
    kept, want = {}, []
    for i, (_, op, slot, d) in enumerate(rows):
        h = np.maximum(d[0::2], d[1::2])
        if op == POOL_STORE:
            kept[slot] = h
            want.append((i, None))
        elif op == POOL_COMBINE:
            want.append((i, list(np.maximum(h, kept[slot])) + [0] * (C // 2)))
        else:
            want.append((i, list(np.maximum(h[:C // 4], h[C // 4:])) + [0] * (3 * C // 4)))
    got = []

    async def tb(ctx):
        ctx.set(dut.pool, 1)
        await ctx.tick()              # the layer's flag is set the cycle before its rows
        for i, row in enumerate(rows + [None] * POOL_LATENCY):
            ctx.set(dut.valid, row is not None)
            if row is not None:
                _, op, slot, d = row
                ctx.set(dut.op, op)
                ctx.set(dut.addr, slot)
                ctx.set(dut.side, i)
                for j in range(C):
                    ctx.set(dut.data[j], int(d[j]))
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append((ctx.get(dut.out_side), [ctx.get(dut.out_data[j]) for j in range(C)]))
        # Not pooled: the row passes through in the same cycle.
        ctx.set(dut.pool, 0)
        ctx.set(dut.valid, 0)
        await ctx.tick()
        ctx.set(dut.valid, 1)
        ctx.set(dut.side, 99)
        for j in range(C):
            ctx.set(dut.data[j], j - 4)
        assert ctx.get(dut.out_valid) and ctx.get(dut.out_side) == 99
        assert [ctx.get(dut.out_data[j]) for j in range(C)] == [j - 4 for j in range(C)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert [g[0] for g in got] == list(range(len(rows)))
    for (i, w), (_, g) in zip(want, got):
        if w is not None:
            assert g == [int(v) for v in w], f"row {i}"


def test_latency_matches_cycle_model():
    # hw.layout's exact cycle model counts the read stages', the array's and the output path's
    # pipeline stages.
    from hw.cycles import READ_CYCLES, OUTPUT_PATH_CYCLES, ISSUE_CYCLES, WRITEBACK_CYCLES, drain_cycles
    from gateware.core import WRITEBACK_LATENCY
    from gateware.act_buffer import READ_LATENCY
    from gateware.systolic_array import ARRAY_LATENCY
    from gateware.sequencer import ISSUE_LATENCY
    assert OUTPUT_PATH_CYCLES == OUTPUT_LATENCY
    assert READ_CYCLES == READ_LATENCY
    assert ISSUE_CYCLES == ISSUE_LATENCY - 1
    assert WRITEBACK_CYCLES == WRITEBACK_LATENCY
    for R, C in ((4, 4), (8, 8), (8, 2)):
        # The step's registers before the issue register, then the read stages from it.
        assert drain_cycles(R, C) == (ISSUE_LATENCY - 1) + READ_LATENCY + ARRAY_LATENCY(R, C) \
            + R + OUTPUT_LATENCY + WRITEBACK_LATENCY
