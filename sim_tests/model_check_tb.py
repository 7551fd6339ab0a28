"""cocotb testbench of the engine core's model check (``model_ok``) in the generated Verilog.

The ``.npz`` file named by ``MODEL_CHECK_CASES`` holds ``n_cases`` descriptor sections
(``words_i``) and the verdict of ``hw.descriptors.check_descriptors`` on each (``ok_i``). Each
section is written through the load port after an ``unload`` pulse, with random gaps in
``load.valid`` (``MODEL_CHECK_SEED``); ``model_ok`` is read ``MODEL_CHECK_LATENCY`` cycles after
the last word and must equal the verdict.
"""

import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from gateware.interfaces import MODEL_CHECK_LATENCY
from hw.memory_map import ADDR_BITS, SPACE_BITS, Space


@cocotb.test()
async def model_check(dut):
    seed = int(os.environ.get("MODEL_CHECK_SEED", "0"))
    rng = np.random.default_rng(seed)
    z = np.load(os.environ["MODEL_CHECK_CASES"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for port in (dut.start, dut.abort, dut.unload, dut.load__valid, dut.result__ready):
        port.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    wrong = []
    for i in range(int(z["n_cases"])):
        await FallingEdge(dut.clk)
        dut.unload.value = 1
        await FallingEdge(dut.clk)
        dut.unload.value = 0
        words = [int(w) for w in z[f"words_{i}"]]
        addr = 0
        while addr < len(words):
            on = rng.random() < 0.8
            dut.load__valid.value = int(on)
            dut.load__payload.value = (int(Space.DESCRIPTORS) | addr << SPACE_BITS
                                       | words[addr] << (SPACE_BITS + ADDR_BITS))
            await RisingEdge(dut.clk)
            if on and int(dut.load__ready.value):
                addr += 1
            await FallingEdge(dut.clk)
        dut.load__valid.value = 0
        # The last word was taken at the last rising edge: the flag is valid that many edges on.
        for _ in range(MODEL_CHECK_LATENCY):
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        got, want = int(dut.model_ok.value), int(z[f"ok_{i}"])
        if got != want:
            wrong.append((i, got, want))
    assert not wrong, f"seed {seed}: (case, model_ok, check_descriptors) {wrong[:5]} of {len(wrong)}"
