"""cocotb side of the simulated board: bridges the engine's link to a pseudo-terminal.

Run by :class:`host.simboard.SimBoard` as the cocotb test module of the Verilated top
(``gateware.top.LinkedEngine``: byte streams ``rx``/``tx``; or ``gateware.top.UartEngine``: pins
``uart_rx``/``uart_tx``). It opens a pty pair, writes the slave's path to ``$PSCONV_PTY_FILE``
and then serves until ``$PSCONV_STOP_FILE`` exists or the process ``$PSCONV_OWNER_PID`` ends,
so the host reaches it exactly like a USB-UART. Simulation time advances only as needed:

* with bytes to deliver or to collect, the bridge runs cycle by cycle (byte stream: one
  valid/ready beat per cycle; UART: ``divisor`` cycles per bit, awaited in one call);
* while the engine computes (``busy``) it advances :data:`IDLE_CYCLES` clocks with one ``Timer``
  (cocotb's ``ClockCycles`` wakes Python on every edge; the clock is cocotb's C++ clock), and
  for :data:`HOT_CYCLES` after the last byte moved :data:`COLD_CYCLES` at a time, waking early
  when the engine starts to send (``tx`` valid or a UART start bit); stream ``tx`` is held
  not-ready meanwhile, so no output byte can slip by unseen;
* once the engine is quiet, it blocks in ``select`` for host bytes (:data:`COLD_WAIT_S` of wall
  time) and advances only :data:`COLD_CYCLES` clocks per wait, so an idle board costs next to
  no CPU (the machine is shared) and no Python per clock.
"""

from __future__ import annotations

import os
import select
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer

#: Clock cycles per Timer while the engine is busy (it wakes early when a response starts).
IDLE_CYCLES = 2048
#: Cycles after the last byte moved during which the engine counts as active (more than the link
#: needs to check a frame and start the core, so a response is never waited for in select).
HOT_CYCLES = 16384
#: A quiet engine: wall seconds to wait in select for host bytes; cycles per step when not busy.
COLD_WAIT_S = 0.05
COLD_CYCLES = 256
#: Longest cycle-by-cycle burst before the pty is polled again.
BURST_CYCLES = 4096
CLOCK_NS = 10


def _read_pty(fd) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def _write_pty(fd, data) -> None:
    view = memoryview(bytes(data))
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 0.1)
            continue
        view = view[n:]


class _Bridge:
    def __init__(self, dut, master):
        self.dut = dut
        self.master = master
        self.rx = bytearray()
        self.stop_file = os.environ.get("PSCONV_STOP_FILE")
        self.owner = int(os.environ.get("PSCONV_OWNER_PID", "0"))
        self.next_stop_check = 0.0
        self.has_busy = hasattr(dut, "busy")
        self.quiet_cycles = 0

    def stopped(self) -> bool:
        now = time.monotonic()
        if now < self.next_stop_check:
            return False
        self.next_stop_check = now + 0.5
        if self.owner:
            try:
                os.kill(self.owner, 0)
            except ProcessLookupError:
                return True  # the host that started the board is gone: don't serve forever
        return bool(self.stop_file) and os.path.exists(self.stop_file)

    def poll(self, wait: float) -> None:
        if wait > 0:
            select.select([self.master], [], [], wait)
        self.rx += _read_pty(self.master)

    def engine_busy(self) -> bool:
        return self.has_busy and int(self.dut.busy.value) == 1

    def idle_step(self) -> int:
        """Cycles to advance now that nothing moves; blocks in select first when quiet."""
        if self.engine_busy():
            return IDLE_CYCLES
        if self.quiet_cycles < HOT_CYCLES:
            # Short steps: the host's next request is usually on its way.
            self.quiet_cycles += COLD_CYCLES
            return COLD_CYCLES
        self.poll(COLD_WAIT_S)
        return 0 if self.rx else COLD_CYCLES


