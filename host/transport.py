"""Byte transports between the host and a board: a serial port (real or pseudo-terminal).

A transport moves raw bytes and knows nothing of frames; :mod:`host.protocol` puts frames on it.
Every transport offers the same three calls, so the protocol client runs unchanged over a USB-UART,
a pseudo-terminal bridged to the simulated board (:mod:`host.simboard`) or an in-process fake.
"""

from __future__ import annotations

import select

__all__ = ["Transport", "SerialTransport", "TransportError", "DEFAULT_BAUD"]

#: Line rate when none is given: 1 Mbaud is an exact divisor of the 100 MHz board clock and well
#: inside what the Arty's FT2232 USB-UART carries; pass the rate the bitstream was built for.
DEFAULT_BAUD = 1_000_000


class TransportError(OSError):
    """The port cannot be opened or has gone away; the message names the port."""


class Transport:
    """What the protocol client needs from a byte pipe.

    Members
    -------
    name : str
        Human-readable name of the other end (a device path, ``"sim"``, ...).
    baud : int or None
        Line rate in bits per second when the link is a UART (for link-bound throughput), else None.
    """

    name = "transport"
    baud = None

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        raise NotImplementedError

    def read(self, timeout: float) -> bytes:
        """Return the bytes that arrive within ``timeout`` seconds: at least one, or ``b""`` on timeout."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the port; further calls are errors."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A pyserial port: a USB-UART device, a pseudo-terminal path, or any pyserial URL (``loop://``).

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB1``, ``/dev/pts/7``) or pyserial URL.
    baud : int
        Line rate in bits per second (ignored by pseudo-terminals, but used for link-bound figures).

    Members
    -------
    port : str
        The path or URL given.
    """

    def __init__(self, port: str, *, baud: int = DEFAULT_BAUD):
        if not isinstance(port, str) or not port:
            raise ValueError(f"Serial port must be a non-empty device path or URL, not {port!r}")
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
        import serial  # pyserial; imported here so the rest of host/ works without it

        try:
            # Raw 8N1 without flow control: the link layer frames and checks everything itself.
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0, write_timeout=10,
                                                 xonxoff=False, rtscts=False, dsrdtr=False)
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportError(f"Cannot open serial port {port!r}: {e}") from e
        self._port = port
        self._baud = baud
        try:
            self._fileno = self._serial.fileno()
        except (AttributeError, OSError, ValueError):
            self._fileno = None

    @property
    def port(self) -> str:
        return self._port

    @property
    def name(self) -> str:
        return self._port

    @property
    def baud(self) -> int:
        return self._baud

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._serial.write(bytes(data))
            self._serial.flush()
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"Write to {self._port!r} failed: {e}") from e

    def read(self, timeout: float) -> bytes:
        import serial

        try:
            waiting = self._serial.in_waiting
            if waiting:
                return self._serial.read(waiting)
            if self._fileno is not None:
                # Wait in select: changing the pyserial timeout would reprogram the port each call.
                ready, _, _ = select.select([self._fileno], [], [], max(0.0, timeout))
                return self._serial.read(self._serial.in_waiting or 1) if ready else b""
            # URL ports (loop://, socket://) have no file descriptor: block for the first byte.
            self._serial.timeout = max(0.0, timeout)
            first = self._serial.read(1)
            self._serial.timeout = 0
            if not first:
                return b""
            return first + self._serial.read(self._serial.in_waiting)
        except (serial.SerialException, OSError) as e:
            raise TransportError(f"Read from {self._port!r} failed: {e}") from e

    def close(self) -> None:
        self._serial.close()
