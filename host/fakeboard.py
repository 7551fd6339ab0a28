"""An in-process stand-in for a board, with fault injection, for testing the host side.

:class:`FakeBoard` is a :class:`host.transport.Transport` that behaves like the engine's link
layer of the contract (:mod:`hw.link`): it decodes request frames, answers PING, LOAD_IMAGE,
INFER and READ_COUNTERS, NAKs bad requests, and can damage the traffic in both directions on
a schedule (:class:`Fault`), so tests can prove the client loses and duplicates nothing.

What INFER computes is a callable given by the test (``compute(frame) -> bytes``), e.g. the
bit-exact reference :func:`hw.reference.run_model`; the board itself knows no arithmetic. The
board answers an INFER at once and never faults on its own: the engine's ADDRESS_FAULT (its
address guard abandoned the frame) comes only from a ``compute`` that raises it.
"""

from __future__ import annotations

import time
from collections import deque
from enum import Enum

from hw import link

from .transport import Transport

__all__ = ["Fault", "FakeBoard"]


class Fault(Enum):
    """One thing that can go wrong with one request/response exchange."""

    NONE = "none"                    #: clean exchange
    DROP_REQUEST = "drop_request"    #: the request never arrives: no answer at all
    CORRUPT_REQUEST = "corrupt_request"  #: a payload/CRC bit flips: the board NAKs BAD_CRC
    TRUNCATE_REQUEST = "truncate_request"  #: the request stops half-way: the board NAKs TIMEOUT
    DROP_RESPONSE = "drop_response"  #: the answer is lost
    CORRUPT_RESPONSE = "corrupt_response"  #: a bit of the answer flips (the host's CRC catches it)
    TRUNCATE_RESPONSE = "truncate_response"  #: only the first part of the answer arrives
    DUPLICATE_RESPONSE = "duplicate_response"  #: the answer arrives twice
    DELAY_RESPONSE = "delay_response"  #: the answer arrives only after the host's next write
    STALE_RESPONSE = "stale_response"  #: an answer with another seq precedes the real one
    GARBAGE = "garbage"              #: noise bytes (with sync look-alikes) precede the answer