async def _stream_bridge(b: _Bridge):
    dut, clk = b.dut, b.dut.clk
    dut.rx__valid.value = 0
    dut.rx__payload.value = 0
    dut.tx__ready.value = 0
    while not b.stopped():
        b.poll(0)
        if not b.rx and not int(dut.tx__valid.value):
            # Nothing moves: many clocks in one await, or wall time in select when quiet.
            cycles = b.idle_step()
            if cycles:
                await First(RisingEdge(dut.tx__valid), Timer(cycles * CLOCK_NS, unit="ns"))
                await FallingEdge(clk)
            continue
        b.quiet_cycles = 0
        # Active: cycle by cycle. Inputs change at falling edges; ReadOnly shows the settled
        # values the next rising edge will act on, so each beat is counted exactly once.
        out = bytearray()
        rx_take = tx_take = False
        quiet = 0
        for _ in range(BURST_CYCLES):
            await FallingEdge(clk)
            if rx_take:
                del b.rx[0]
            if tx_take:
                out.append(tx_byte)
            if len(b.rx) < 64:
                b.poll(0)
            dut.rx__valid.value = 1 if b.rx else 0
            dut.rx__payload.value = b.rx[0] if b.rx else 0
            dut.tx__ready.value = 1
            await ReadOnly()
            rx_take = bool(b.rx) and int(dut.rx__ready.value) == 1
            tx_take = int(dut.tx__valid.value) == 1
            if tx_take:
                tx_byte = int(dut.tx__payload.value)
            quiet = 0 if (b.rx or tx_take) else quiet + 1
            if quiet > 16:
                break
        await FallingEdge(clk)
        if rx_take:
            del b.rx[0]
        if tx_take:
            out.append(tx_byte)
        dut.rx__valid.value = 0
        dut.tx__ready.value = 0
        if out:
            _write_pty(b.master, out)


async def _uart_tx_task(b: _Bridge, divisor: int):
    """Receive the engine's UART output (8N1, LSB first) and pass each byte to the pty."""
    dut = b.dut
    bit = Timer(divisor * CLOCK_NS, unit="ns")
    while True:
        await FallingEdge(dut.uart_tx)
        # Middle of the start bit, then the middle of each data bit.
        await Timer(divisor * CLOCK_NS // 2, unit="ns")
        if int(dut.uart_tx.value) != 0:
            continue  # a glitch, not a start bit
        byte = 0
        for i in range(8):
            await bit
            byte |= int(dut.uart_tx.value) << i
        await bit  # middle of the stop bit: the next falling edge is the next start bit
        b.quiet_cycles = 0
        _write_pty(b.master, bytes([byte]))


async def _uart_bridge(b: _Bridge, divisor: int):
    dut = b.dut
    dut.uart_rx.value = 1
    bit_time = Timer(divisor * CLOCK_NS, unit="ns")
    cocotb.start_soon(_uart_tx_task(b, divisor))
    while not b.stopped():
        b.poll(0)
        if not b.rx:
            cycles = b.idle_step()
            if cycles:
                await Timer(cycles * CLOCK_NS, unit="ns")
            continue
        b.quiet_cycles = 0
        while b.rx:
            byte = b.rx.pop(0)
            # Start bit, 8 data bits LSB first, stop bit: one await per bit.
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                dut.uart_rx.value = bit
                await bit_time
            if len(b.rx) < 16:
                b.poll(0)


@cocotb.test()
async def serve(dut):
    """Serve the engine on a pty until the stop file appears."""
    master, slave = os.openpty()
    # Raw both ways: every byte value passes unchanged, no echo.
    tty.setraw(slave)
    tty.setraw(master)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    pty_file = os.environ["PSCONV_PTY_FILE"]
    with open(pty_file + ".tmp", "w") as f:
        f.write(path)
    os.replace(pty_file + ".tmp", pty_file)

    # The C++ clock: no Python wake-up per edge.
    Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    if hasattr(dut, "uart_rx"):
        dut.uart_rx.value = 1
    await Timer(4 * CLOCK_NS, unit="ns")
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    bridge = _Bridge(dut, master)
    try:
        if os.environ.get("PSCONV_UART") == "1":
            await _uart_bridge(bridge, int(os.environ["PSCONV_DIVISOR"]))
        else:
            await _stream_bridge(bridge)
    finally:
        # Keep the slave open until here so a host that closes and reopens sees no hang-up.
        os.close(slave)
        os.close(master)
