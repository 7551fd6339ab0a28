"""cocotb testbench of gateware.top.LinkedEngine (byte streams) or UartEngine (8N1 pins), real core.

The host side speaks hw.link: requests are encoded with ``encode_frame`` and responses decoded with
``FrameDecoder``. The case file ``LINK_CASE`` (``.npz``, written by sim_tests/test_link_engine.py)
holds the packed image, input frames and their expected outputs (hw.reference), and the config_id.
``LINK_MODE`` is ``bytes`` or ``uart`` (``LINK_DIVISOR`` cycles a bit), ``LINK_TIMEOUT`` the
engine's mid-frame timeout in cycles, ``LINK_SEED`` seeds the random gaps and back-pressure.
"""

import os
import random

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from hw.link import (NAK, Command, ErrorCode, Frame, FrameDecoder, encode_frame, nak_payload,
                     parse_counters, parse_ping)


#: Cycles a request byte may wait for rx ready (the link stalls only while the core takes a
#: load word) before the test fails instead of hanging.
SEND_LIMIT = 10_000


class ByteHost:
    """Drives rx with random gaps, takes tx with random ready, checks tx stability."""

    def __init__(self, dut, rng):
        self.dut, self.rng = dut, rng
        self.dec = FrameDecoder()
        self.frames = []
        cocotb.start_soon(self._receive())

    async def send(self, data):
        dut = self.dut
        for byte in data:
            while self.rng.random() < 0.3:
                await FallingEdge(dut.clk)
                dut.rx__valid.value = 0
            await FallingEdge(dut.clk)
            dut.rx__valid.value = 1
            dut.rx__payload.value = byte
            await RisingEdge(dut.clk)
            for _ in range(SEND_LIMIT):
                if int(dut.rx__ready.value):
                    break
                await RisingEdge(dut.clk)
            else:
                raise AssertionError(f"request byte {byte:#04x} not taken in {SEND_LIMIT} cycles")
        await FallingEdge(dut.clk)
        dut.rx__valid.value = 0

    async def _receive(self):
        dut, held = self.dut, None
        while True:
            await FallingEdge(dut.clk)
            ready = self.rng.random() < 0.6
            dut.tx__ready.value = int(ready)
            await RisingEdge(dut.clk)
            valid, byte = int(dut.tx__valid.value), int(dut.tx__payload.value)
            if held is not None:
                assert valid and byte == held, f"tx beat {held:#x} changed while not ready"
            held = byte if valid and not ready else None
            if valid and ready:
                self.frames += self.dec.feed(bytes([byte]))


