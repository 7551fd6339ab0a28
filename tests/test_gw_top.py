# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of gateware.top: UartEngine end to end over its pins, with a stand-in core.

The stand-in has CoreSignature and a behaviour simple enough to predict by hand: it keeps the INPUT
words, answers a start with the input bytes reversed and XORed with 0x5A, and counts load words and
starts in its counters. The real core is exercised through the same top by the cocotb tests in
sim_tests/test_link_engine.py.
"""

import random
import struct

import numpy as np
import pytest
from amaranth import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from gateware.interfaces import CoreSignature
from gateware.top import LinkedEngine, UartEngine
from hw.array import ArrayConfig
from hw.image import build_image
from hw.link import (NAK, Command, ErrorCode, Frame, FrameDecoder, encode_frame, nak_payload,
                     parse_counters, parse_ping)
from hw.memory_map import Space

N_IN = 6


class StandInCore(wiring.Component):
    def __init__(self, *, config_id):
        self._config_id = config_id
        super().__init__(CoreSignature())

    def elaborate(self, platform):
        m = Module()
        words = Array(Signal(32, name=f"in{i}") for i in range(2))
        n_out = Signal(range(N_IN + 1))
        m.d.comb += [self.load.ready.eq(~self.busy), self.config_id.eq(self._config_id),
                     self.input_len.eq(N_IN), self.output_len.eq(N_IN), self.model_ok.eq(1),
                     self.busy.eq(n_out != 0)]
        with m.If(self.load.valid & self.load.ready):
            m.d.sync += self.counters.macs.eq(self.counters.macs + 1)
            with m.If((self.load.payload.space == Space.INPUT) & (self.load.payload.addr < 2)):
                m.d.sync += words[self.load.payload.addr[0]].eq(self.load.payload.data)
        data = Signal(64)
        m.d.comb += data.eq(words[0] | (words[1] << 32))
        with m.If(self.start):
            m.d.sync += [n_out.eq(N_IN), self.counters.cycles.eq(self.counters.cycles + 1)]
        m.d.comb += [self.result.valid.eq(n_out != 0),
                     self.result.payload.data.eq(data.word_select((n_out - 1)[:3], 8) ^ 0x5A),
                     self.result.payload.last.eq(n_out == 1)]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += n_out.eq(n_out - 1)
        return m


def _cfg():
    return ArrayConfig(rows=2, cols=2, p_max=2, weight_depth=16, table_depth=16, param_depth=16,
                       act_depth=64, max_layers=2)


def test_validation():
    with pytest.raises(ValueError, match="Divisor must be an integer of at least 4"):
        UartEngine(config=_cfg(), divisor=2, core=StandInCore(config_id=1))
    with pytest.raises(ValueError, match="Error hold must be a positive integer number of cycles"):
        UartEngine(config=_cfg(), divisor=8, error_hold=0, core=StandInCore(config_id=1))
    with pytest.raises(ValueError, match="Timeout must be a positive integer"):
        LinkedEngine(config=_cfg(), timeout=0, core=StandInCore(config_id=1))
    with pytest.raises(TypeError, match="Config must be a hw.array.ArrayConfig, not dict"):
        LinkedEngine(config={}, core=StandInCore(config_id=1))
    eng = UartEngine(config=_cfg(), divisor=8, core=StandInCore(config_id=1))
    assert eng.divisor == 8 and eng.config == _cfg()
    # Without arguments: hw.array's default engine and the real core.
    eng = LinkedEngine()
    assert eng.config == ArrayConfig() and eng.timeout == 2 ** 22


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_engine_session(divisor):
    seed = 40 + divisor
    rng = random.Random(seed)
    cfg = _cfg()
    cid = cfg.config_id
    dut = UartEngine(config=cfg, divisor=divisor, timeout=400 * divisor, error_hold=5,
                     core=StandInCore(config_id=cid))
    dec = FrameDecoder()
    frames = []
    errors = []

    async def tx_probe(ctx):
        # Decode uart_tx by the 8N1 spec: find a start bit, sample each bit mid-way.
        levels = []
        while True:
            _, _, level = await ctx.tick().sample(dut.uart_tx)
            levels.append(level)
            if len(levels) == 10 * divisor:
                if levels[0] == 0 and levels[divisor // 2] == 0:
                    bits = [levels[k * divisor + divisor // 2] for k in range(10)]
                    assert bits[9] == 1, f"stop bit low (seed {seed})"
                    frames.extend(dec.feed(bytes([sum(b << i for i, b in enumerate(bits[1:9]))])))
                    del levels[:9 * divisor + divisor // 2 + 1]
                else:
                    del levels[0]
            elif levels[0] == 1:
                del levels[0]

    async def error_probe(ctx):
        while True:
            _, _, err = await ctx.tick().sample(dut.error)
            errors.append(err)

    async def send(ctx, data):
        for byte in data:
            for b in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.uart_rx, b)
                await ctx.tick().repeat(divisor)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def request(ctx, cmd, payload=b""):
        seq = rng.getrandbits(8)
        n = len(frames)
        await send(ctx, encode_frame(cmd=cmd, seq=seq, payload=payload))
        for _ in range(300 * divisor):
            await ctx.tick()
            if len(frames) > n:
                break
        assert len(frames) == n + 1, f"no response (seed {seed})"
        assert frames[-1].seq == seq, f"seed {seed}"
        return frames[-1]

    async def host(ctx):
        got = await request(ctx, Command.PING)
        assert got.cmd == 0x81 and parse_ping(got.payload) == (cid, False), f"seed {seed}"
        got = await request(ctx, Command.INFER, bytes(N_IN))
        assert got == Frame(NAK, got.seq, nak_payload(code=ErrorCode.NO_IMAGE, cmd=3))
        assert any(errors), "error output never rose after a NAK"
        image = build_image({Space.BIAS: np.arange(3), Space.WEIGHTS: np.arange(2)}, cid)
        got = await request(ctx, Command.LOAD_IMAGE, image)
        assert got.cmd == 0x82 and got.payload == b"" and ctx.get(dut.loaded), f"seed {seed}"
        frame = bytes(rng.getrandbits(8) for _ in range(N_IN))
        got = await request(ctx, Command.INFER, frame)
        assert got.cmd == 0x83 and got.payload == bytes(b ^ 0x5A for b in frame[::-1]), f"seed {seed}"
        got = await request(ctx, Command.READ_COUNTERS)
        counters = parse_counters(got.payload)
        # 5 image words and 2 INPUT words went to the core; one start.
        assert counters["macs"] == 7 and counters["cycles"] == 1, f"seed {seed}: {counters}"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(tx_probe)
    sim.add_process(error_probe)
    sim.add_testbench(host)
    sim.run()
