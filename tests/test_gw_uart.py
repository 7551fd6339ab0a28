# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of gateware.uart against a bit-level 8N1 model written here from the spec."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from gateware.uart import UartRx, UartTx


def bits_8n1(byte, stop=1):
    # Start bit, 8 data bits LSB first, stop bit.
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def run(dut, *processes, testbenches=()):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for p in processes:
        sim.add_process(p)
    for t in testbenches:
        sim.add_testbench(t)
    sim.run()


def test_validation():
    for cls in (UartRx, UartTx):
        with pytest.raises(ValueError, match="Divisor must be an integer of at least 4 clock cycles "
                                             "per bit, not 3"):
            cls(divisor=3)
        with pytest.raises(ValueError, match="not 4.5"):
            cls(divisor=4.5)


@pytest.mark.parametrize("divisor, skew", [(4, 0.0), (5, 0.03), (7, -0.03), (16, 0.04), (16, -0.04)])
def test_rx_against_bit_model(divisor, skew):
    """Bytes driven bit by bit (with a baud skew and a glitch between bytes) come out intact."""
    seed = divisor * 100 + int(skew * 100)
    rng = random.Random(seed)
    dut = UartRx(divisor=divisor)
    sent = [rng.getrandbits(8) for _ in range(24)] + [0x00, 0xFF, 0x55]
    got, errors = [], []
    period = divisor * (1 + skew)   # the sender's bit time, in clock cycles

    async def line(ctx):
        t = 0.0   # sender's time in cycles; the bench ticks whole cycles
        now = 0
        for byte in sent:
            gap = rng.randrange(0, 3 * divisor)
            if rng.random() < 0.3:
                # A one-cycle glitch on the idle line must not start a byte.
                ctx.set(dut.pin, 0)
                await ctx.tick()
                ctx.set(dut.pin, 1)
                now += 1
                gap += divisor      # a glitch on an idle line, not just before a start bit
            for _ in range(gap):
                await ctx.tick()
                now += 1
            t = float(now)
            for b in bits_8n1(byte):
                ctx.set(dut.pin, b)
                t += period
                while now < round(t):
                    await ctx.tick()
                    now += 1
            ctx.set(dut.pin, 1)
        for _ in range(4 * divisor):
            await ctx.tick()

    async def sink(ctx):
        while True:
            ready = rng.random() < 0.7
            ctx.set(dut.stream.ready, ready)
            _, _, valid, payload, ferr, ovr = await ctx.tick().sample(
                dut.stream.valid, dut.stream.payload, dut.framing_error, dut.overrun)
            if valid and ready:
                got.append(payload)
            if ferr or ovr:
                errors.append((ferr, ovr))

    run(dut, sink, testbenches=[line])
    assert got == sent, f"seed {seed}"
    assert errors == [], f"seed {seed}"


def test_rx_framing_error_and_overrun():
    divisor, seed = 6, 7
    dut = UartRx(divisor=divisor)
    got, ferrs, ovrs = [], [], []

    async def line(ctx):
        async def send(bits):
            for b in bits:
                ctx.set(dut.pin, b)
                await ctx.tick().repeat(divisor)
            ctx.set(dut.pin, 1)
            await ctx.tick().repeat(divisor)
        await send(bits_8n1(0x3C, stop=0) + [0, 0])      # stop bit 0, then a break
        await send(bits_8n1(0xA7))                        # the receiver recovers
        ctx.set(dut.stream.ready, 0)
        await send(bits_8n1(0x11))                        # held, not accepted ...
        await send(bits_8n1(0x22))                        # ... so this one overruns
        ctx.set(dut.stream.ready, 1)
        await ctx.tick().repeat(3)

    async def watch(ctx):
        while True:
            _, _, valid, ready, payload, ferr, ovr = await ctx.tick().sample(
                dut.stream.valid, dut.stream.ready, dut.stream.payload, dut.framing_error, dut.overrun)
            if valid and ready:
                got.append(payload)
            ferrs.append(ferr)
            ovrs.append(ovr)

    async def init(ctx):
        ctx.set(dut.stream.ready, 1)

    run(dut, watch, testbenches=[init, line])
    assert got == [0xA7, 0x11], f"seed {seed}"
    assert sum(ferrs) == 1 and sum(ovrs) == 1


@pytest.mark.parametrize("divisor", [4, 9])
def test_tx_against_bit_model(divisor):
    """The TX pin, decoded by the spec at mid-bit, gives the bytes back, each bit `divisor` long."""
    seed = divisor
    rng = random.Random(seed)
    dut = UartTx(divisor=divisor)
    sent = [rng.getrandbits(8) for _ in range(12)]
    levels = []

    async def source(ctx):
        for byte in sent:
            for _ in range(rng.randrange(0, 2 * divisor)):
                await ctx.tick()
            ctx.set(dut.stream.valid, 1)
            ctx.set(dut.stream.payload, byte)
            await ctx.tick().until(dut.stream.ready)
            ctx.set(dut.stream.valid, 0)
        await ctx.tick().until(~dut.busy)
        await ctx.tick().repeat(2 * divisor)

    async def probe(ctx):
        while True:
            _, _, pin = await ctx.tick().sample(dut.pin)
            levels.append(pin)

    run(dut, probe, testbenches=[source])
    # Decode: find each start edge, check every bit is exactly `divisor` cycles, sample mid-bit.
    got, i = [], 0
    while i < len(levels):
        if levels[i] == 0:
            bits = [levels[i + k * divisor + divisor // 2] for k in range(10)]
            for k in range(9):
                seg = levels[i + k * divisor:i + (k + 1) * divisor]
                assert len(set(seg)) == 1, f"bit {k} not constant for {divisor} cycles (seed {seed})"
            assert bits[0] == 0 and bits[9] == 1, f"seed {seed}"
            got.append(sum(b << n for n, b in enumerate(bits[1:9])))
            i += 10 * divisor - divisor // 2     # into the stop bit
        else:
            i += 1
    assert got == sent, f"seed {seed}"


@pytest.mark.parametrize("divisor", [4, 5, 11])
def test_loopback_with_back_pressure(divisor):
    seed = 1000 + divisor
    rng = random.Random(seed)
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.pin.eq(tx.pin)
    sent = [rng.getrandbits(8) for _ in range(40)]
    got = []

    async def source(ctx):
        for byte in sent:
            while rng.random() < 0.1:
                await ctx.tick()
            ctx.set(tx.stream.valid, 1)
            ctx.set(tx.stream.payload, byte)
            await ctx.tick().until(tx.stream.ready)
            ctx.set(tx.stream.valid, 0)
        await ctx.tick().repeat(30 * divisor)

    async def sink(ctx):
        while True:
            ready = rng.random() < 0.5
            ctx.set(rx.stream.ready, ready)
            _, _, valid, payload, ferr, ovr = await ctx.tick().sample(
                rx.stream.valid, rx.stream.payload, rx.framing_error, rx.overrun)
            assert not ferr and not ovr, f"seed {seed}"
            if valid and ready:
                got.append(payload)

    run(m, sink, testbenches=[source])
    assert got == sent, f"seed {seed}"
