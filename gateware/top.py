"""The engine with its host link: byte streams (:class:`LinkedEngine`) or UART pins (:class:`UartEngine`).

:class:`LinkedEngine` is what the simulated board drives (one byte per beat, no serial timing);
:class:`UartEngine` adds the 8N1 UART and is what the board tops (``gateware.board_top``) wire to
the USB-UART pins and the LEDs.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.array import ArrayConfig
from hw.image import SPACE_WORDS
from gateware.interfaces import ByteStream
from gateware.link import Link, check_timeout
from gateware.uart import UartRx, UartTx, check_divisor

__all__ = ["DEFAULT_TIMEOUT", "RX_FIFO_DEPTH", "LinkedEngine", "UartEngine"]

#: Mid-frame timeout in clock cycles: 42 ms at 100 MHz, longer than a USB-UART's scheduling gaps.
DEFAULT_TIMEOUT = 2 ** 22
#: Bytes buffered between the UART receiver and the link: the UART cannot be back-pressured.
RX_FIFO_DEPTH = 32


def _check_config(config):
    if config is None:
        return ArrayConfig()
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"Config must be a hw.array.ArrayConfig, not {type(config).__name__}")
    return config


class LinkedEngine(wiring.Component):
    """The link layer (:class:`gateware.link.Link`) in front of the engine core.

    Parameters
    ----------
    config : hw.array.ArrayConfig, optional
        Generator parameters of the core (default: ``ArrayConfig()``, the Arty A7-35T engine).
    timeout : int
        Mid-frame timeout of the link, in clock cycles.
    core : wiring.Component, optional
        A component with :class:`gateware.interfaces.CoreSignature` to use instead of
        ``gateware.core.Core(config=config)`` (tests use a small stand-in).

    Members
    -------
    rx : In(ByteStream)
        Request bytes from the host.
    tx : Out(ByteStream)
        Response bytes to the host.
    loaded : Out(1)
        A good image is loaded.
    busy : Out(1)
        The core is running a frame.
    error : Out(1)
        One-cycle pulse when a NAK goes out.
    """

    def __init__(self, *, config=None, timeout: int = DEFAULT_TIMEOUT, core=None):
        self._config = _check_config(config)
        self._timeout = check_timeout(timeout)
        if core is not None and not isinstance(core, wiring.Component):
            raise TypeError(f"Core must be a wiring.Component with CoreSignature, not {core!r}")
        self._core = core
        super().__init__({
            "rx": In(ByteStream),
            "tx": Out(ByteStream),
            "loaded": Out(1),
            "busy": Out(1),
            "error": Out(1),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def timeout(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        core = self._core
        if core is None:
            from gateware.core import Core
            core = Core(config=self._config)
        capacity = {space: min(words, SPACE_WORDS)
                    for space, words in self._config.capacity().items()}
        m.submodules.link = link = Link(timeout=self._timeout, capacity=capacity)
        m.submodules.core = core
        wiring.connect(m, link.core, core)
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        m.d.comb += [self.loaded.eq(link.image_loaded), self.busy.eq(core.busy),
                     self.error.eq(link.nak)]
        return m


class UartEngine(wiring.Component):
    """:class:`LinkedEngine` behind an 8N1 UART, with status outputs for LEDs.

    Parameters
    ----------
    config : hw.array.ArrayConfig, optional
        Generator parameters of the core (default: ``ArrayConfig()``).
    divisor : int
        Clock cycles per UART bit (``gateware.boards.uart_divisor(clk_hz=, baud=)``).
    timeout : int
        Mid-frame timeout of the link, in clock cycles.
    error_hold : int
        Cycles the ``error`` output stays high after an error (so an LED shows it).
    core : wiring.Component, optional
        As for :class:`LinkedEngine`.

    Members
    -------
    uart_rx : In(1)
        Serial line from the host (idles high).
    uart_tx : Out(1)
        Serial line to the host.
    loaded, busy : Out(1)
        As for :class:`LinkedEngine`.
    error : Out(1)
        High for ``error_hold`` cycles after a NAK, a UART framing error or a receive overrun.
    """

    def __init__(self, *, config=None, divisor: int, timeout: int = DEFAULT_TIMEOUT,
                 error_hold: int = 2 ** 22, core=None):
        if not isinstance(error_hold, int) or error_hold < 1:
            raise ValueError(f"Error hold must be a positive integer number of cycles, "
                             f"not {error_hold!r}")
        self._config = _check_config(config)
        self._divisor = check_divisor(divisor)
        self._timeout = check_timeout(timeout)
        self._error_hold = error_hold
        self._core = core
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "loaded": Out(1),
            "busy": Out(1),
            "error": Out(1),
        })

    @property
    def config(self) -> ArrayConfig:
        return self._config

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = LinkedEngine(config=self._config, timeout=self._timeout,
                                                    core=self._core)
        m.submodules.uart_rx = urx = UartRx(divisor=self._divisor)
        m.submodules.uart_tx = utx = UartTx(divisor=self._divisor)
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)

        m.d.comb += [urx.pin.eq(self.uart_rx), self.uart_tx.eq(utx.pin)]
        wiring.connect(m, urx.stream, fifo.w_stream)
        wiring.connect(m, fifo.r_stream, engine.rx)
        wiring.connect(m, engine.tx, utx.stream)

        hold = Signal(range(self._error_hold + 1))
        with m.If(engine.error | urx.framing_error | urx.overrun):
            m.d.sync += hold.eq(self._error_hold)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        m.d.comb += [self.loaded.eq(engine.loaded), self.busy.eq(engine.busy),
                     self.error.eq(hold != 0)]
        return m
