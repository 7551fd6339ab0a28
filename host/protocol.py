"""The host side of the framed link protocol: requests, responses, timeouts, retries.

Frames and codes are defined once in :mod:`hw.link`; this module is the client that uses them
over any :class:`host.transport.Transport`. Every request carries a sequence number; the client

* waits for the response with the request's ``seq``, discarding frames with any other ``seq``
  (late answers to an earlier, already retried request) and frames that fail their CRC,
* re-sends the *same* frame (same ``seq``) after a timeout or a NAK ``BAD_CRC`` / ``TIMEOUT``
  (the request was damaged on its way), at most ``retries`` times,
* raises :class:`NakError` (naming the engine's error code) on any other NAK.

All four commands are idempotent on the engine (PING, reloading the same image, INFER of the
same frame, READ_COUNTERS of the last frame), so a retried request whose first copy did reach
the engine changes nothing, and because only the response with the current ``seq`` is taken,
nothing is lost or duplicated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hw import link
from hw.memory_map import COUNTERS

from .transport import Transport

__all__ = ["Client", "PingInfo", "ProtocolError", "NakError", "LinkTimeout", "RETRY_CODES",
           "ERROR_TEXT"]

#: NAK codes that mean "your request was damaged in transit": the client re-sends it.
RETRY_CODES = frozenset({link.ErrorCode.BAD_CRC, link.ErrorCode.TIMEOUT})

#: What each error code means, for exception messages (the contract's wording).
ERROR_TEXT = {
    link.ErrorCode.BAD_CRC: "frame CRC mismatch",
    link.ErrorCode.BAD_COMMAND: "unknown command",
    link.ErrorCode.BAD_LENGTH: "payload longer than the engine accepts",
    link.ErrorCode.TIMEOUT: "frame truncated (no byte for a timeout period mid-frame)",
    link.ErrorCode.BAD_MAGIC: "image magic is not PSCA",
    link.ErrorCode.BAD_VERSION: "image format version not supported",
    link.ErrorCode.BAD_CONFIG: "image packed for another engine configuration (config_id)",
    link.ErrorCode.BAD_IMAGE_CRC: "image CRC mismatch",
    link.ErrorCode.BAD_SECTION: "unknown space, section larger than its memory, or lengths "
                                "inconsistent with the image length",
    link.ErrorCode.NO_IMAGE: "no good image loaded yet",
    link.ErrorCode.BAD_FRAME_SIZE: "input frame length differs from the model's input length",
    link.ErrorCode.BAD_MODEL: "image's model cannot run on this engine (no layers, more layers "
                              "than it holds, lengths outside its memories, or a layer "
                              "descriptor missing or with a field out of range)",
    link.ErrorCode.ADDRESS_FAULT: "the engine abandoned the inference: a layer of the loaded "
                                  "model addressed memory past the end of the engine's "
                                  "activation or weight memory. The image's model is not one "
                                  "`host pack` (hw.layout.build_layout) writes: a hand-made or "
                                  "corrupted descriptor passes the end of its memory; repack the "
                                  "model and load the new image",
}


class ProtocolError(RuntimeError):
    """The engine answered something the contract does not allow."""


class LinkTimeout(ProtocolError):
    """No valid response after every retry; the message names the request and the attempts."""


class NakError(ProtocolError):
    """The engine refused a request.

    Members
    -------
    code : hw.link.ErrorCode
        The engine's error code.
    request : int
        The command the engine says it refused.
    """

    def __init__(self, code: int, request: int, message: str):
        super().__init__(message)
        self._code = code
        self._request = request

    @property
    def code(self):
        return self._code

    @property
    def request(self) -> int:
        return self._request


@dataclass(frozen=True)
class PingInfo:
    """The answer to PING.

    Members
    -------
    config_id : int
        The engine's generator fingerprint (``hw.array.ArrayConfig.config_id``).
    image_loaded : bool
        Whether a good image is loaded (status bit 0).
    status : int
        The whole status byte.
    """

    config_id: int
    image_loaded: bool
    status: int


def _name(code, enum) -> str:
    try:
        return f"{enum(code).name} ({int(code)})"
    except ValueError:
        return f"unknown ({int(code)})"


class Client:
    """Request/response client of one engine.

    Parameters
    ----------
    transport : Transport
        The byte pipe to the engine.
    timeout : float
        Seconds to wait for a response beyond the time the bytes need on the line.
    retries : int
        Re-sends of a request after a timeout or a retryable NAK (0 = send once).
    baud : int or None
        Line rate used to stretch the timeout for long frames; default ``transport.baud``.

    Members
    -------
    stats : dict
        Counts since creation: ``requests``, ``retries``, ``discarded`` (frames with a stale
        ``seq`` or an unexpected command), ``bad_frames`` (CRC/format errors seen by the decoder).
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 3,
                 baud: int | None = None):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must be a host.transport.Transport, not {type(transport).__name__}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"Response timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"Retries must be a non-negative integer, not {retries!r}")
        self._transport = transport
        self._timeout = float(timeout)
        self._retries = retries
        self._baud = baud if baud is not None else getattr(transport, "baud", None)
        self._decoder = link.FrameDecoder()
        self._seq = 0
        self._stats = {"requests": 0, "retries": 0, "discarded": 0, "bad_frames": 0}

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def stats(self) -> dict:
        return dict(self._stats)

    def _line_time(self, n_bytes: int) -> float:
        # 10 bits a byte on an 8N1 UART, doubled for slack.
        return 0.0 if not self._baud else 2 * 10 * n_bytes / self._baud

    def request(self, cmd: int, payload: bytes = b"", *, response_len: int = 0,
                timeout: float | None = None) -> bytes:
        """Send ``cmd`` with ``payload``; return the success response's payload.

        ``response_len`` (expected payload bytes of the answer) and ``timeout`` only size the wait.
        Raises :class:`NakError` or :class:`LinkTimeout`.
        """
        cmd = link.Command(cmd)
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        frame = link.encode_frame(cmd=cmd, seq=seq, payload=bytes(payload))
        wait = (self._timeout if timeout is None else timeout) + self._line_time(
            len(frame) + response_len + link.HEADER_BYTES + link.TRAILER_BYTES)
        self._stats["requests"] += 1
        reasons = []
        for attempt in range(self._retries + 1):
            if attempt:
                self._stats["retries"] += 1
            self._transport.write(frame)
            errors_before = len(self._decoder.errors)
            outcome = self._await(cmd, seq, wait)
            if isinstance(outcome, bytes):
                self._stats["bad_frames"] += len(self._decoder.errors) - errors_before
                return outcome
            # A truncated response must not swallow the bytes of the next attempt's answer.
            stale = self._decoder.timeout()
            self._stats["discarded"] += len(stale)
            self._stats["bad_frames"] += len(self._decoder.errors) - errors_before
            reasons.append(outcome)
        # The engine aborts an inference when the next request arrives: a model that runs
        # longer than the wait is cut off at every attempt.
        hint = (" (a model that runs longer than the timeout never answers: each new request "
                "aborts it; raise the timeout)" if cmd == link.Command.INFER else "")
        raise LinkTimeout(f"{cmd.name} (seq {seq}) got no valid response after "
                          f"{self._retries + 1} attempts ({', '.join(reasons)}) on "
                          f"{self._transport.name}{hint}")

    def _await(self, cmd, seq: int, wait: float):
        """Response payload (bytes), or a string saying why this attempt should be retried."""
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timeout after {wait:.3g} s"
            data = self._transport.read(remaining)
            if not data:
                continue
            for item in self._decoder.feed(data):
                if item.seq != seq:
                    self._stats["discarded"] += 1
                    continue
                if item.cmd == link.response_cmd(cmd):
                    return bytes(item.payload)
                if item.is_nak:
                    try:
                        code, request = link.parse_nak(item.payload)
                    except ValueError as e:
                        raise ProtocolError(f"Malformed NAK to {cmd.name} (seq {seq}): {e}") from None
                    if code in RETRY_CODES:
                        return f"NAK {_name(code, link.ErrorCode)}"
                    text = ERROR_TEXT.get(code, "undefined error code")
                    raise NakError(code, request, f"The engine refused {cmd.name} (seq {seq}) on "
                                   f"{self._transport.name}: {_name(code, link.ErrorCode)}: {text}")
                self._stats["discarded"] += 1

    # -- the four commands -------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> PingInfo:
        """PING: the engine's config_id and whether an image is loaded."""
        payload = self.request(link.Command.PING, response_len=5, timeout=timeout)
        try:
            config_id, loaded = link.parse_ping(payload)
        except ValueError as e:
            raise ProtocolError(str(e)) from None
        return PingInfo(config_id, loaded, payload[4])

    def load_image(self, image: bytes, *, timeout: float | None = None) -> None:
        """LOAD_IMAGE: send a packed image (see :mod:`hw.image`)."""
        payload = self.request(link.Command.LOAD_IMAGE, image, timeout=timeout)
        if payload:
            raise ProtocolError(f"LOAD_IMAGE response must be empty, not {len(payload)} bytes")

    def infer(self, frame: bytes, *, output_len: int | None = None,
              timeout: float | None = None) -> bytes:
        """INFER: run one int8 input frame; return the last layer's int8 outputs as bytes."""
        payload = self.request(link.Command.INFER, frame, response_len=output_len or 0,
                               timeout=timeout)
        if output_len is not None and len(payload) != output_len:
            raise ProtocolError(f"INFER response must be {output_len} bytes (the model's output), "
                                f"not {len(payload)}")
        return payload

    def read_counters(self, *, timeout: float | None = None) -> dict:
        """READ_COUNTERS: ``{"cycles", "busy", "stalls", "macs"}`` of the most recent frame."""
        payload = self.request(link.Command.READ_COUNTERS, response_len=4 * len(COUNTERS),
                               timeout=timeout)
        try:
            return link.parse_counters(payload)
        except ValueError as e:
            raise ProtocolError(str(e)) from None
