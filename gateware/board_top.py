"""The board-level top: the UART engine wired to a board's clock, reset, USB-UART and LEDs.

:class:`BoardTop` wraps any component with the ports of ``gateware.top.UartEngine``
(``uart_rx: In(1)``, ``uart_tx: Out(1)`` and the status outputs ``loaded``, ``busy``, ``error``)
for one :class:`gateware.boards.Board`:

- Arty A7: the 100 MHz oscillator drives the engine directly; the red RESET button is the
  platform's default reset (amaranth's Xilinx platform synchronises it and holds it until the
  end of configuration).
- ULX3S: an EHXPLLL makes 100 MHz from the 25 MHz oscillator; the engine is held in reset until
  the PLL locks, or while button F1 is pressed.
- LEDs 0..3: image loaded, busy, error, heartbeat (~1.5 Hz: shows the clock runs).

:class:`StandInEngine` has the same ports: a UART echo plus an R x C array of int8 MACs, used
where the real engine is not importable, so the build machinery (trees, utilization, timing)
can be exercised on its own.
"""

from amaranth import Cat, ClockDomain, Elaboratable, Instance, Module, Signal, signed
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer, FFSynchronizer
from amaranth.lib.wiring import In, Out

from .boards import Board

__all__ = ["BoardTop", "StandInEngine", "UART_ENGINE_PORTS", "STATUS_PORTS"]

#: Port names the board top connects (the UartEngine's pins and status outputs).
STATUS_PORTS = ("loaded", "busy", "error")
UART_ENGINE_PORTS = ("uart_rx", "uart_tx") + STATUS_PORTS

# ecppll -i 25 -o 100: VCO 600 MHz = 25 MHz * CLKFB_DIV(4) * CLKOP_DIV(6); the attributes are the
# loop-filter settings ecppll emits (nextpnr also reads FREQUENCY_PIN_* to derive the constraint).
_ECP5_PLL_100 = dict(
    a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP="100", a_ICP_CURRENT="12",
    a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=1, p_CLKOP_ENABLE="ENABLED",
    p_CLKOP_DIV=6, p_CLKOP_CPHASE=2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=4,
)


