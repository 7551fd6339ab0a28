"""cocotb testbench of the engine core (``gateware.core.Core``, Verilog top ``top``).

The cases come from a ``.npz`` file named by ``CORE_CASES`` (written by :mod:`sim_tests.corecases`):
for case ``i``, ``words_i`` (``[n, 3]`` space, addr, data: the model image then the INPUT frame),
optional ``expect_i`` (int8 result bytes), ``cycles_i`` and ``macs_i`` (expected counters, -1 to
skip) and ``name_i``. Every case is loaded, started and read back with random valid/ready
back-pressure (``CORE_VALID_P``, ``CORE_READY_P``, seeded by ``CORE_SEED``); payload stability
of the result stream is checked on every stalled cycle, and the tile-tag FIFO (the sequencer's
tags are an always-ready stream) is checked never to be written while full. Results (bytes,
counters, wall time) go to the JSON file ``CORE_RESULTS``; any mismatch fails the test, naming
the case and seed.
"""

import json
import os
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, ClockCycles
from cocotb.utils import get_sim_time

COUNTER_NAMES = ("cycles", "busy", "stalls", "macs")


def _payload(space, addr, data):
    return int(space) | int(addr) << 4 | int(data) << 22


async def _load(dut, words, rng, valid_p):
    i = 0
    while i < len(words):
        await FallingEdge(dut.clk)
        on = rng.random() < valid_p
        dut.load__valid.value = int(on)
        dut.load__payload.value = _payload(*words[i])
        await RisingEdge(dut.clk)
        if on and int(dut.load__ready.value):
            i += 1
    await FallingEdge(dut.clk)
    dut.load__valid.value = 0


async def _run(dut, rng, ready_p, timeout):
    dut.result__ready.value = 0
    await FallingEdge(dut.clk)
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    t0 = time.perf_counter()
    if not int(dut.result__valid.value):
        await First(RisingEdge(dut.result__valid), RisingEdge(dut.fault))
    # Every case is a layout build_layout wrote, which never leaves its memories.
    assert not int(dut.fault.value), "the address guard stopped the frame (fault)"
    t_compute = time.perf_counter() - t0
    out, held = [], None
    for _ in range(timeout):
        await FallingEdge(dut.clk)
        valid = int(dut.result__valid.value)
        p = int(dut.result__payload.value)
        beat = (p & 0xFF, p >> 8 & 1)
        if held is not None:
            assert valid and beat == held, f"result beat {held} changed to {beat} (valid {valid}) while not ready"
        rdy = rng.random() < ready_p
        dut.result__ready.value = int(rdy)
        held = beat if valid and not rdy else None
        if valid and rdy:
            out.append(beat[0] - 256 if beat[0] > 127 else beat[0])
            if beat[1]:
                break
    else:
        raise AssertionError(f"no last result byte within {timeout} cycles")
    await FallingEdge(dut.clk)
    dut.result__ready.value = 0
    await ClockCycles(dut.clk, 2)
    assert not int(dut.busy.value), "still busy after the last result byte"
    assert not int(dut.fault.value), "the address guard raised fault during the readout"
    c = int(dut.counters.value)
    counters = {n: c >> (32 * i) & 0xFFFF_FFFF for i, n in enumerate(COUNTER_NAMES)}
    return out, counters, t_compute


async def _watch_tag_fifo(dut, errors):
    """Record the first cycle on which the sequencer pushes a tile tag into a full FIFO (the
    tag would be lost: its stream is always ready). Woken only while the FIFO is full."""
    fifo = dut.tags
    while True:
        await FallingEdge(fifo.w_rdy)
        while True:
            await FallingEdge(dut.clk)
            if int(fifo.w_rdy.value):
                break
            if int(fifo.w_en.value):
                errors.append(f"a tile tag was pushed into the full tag FIFO at "
                              f"{get_sim_time(unit='ns')} ns")
                return              # (the first one says it; the results are wrong from here)


@cocotb.test()
async def run_cases(dut):
    seed = int(os.environ.get("CORE_SEED", "0"))
    valid_p = float(os.environ.get("CORE_VALID_P", "1.0"))
    ready_p = float(os.environ.get("CORE_READY_P", "1.0"))
    rng = np.random.default_rng(seed)
    z = np.load(os.environ["CORE_CASES"])
    n_cases = int(z["n_cases"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.load__valid.value = 0
    dut.result__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    results, failures = [], []
    cocotb.start_soon(_watch_tag_fifo(dut, failures))
    for i in range(n_cases):
        name = str(z[f"name_{i}"])
        await _load(dut, z[f"words_{i}"], rng, valid_p)
        out, counters, t_compute = await _run(dut, rng, ready_p, timeout=10**6)
        res = {"case": name, "out": out, "counters": counters, "compute_wall_s": t_compute}
        if f"expect_{i}" in z:
            want = [int(v) for v in z[f"expect_{i}"]]
            res["bit_exact"] = out == want
            if out != want:
                bad = [k for k, (a, b) in enumerate(zip(out, want)) if a != b][:8]
                failures.append(f"{name}: {len(out)} bytes vs {len(want)} expected; first differences at {bad}")
            for key in ("cycles", "macs"):
                exp = int(z[f"{key}_{i}"])
                if exp >= 0 and counters[key] != exp:
                    failures.append(f"{name}: counter {key} = {counters[key]}, expected {exp}")
        results.append(res)
    path = os.environ.get("CORE_RESULTS")
    if path:
        with open(path, "w") as f:
            json.dump(results, f)
    if os.environ.get("CORE_STRICT", "1") != "0":
        assert not failures, f"seed {seed}: " + "; ".join(failures)