class UartHost:
    """Drives uart_rx bit by bit and decodes uart_tx at mid-bit, both at ``divisor`` cycles a bit."""

    def __init__(self, dut, rng, divisor):
        self.dut, self.rng, self.divisor = dut, rng, divisor
        self.dec = FrameDecoder()
        self.frames = []
        cocotb.start_soon(self._receive())

    async def send(self, data):
        dut, d = self.dut, self.divisor
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                await FallingEdge(dut.clk)
                dut.uart_rx.value = bit
                await ClockCycles(dut.clk, d - 1, rising=False)
            if self.rng.random() < 0.3:
                await ClockCycles(dut.clk, self.rng.randrange(1, 2 * d), rising=False)

    async def _receive(self):
        dut, d = self.dut, self.divisor
        while True:
            await FallingEdge(dut.clk)
            if int(dut.uart_tx.value):
                continue
            await ClockCycles(dut.clk, d // 2, rising=False)
            assert not int(dut.uart_tx.value), "start bit shorter than half a bit"
            bits = []
            for _ in range(9):
                await ClockCycles(dut.clk, d, rising=False)
                bits.append(int(dut.uart_tx.value))
            assert bits[8] == 1, "stop bit low"
            self.frames += self.dec.feed(bytes([sum(b << i for i, b in enumerate(bits[:8]))]))


@cocotb.test()
async def link_session(dut):
    seed = int(os.environ.get("LINK_SEED", "0"))
    mode = os.environ["LINK_MODE"]
    timeout = int(os.environ["LINK_TIMEOUT"])
    rng = random.Random(seed)
    z = np.load(os.environ["LINK_CASE"])
    cid = int(z["config_id"])
    image = z["image"].tobytes()

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    if mode == "uart":
        divisor = int(os.environ["LINK_DIVISOR"])
        dut.uart_rx.value = 1
        host = UartHost(dut, rng, divisor)
        # The whole response must arrive: up to the result plus framing, a byte per 10 bits.
        wait = 10 * divisor * (100 + len(z["expect_0"]))
    else:
        dut.rx__valid.value = 0
        host = ByteHost(dut, rng)
        wait = 2000
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    async def request(cmd, payload=b"", *, wire=None, extra=0):
        seq = rng.getrandbits(8)
        n = len(host.frames)
        await host.send(wire if wire is not None else encode_frame(cmd=cmd, seq=seq, payload=payload))
        for _ in range(wait + extra + int(z["max_cycles"])):
            await RisingEdge(dut.clk)
            if len(host.frames) > n:
                break
        assert len(host.frames) == n + 1, f"seed {seed}: no response to cmd {cmd:#x}"
        got = host.frames[-1]
        if wire is None:
            assert got.seq == seq, f"seed {seed}: seq {got.seq} for request seq {seq}"
        return got

    def nak(got, code, cmd):
        assert got == Frame(NAK, got.seq, nak_payload(code=code, cmd=cmd)), \
            f"seed {seed}: wanted NAK {code.name} for cmd {cmd}, got {got}"

    got = await request(Command.PING)
    assert got.cmd == 0x81 and parse_ping(got.payload) == (cid, False), f"seed {seed}: {got}"
    nak(await request(Command.INFER, z["frame_0"].tobytes()), ErrorCode.NO_IMAGE, 3)

    bad = bytearray(image)
    bad[-1] ^= 0x01
    nak(await request(Command.LOAD_IMAGE, bytes(bad)), ErrorCode.BAD_IMAGE_CRC, 2)
    wire = bytearray(encode_frame(cmd=Command.LOAD_IMAGE, seq=0x33, payload=image))
    wire[len(wire) // 2] ^= 0x10
    nak(await request(Command.LOAD_IMAGE, wire=bytes(wire)), ErrorCode.BAD_CRC, 2)
    assert not int(dut.loaded.value)

    got = await request(Command.LOAD_IMAGE, image)
    assert got.cmd == 0x82 and got.payload == b"", f"seed {seed}: {got}"
    assert int(dut.loaded.value), f"seed {seed}: loaded low after a good image"

    for i in range(int(z["n_frames"])):
        got = await request(Command.INFER, z[f"frame_{i}"].tobytes())
        want = z[f"expect_{i}"].tobytes()
        assert got.cmd == 0x83, f"seed {seed}: frame {i}: {got}"
        assert got.payload == want, (f"seed {seed}: frame {i} output differs at "
                                     f"{[k for k in range(len(want)) if got.payload[k:k+1] != want[k:k+1]][:8]}")
    got = await request(Command.READ_COUNTERS)
    assert got.cmd == 0x84, f"seed {seed}: {got}"
    counters = parse_counters(got.payload)
    assert counters["macs"] == int(z["macs"]) and counters["cycles"] > 0, f"seed {seed}: {counters}"

    nak(await request(Command.INFER, z["frame_0"].tobytes()[:-1]), ErrorCode.BAD_FRAME_SIZE, 3)
    # A frame cut short: the engine times out, NAKs and listens again.
    cut = encode_frame(cmd=Command.PING, seq=0x44)[:6]
    nak(await request(Command.PING, wire=cut, extra=timeout), ErrorCode.TIMEOUT, 1)
    await host.send(b"\x00\x13\xa5\x00")
    got = await request(Command.PING)
    assert got.cmd == 0x81 and parse_ping(got.payload) == (cid, True), f"seed {seed}: {got}"

    nak(await request(Command.LOAD_IMAGE, z["other_image"].tobytes()), ErrorCode.BAD_CONFIG, 2)
    assert not int(dut.loaded.value)
    nak(await request(Command.INFER, z["frame_0"].tobytes()), ErrorCode.NO_IMAGE, 3)

    # Well-formed images whose model cannot run: no layers, no header at all (a load begins by
    # forgetting the last model's header), a layer field out of range, a descriptor cut short.
    for name in ("no_layers_image", "headerless_image", "stride3_image", "short_descriptor_image"):
        got = await request(Command.LOAD_IMAGE, image)
        assert got.cmd == 0x82, f"seed {seed}: {got}"
        nak(await request(Command.LOAD_IMAGE, z[name].tobytes()), ErrorCode.BAD_MODEL, 2)
        assert not int(dut.loaded.value), f"seed {seed}: {name} left loaded high"
        nak(await request(Command.INFER, z["frame_0"].tobytes()), ErrorCode.NO_IMAGE, 3)

    # A model whose output map passes the end of the activation memory: the address guard
    # stops its INFER, which the engine answers with ADDRESS_FAULT; the engine stays usable.
    got = await request(Command.LOAD_IMAGE, z["overrun_image"].tobytes())
    assert got.cmd == 0x82, f"seed {seed}: {got}"
    nak(await request(Command.INFER, z["frame_0"].tobytes()), ErrorCode.ADDRESS_FAULT, 3)
    assert not int(dut.busy.value), f"seed {seed}: the core still runs after its fault"
    got = await request(Command.PING)
    assert got.cmd == 0x81 and parse_ping(got.payload) == (cid, True), f"seed {seed}: {got}"

    # A model that runs far longer than the host waits: its INFER gets no answer at all (the
    # response header waits for the first result byte); the host gives up and pings, which
    # aborts the inference.
    got = await request(Command.LOAD_IMAGE, z["runaway_image"].tobytes())
    assert got.cmd == 0x82, f"seed {seed}: {got}"
    n = len(host.frames)
    await host.send(encode_frame(cmd=Command.INFER, seq=0x55, payload=z["frame_0"].tobytes()))
    await ClockCycles(dut.clk, wait + 4 * int(z["max_cycles"]))
    assert len(host.frames) == n and int(dut.busy.value), f"seed {seed}: the runaway model ended"
    assert host.dec.pending == 0, f"seed {seed}: a response began for the runaway INFER"
    host.dec.timeout()
    got = await request(Command.PING)
    assert got.cmd == 0x81 and parse_ping(got.payload) == (cid, True), f"seed {seed}: {got}"
    assert not int(dut.busy.value), f"seed {seed}: the core still runs after the abort"
    got = await request(Command.LOAD_IMAGE, image)
    assert got.cmd == 0x82, f"seed {seed}: {got}"
    got = await request(Command.INFER, z["frame_1"].tobytes())
    assert got.cmd == 0x83 and got.payload == z["expect_1"].tobytes(), f"seed {seed}: {got}"