class BoardTop(Elaboratable):
    """One engine on one board.

    Parameters
    ----------
    board : Board
        The target (``family`` ``"xc7"`` or ``"ecp5"``; ``sim`` builds the engine alone).
    engine : wiring.Component
        Has the ports named in :data:`UART_ENGINE_PORTS`; runs in the ``sync`` domain.
    """

    def __init__(self, *, board, engine):
        if not isinstance(board, Board):
            raise TypeError(f"Board must be a gateware.boards.Board, not {board!r}")
        if board.family not in ("xc7", "ecp5"):
            raise ValueError(f"Board {board.name!r} has no pins: build its engine directly")
        missing = [name for name in UART_ENGINE_PORTS if not hasattr(engine, name)]
        if missing:
            raise TypeError(f"Engine {engine!r} lacks the port(s) {', '.join(missing)}")
        self._board = board
        self.engine = engine

    @property
    def board(self):
        return self._board

    def elaborate(self, platform):
        m = Module()
        if self._board.family == "ecp5":
            self._ecp5_clocking(m, platform)
        # On Arty the platform creates `sync` from clk100 and the RESET button.
        m.submodules.engine = engine = self.engine

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        # The pin is asynchronous to the engine clock; idle high so reset looks like an idle line.
        m.submodules.rx_sync = FFSynchronizer(rx_buf.i, engine.uart_rx, init=1)
        m.d.comb += tx_buf.o.eq(engine.uart_tx)

        heartbeat = Signal(27)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        status = [getattr(engine, name) for name in STATUS_PORTS] + [heartbeat[-1]]
        for index, value in enumerate(status):
            m.submodules[f"led{index}_buf"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(value)
        return m

    def _ecp5_clocking(self, m, platform):
        m.submodules.clk25_buf = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        m.submodules.button_buf = button = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
        m.domains.sync = cd_sync = ClockDomain("sync")
        # The PLL drives the domain's clock directly. No FREQUENCY NET preference: nextpnr
        # derives the 100 MHz constraint of this net from the PLL's FREQUENCY_PIN_CLKI / _CLKOP
        # attributes ("Derived frequency constraint of 100.0 MHz for net clk"). An explicit one
        # cannot name the net: an untraced Signal() became "$signal", a named intermediate
        # signal is only an alias after synthesis (nextpnr ignored both), and Amaranth names
        # the domain clock after a submodule ("rx_sync.clk") while the net is "clk".
        locked = Signal(name="pll_locked")
        m.submodules.pll = Instance(
            "EHXPLLL", **_ECP5_PLL_100,
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=cd_sync.clk, i_CLKFB=cd_sync.clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        # The reset (asserted asynchronously, released on the clock) reaches thousands of
        # registers: through a global buffer its fan-out rides the clock network, whereas fabric
        # routing of that net was the engine's critical path (16.7 ns of routing).
        rst = Signal(name="rst_sync")
        m.submodules.reset_sync = AsyncFFSynchronizer(~locked | button.i, rst, o_domain="sync")
        m.submodules.reset_buf = Instance("DCCA", i_CLKI=rst, i_CE=1, o_CLKO=cd_sync.rst)


class StandInEngine(wiring.Component):
    """A stand-in with the UartEngine's ports: UART echo plus ``rows x cols`` int8 MACs.

    Each received byte is echoed; it also shifts into a row of weights and a column of
    activations, and every MAC ``(r, c)`` accumulates ``w[r] * a[c]``. The echoed byte is XORed
    with the low byte of all accumulators, so no multiplier is optimised away.

    Parameters
    ----------
    rows, cols : int
        Array size.
    divisor : int
        Clock cycles per UART bit (>= 4).
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    loaded: Out(1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, *, rows, cols, divisor):
        for name, value in (("Rows", rows), ("Cols", cols)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"Divisor must be an integer >= 4, not {divisor!r}")
        self._rows, self._cols, self._divisor = rows, cols, divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        div = self._divisor

        # Receiver: wait for the start bit's middle, then sample every `div` cycles.
        rx_timer, rx_bits, rx_shift = Signal(range(div * 2)), Signal(range(10)), Signal(8)
        rx_byte, rx_stb, framing = Signal(8), Signal(), Signal()
        m.d.sync += rx_stb.eq(0)
        with m.If(rx_bits == 0):
            with m.If(~self.uart_rx):
                m.d.sync += [rx_timer.eq(div + div // 2 - 1), rx_bits.eq(9)]
        with m.Elif(rx_timer != 0):
            m.d.sync += rx_timer.eq(rx_timer - 1)
        with m.Else():
            m.d.sync += [rx_timer.eq(div - 1), rx_bits.eq(rx_bits - 1)]
            with m.If(rx_bits == 1):
                m.d.sync += [rx_byte.eq(rx_shift), rx_stb.eq(1), framing.eq(~self.uart_rx)]
            with m.Else():
                m.d.sync += rx_shift.eq(Cat(rx_shift[1:], self.uart_rx))

        # MAC array fed from the received bytes.
        weights = [Signal(signed(8), name=f"w{r}") for r in range(self._rows)]
        acts = [Signal(signed(8), name=f"a{c}") for c in range(self._cols)]
        accs = [[Signal(signed(32), name=f"acc{r}_{c}") for c in range(self._cols)]
                for r in range(self._rows)]
        with m.If(rx_stb):
            m.d.sync += [weights[0].eq(rx_byte), acts[0].eq(~rx_byte)]
            m.d.sync += [weights[i].eq(weights[i - 1]) for i in range(1, self._rows)]
            m.d.sync += [acts[i].eq(acts[i - 1]) for i in range(1, self._cols)]
        for r in range(self._rows):
            for c in range(self._cols):
                m.d.sync += accs[r][c].eq(accs[r][c] + weights[r] * acts[c])
        mix = Signal(8)
        m.d.comb += mix.eq(rx_byte)
        for row in accs:
            for acc in row:
                mix = mix ^ acc[:8]

        # Transmitter: 10-bit frame, LSB first.
        tx_timer, tx_bits, tx_shift = Signal(range(div)), Signal(range(11)), Signal(10, init=0x3FF)
        m.d.comb += self.uart_tx.eq(tx_shift[0])
        with m.If(tx_bits == 0):
            with m.If(rx_stb):
                m.d.sync += [tx_shift.eq(Cat(0, mix, 1)), tx_bits.eq(10), tx_timer.eq(div - 1)]
        with m.Elif(tx_timer != 0):
            m.d.sync += tx_timer.eq(tx_timer - 1)
        with m.Else():
            m.d.sync += [tx_shift.eq(Cat(tx_shift[1:], 1)), tx_bits.eq(tx_bits - 1),
                         tx_timer.eq(div - 1)]

        m.d.sync += self.error.eq(self.error | framing)
        m.d.comb += [self.busy.eq((rx_bits != 0) | (tx_bits != 0)), self.loaded.eq(1)]
        return m