class FakeBoard(Transport):
    """A simulated engine link on the host's side of the wire.

    Parameters
    ----------
    config_id : int
        What PING reports.
    compute : callable
        ``compute(frame: bytes) -> bytes``: the outputs of one input frame. An exception with an
        ``int`` ``.code`` (such as ``ErrorCode.ADDRESS_FAULT``) NAKs the INFER with that code.
    input_len : int
        Bytes of one input frame; other lengths are NAKed BAD_FRAME_SIZE.
    accept_image : callable, optional
        ``accept_image(image: bytes)`` raises an exception with an ``int`` ``.code`` (such as
        :class:`hw.image.ImageError`) to refuse an image; default accepts everything.
    faults : iterable of Fault
        Consumed one per received request (clean once exhausted).
    counters : callable, optional
        ``counters(frame) -> dict`` for READ_COUNTERS after an INFER; default all zero.

    Members
    -------
    executed : list of (cmd, seq)
        Every request the board acted on, in order (a retried request may appear twice).
    image : bytes or None
        The loaded image.
    """

    name = "fake"
    baud = None

    def __init__(self, *, config_id: int, compute, input_len: int, accept_image=None,
                 faults=(), counters=None):
        self._config_id = config_id
        self._compute = compute
        self._input_len = input_len
        self._accept = accept_image
        self._counters_of = counters
        self._faults = deque(faults)
        self._decoder = link.FrameDecoder()
        self._out = bytearray()
        self._delayed = bytearray()
        self._last_response = None
        self._executed = []
        self._image = None
        self._counters = {"cycles": 0, "busy": 0, "stalls": 0, "macs": 0}
        self._closed = False

    @property
    def executed(self) -> list:
        return list(self._executed)

    @property
    def image(self):
        return self._image

    def add_faults(self, faults) -> None:
        """Queue more faults for the next requests."""
        self._faults.extend(faults)

    # -- Transport -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            raise OSError("FakeBoard is closed")
        # Faults strike whole frames, so a request may arrive in any number of pieces.
        for request in self._decoder.feed(bytes(data)):
            # Whatever was held back arrives now, after the host's next request (a slow answer).
            self._out += self._delayed
            self._delayed.clear()
            fault = self._faults.popleft() if self._faults else Fault.NONE
            if fault is Fault.DROP_REQUEST:
                continue
            if fault in (Fault.CORRUPT_REQUEST, Fault.TRUNCATE_REQUEST):
                # The engine sees a CRC failure (or a frame that stops) and NAKs with the seq it read.
                code = link.ErrorCode.BAD_CRC if fault is Fault.CORRUPT_REQUEST else link.ErrorCode.TIMEOUT
                self._send(link.NAK, request.seq, link.nak_payload(code=code, cmd=request.cmd),
                           Fault.NONE)
                continue
            self._handle(request, fault)

    def read(self, timeout: float) -> bytes:
        if self._closed:
            raise OSError("FakeBoard is closed")
        if not self._out:
            # Nothing will arrive until the host writes again: let the timeout pass.
            time.sleep(max(0.0, timeout))
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def close(self) -> None:
        self._closed = True

    # -- the engine's side ------------------------------------------------------------------

    def _send(self, cmd: int, seq: int, payload: bytes, fault: Fault) -> None:
        frame = link.encode_frame(cmd=cmd, seq=seq, payload=payload)
        if fault is Fault.DROP_RESPONSE:
            pass
        elif fault is Fault.CORRUPT_RESPONSE:
            bad = bytearray(frame)
            bad[len(bad) // 2] ^= 0x10
            self._out += bad
        elif fault is Fault.TRUNCATE_RESPONSE:
            self._out += frame[: max(3, len(frame) - 3)]
        elif fault is Fault.DUPLICATE_RESPONSE:
            self._out += frame + frame
        elif fault is Fault.DELAY_RESPONSE:
            self._delayed += frame
        elif fault is Fault.STALE_RESPONSE:
            stale = self._last_response or link.encode_frame(cmd=link.response_cmd(link.Command.PING),
                                                             seq=(seq + 128) & 0xFF,
                                                             payload=b"\0" * 5)
            self._out += stale + frame
        elif fault is Fault.GARBAGE:
            self._out += b"\xA5\x00\xA5\x5A\x81\x07\xff\xff" + frame
        else:
            self._out += frame
        if fault is not Fault.STALE_RESPONSE:
            self._last_response = frame

    def _nak(self, frame, code, fault):
        self._send(link.NAK, frame.seq, link.nak_payload(code=code, cmd=frame.cmd), fault)

    def _handle(self, frame: link.Frame, fault: Fault) -> None:
        self._executed.append((frame.cmd, frame.seq))
        ok = link.response_cmd(frame.cmd)
        if frame.cmd == link.Command.PING:
            self._send(ok, frame.seq, link.ping_payload(config_id=self._config_id,
                                                        loaded=self._image is not None), fault)
        elif frame.cmd == link.Command.LOAD_IMAGE:
            self._image = None  # a failed load leaves no image loaded
            if self._accept is not None:
                try:
                    self._accept(frame.payload)
                except Exception as e:  # noqa: BLE001 - any refusal with a code becomes a NAK
                    code = getattr(e, "code", None)
                    if code is None:
                        raise
                    return self._nak(frame, int(code), fault)
            self._image = frame.payload
            self._send(ok, frame.seq, b"", fault)
        elif frame.cmd == link.Command.INFER:
            if self._image is None:
                return self._nak(frame, link.ErrorCode.NO_IMAGE, fault)
            if len(frame.payload) != self._input_len:
                return self._nak(frame, link.ErrorCode.BAD_FRAME_SIZE, fault)
            try:
                out = self._compute(frame.payload)
            except Exception as e:  # noqa: BLE001 - as for accept_image: a code becomes a NAK
                code = getattr(e, "code", None)
                if code is None:
                    raise
                return self._nak(frame, int(code), fault)
            if self._counters_of is not None:
                self._counters = dict(self._counters_of(frame.payload))
            self._send(ok, frame.seq, bytes(out), fault)
        elif frame.cmd == link.Command.READ_COUNTERS:
            if self._image is None:
                return self._nak(frame, link.ErrorCode.NO_IMAGE, fault)
            self._send(ok, frame.seq, link.counters_payload(self._counters), fault)
        else:
            self._nak(frame, link.ErrorCode.BAD_COMMAND, fault)
