"""8N1 UART receiver and transmitter as stream components.

One start bit (0), eight data bits LSB first, one stop bit (1); the line idles high. Both sides
count ``divisor`` clock cycles per bit. The receiver synchronises the pin, starts a byte on a
falling edge and takes each bit as the majority of three samples around the middle of the bit, so a
one-cycle glitch neither starts a byte nor flips a bit and a baud mismatch of a few percent is
tolerated (the middle of the stop bit drifts by 10 x the per-bit error).
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gateware.interfaces import ByteStream

__all__ = ["MIN_DIVISOR", "UartRx", "UartTx", "check_divisor"]

#: Three samples around mid-bit need at least four cycles per bit.
MIN_DIVISOR = 4


def check_divisor(divisor) -> int:
    """Validate a UART divisor (clock cycles per bit) as :class:`UartRx` and :class:`UartTx` do."""
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"Divisor must be an integer of at least {MIN_DIVISOR} clock cycles per "
                         f"bit, not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least :data:`MIN_DIVISOR`).

    Members
    -------
    pin : In(1)
        The serial line (asynchronous; synchronised inside). Idles high.
    stream : Out(ByteStream)
        Received bytes. A byte held unaccepted when the next one completes is kept, and the new
        one is dropped with an ``overrun`` pulse.
    framing_error : Out(1)
        One-cycle pulse: a stop bit read 0; the byte is dropped and the receiver waits for the
        line to return high before looking for the next start bit.
    overrun : Out(1)
        One-cycle pulse: a byte was dropped because ``stream`` was still full.
    """

    def __init__(self, *, divisor: int):
        self._divisor = check_divisor(divisor)
        super().__init__({
            "pin": In(1, init=1),
            "stream": Out(ByteStream),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        mid = d // 2

        # Two flip-flops against metastability; reset to idle (high) so reset is not a start bit.
        sync = Signal(2, init=0b11)
        m.d.sync += sync.eq(Cat(self.pin, sync[0]))
        line = sync[1]

        cnt = Signal(range(d))
        bit = Signal(range(10))      # 0 start, 1..8 data, 9 stop
        votes = Signal(2)
        shreg = Signal(8)
        value = Signal()
        # The third vote is the line itself at mid + 1 (divisor >= 4 keeps mid + 1 inside the bit).
        m.d.comb += value.eq((votes[0] & votes[1]) | (votes[0] & line) | (votes[1] & line))

        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(self.stream.ready):
            m.d.sync += self.stream.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [cnt.eq(1), bit.eq(0)]
                    m.next = "BIT"
            with m.State("BIT"):
                m.d.sync += cnt.eq(Mux(cnt == d - 1, 0, cnt + 1))
                with m.If((cnt == mid - 1) | (cnt == mid)):
                    m.d.sync += votes.eq(Cat(line, votes[0]))
                with m.If(cnt == mid + 1):
                    with m.Switch(bit):
                        with m.Case(0):
                            with m.If(value):
                                m.next = "IDLE"          # a glitch, not a start bit
                        with m.Case(9):
                            with m.If(~value):
                                m.d.sync += self.framing_error.eq(1)
                                m.next = "BREAK"
                            with m.Elif(self.stream.valid & ~self.stream.ready):
                                m.d.sync += self.overrun.eq(1)
                                m.next = "IDLE"
                            with m.Else():
                                m.d.sync += [self.stream.valid.eq(1),
                                             self.stream.payload.eq(shreg)]
                                m.next = "IDLE"
                        with m.Default():
                            m.d.sync += shreg.eq(Cat(shreg[1:], value))
                with m.If(cnt == d - 1):
                    m.d.sync += bit.eq(bit + 1)
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least :data:`MIN_DIVISOR`).

    Members
    -------
    stream : In(ByteStream)
        Bytes to send; one is accepted whenever the transmitter is idle.
    pin : Out(1)
        The serial line, high when idle.
    busy : Out(1)
        A byte is being shifted out.
    """

    def __init__(self, *, divisor: int):
        self._divisor = check_divisor(divisor)
        super().__init__({
            "stream": In(ByteStream),
            "pin": Out(1, init=1),
            "busy": Out(1),
        })

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        cnt = Signal(range(d))
        bits = Signal(10)            # stop, data[7:0], start: shifted out LSB first
        left = Signal(range(11))

        m.d.comb += [self.busy.eq(left != 0), self.stream.ready.eq(left == 0)]
        with m.If(self.stream.valid & self.stream.ready):
            m.d.sync += [bits.eq(Cat(C(0, 1), self.stream.payload, C(1, 1))), left.eq(10),
                         cnt.eq(0)]
        with m.Elif(left != 0):
            m.d.sync += self.pin.eq(bits[0])
            m.d.sync += cnt.eq(Mux(cnt == d - 1, 0, cnt + 1))
            with m.If(cnt == d - 1):
                m.d.sync += [bits.eq(bits[1:]), left.eq(left - 1)]
        with m.Else():
            m.d.sync += self.pin.eq(1)
        return m
