"""The framed link protocol between the host and the engine, in plain Python.

Every message, in both directions, is one frame::

    0xA5 0x5A | cmd u8 | seq u8 | len u32 LE | payload (len bytes) | crc u32 LE

where ``crc = zlib.crc32(cmd, seq, len, payload)`` (CRC-32/ISO-HDLC). The engine answers a request
with ``cmd | 0x80`` and the request's ``seq`` on success, or with a NAK (``cmd = 0xFF``, payload
``error code u8, request cmd u8``). After any error the receiver hunts for the next sync.

This module is the single definition of the frame format: :mod:`gateware.link` implements the same
rules in hardware, ``host/`` uses :func:`encode_frame` and :class:`FrameDecoder` to talk to it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from hw.memory_map import ADDR_BITS, COUNTERS, Space

__all__ = [
    "SYNC", "HEADER_BYTES", "TRAILER_BYTES", "RESPONSE_FLAG", "NAK", "MAX_PAYLOAD",
    "Command", "ErrorCode", "Frame", "frame_crc", "encode_frame", "FrameDecoder",
    "ping_payload", "parse_ping", "counters_payload", "parse_counters", "nak_payload", "parse_nak",
    "response_cmd",
]

#: The two sync bytes that open every frame.
SYNC = b"\xA5\x5A"
#: Sync, cmd, seq and len.
HEADER_BYTES = 8
#: The CRC after the payload.
TRAILER_BYTES = 4
#: Set in the cmd of a successful response.
RESPONSE_FLAG = 0x80
#: The cmd of a negative acknowledgement.
NAK = 0xFF

#: Largest image (in words) the load port can address: header, CRC, and every space full.
_MAX_IMAGE_WORDS = 5 + len(Space) * (1 + 2 ** ADDR_BITS)
#: Largest payload the engine accepts in any frame (a full image); longer lengths are refused at
#: once with BAD_LENGTH, since the engine cannot hold the frame open for them.
MAX_PAYLOAD = 4 * _MAX_IMAGE_WORDS


class Command(IntEnum):
    """Requests from the host to the engine."""

    PING = 0x01           #: empty; answered with config_id u32 + status u8
    LOAD_IMAGE = 0x02     #: payload = a :mod:`hw.image` image; answered empty
    INFER = 0x03          #: payload = one int8 input frame (C x H x W); answered with the outputs
    READ_COUNTERS = 0x04  #: empty; answered with cycles, busy, stalls, macs (u32 LE each)


class ErrorCode(IntEnum):
    """Error codes carried by a NAK (and by :class:`hw.image.ImageError`)."""

    BAD_CRC = 1         #: frame CRC mismatch
    BAD_COMMAND = 2     #: unknown request cmd
    BAD_LENGTH = 3      #: payload longer than the engine accepts
    TIMEOUT = 4         #: frame truncated: no byte for a timeout period mid-frame
    BAD_MAGIC = 5       #: image magic is not "PSCA"
    BAD_VERSION = 6     #: image version unsupported
    BAD_CONFIG = 7      #: image packed for another config_id
    BAD_IMAGE_CRC = 8   #: image CRC mismatch
    BAD_SECTION = 9     #: unknown/repeated space, section too large, lengths inconsistent
    NO_IMAGE = 10       #: INFER or READ_COUNTERS before a good image
    BAD_FRAME_SIZE = 11  #: INFER payload length differs from the model's input length
    BAD_MODEL = 12      #: image well formed, but its model cannot run (hw.descriptors.check_descriptors)
    #: INFER abandoned: a layer of the loaded model addressed memory outside the engine's
    #: activation or weight memory (a descriptor whose maps or weights pass the end of their memory)
    ADDRESS_FAULT = 13


def response_cmd(cmd: int) -> int:
    """The cmd of a successful response to request ``cmd``."""
    return int(cmd) | RESPONSE_FLAG


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Members
    -------
    cmd : int
        Command byte (a :class:`Command`, a response ``cmd | 0x80`` or :data:`NAK`).
    seq : int
        Sequence number the response echoes.
    payload : bytes
        The payload.
    """

    cmd: int
    seq: int
    payload: bytes = b""

    @property
    def is_nak(self) -> bool:
        """True for a NAK frame."""
        return self.cmd == NAK

    def encode(self) -> bytes:
        """The frame's bytes on the wire."""
        return encode_frame(cmd=self.cmd, seq=self.seq, payload=self.payload)


def _check_u8(name: str, value) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be an integer in 0..255, not {value!r}")
    return int(value)


def frame_crc(cmd: int, seq: int, payload: bytes) -> int:
    """CRC-32 (zlib) over cmd, seq, len (u32 LE) and payload."""
    head = struct.pack("<BBI", cmd, seq, len(payload))
    return zlib.crc32(payload, zlib.crc32(head))


def encode_frame(*, cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """Encode one frame.

    Parameters
    ----------
    cmd, seq : int
        Command and sequence bytes (0..255).
    payload : bytes
        At most 2**32 - 1 bytes.
    """
    cmd = _check_u8("cmd", int(cmd) if isinstance(cmd, IntEnum) else cmd)
    seq = _check_u8("seq", seq)
    payload = bytes(payload)
    if len(payload) > 0xFFFF_FFFF:
        raise ValueError(f"payload must be at most 4294967295 bytes, not {len(payload)}")
    crc = frame_crc(cmd, seq, payload)
    return SYNC + struct.pack("<BBI", cmd, seq, len(payload)) + payload + struct.pack("<I", crc)


class FrameDecoder:
    """Incremental frame decoder that resynchronises after garbage, corruption and truncation.

    Bytes are fed as they arrive; complete frames whose CRC matches are returned in order. A
    candidate frame that fails (bad CRC, length above ``max_payload``, or abandoned by
    :meth:`timeout`) is dropped and the search for a sync restarts at the byte after its sync, so a
    good frame hidden inside a bad candidate's length is still found. A wrong frame is only
    emitted when corruption produces a matching CRC-32 (probability 2**-32 per candidate).

    Parameters
    ----------
    max_payload : int
        Longest payload accepted; a header announcing more is rejected at once (BAD_LENGTH).

    Members
    -------
    max_payload : int
        As given.
    errors : list of ErrorCode
        Every rejection so far, in order (BAD_CRC, BAD_LENGTH, TIMEOUT).
    pending : int
        Bytes held while a candidate frame is incomplete.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD):
        if not isinstance(max_payload, int) or not 0 <= max_payload <= 0xFFFF_FFFF:
            raise ValueError(f"max_payload must be an integer in 0..4294967295, not {max_payload!r}")
        self._max_payload = max_payload
        self._buf = bytearray()
        self._errors: list[ErrorCode] = []

    @property
    def max_payload(self) -> int:
        return self._max_payload

    @property
    def errors(self) -> list[ErrorCode]:
        return list(self._errors)

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete."""
        self._buf += data
        return self._scan()

    def timeout(self) -> list[Frame]:
        """Give up the incomplete candidate: no byte arrived for a timeout period.

        Every held byte is resolved: the bytes after an abandoned candidate's sync are rescanned
        (they may hold complete frames) and whatever stays incomplete is dropped too, since no
        more bytes are coming. Records one TIMEOUT when something was abandoned.
        """
        frames = []
        abandoned = False
        while self._buf.startswith(SYNC):
            abandoned = True
            del self._buf[:1]
            frames += self._scan()
        self._buf.clear()
        if abandoned:
            self._errors.append(ErrorCode.TIMEOUT)
        return frames

    def reset(self) -> None:
        """Drop every held byte."""
        self._buf.clear()

    def _scan(self) -> list[Frame]:
        frames = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing 0xA5: it may be the first half of the next sync.
                keep = 1 if buf.endswith(SYNC[:1]) else 0
                del buf[:len(buf) - keep]
                return frames
            del buf[:start]
            if len(buf) < HEADER_BYTES:
                return frames
            cmd, seq, length = struct.unpack_from("<BBI", buf, 2)
            if length > self._max_payload:
                self._errors.append(ErrorCode.BAD_LENGTH)
                del buf[:1]
                continue
            end = HEADER_BYTES + length + TRAILER_BYTES
            if len(buf) < end:
                return frames
            payload = bytes(buf[HEADER_BYTES:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", buf, HEADER_BYTES + length)
            if crc != frame_crc(cmd, seq, payload):
                self._errors.append(ErrorCode.BAD_CRC)
                del buf[:1]
                continue
            frames.append(Frame(cmd, seq, payload))
            del buf[:end]


def ping_payload(*, config_id: int, loaded: bool) -> bytes:
    """Payload of a PING response: config_id u32 LE + status u8 (bit 0: an image is loaded)."""
    return struct.pack("<IB", config_id, 1 if loaded else 0)


def parse_ping(payload: bytes) -> tuple[int, bool]:
    """``(config_id, loaded)`` from a PING response payload."""
    if len(payload) != 5:
        raise ValueError(f"PING response payload must be 5 bytes, not {len(payload)}")
    config_id, status = struct.unpack("<IB", payload)
    return config_id, bool(status & 1)


def counters_payload(counters: dict) -> bytes:
    """Payload of a READ_COUNTERS response: the :data:`hw.memory_map.COUNTERS` as u32 LE."""
    return struct.pack("<" + "I" * len(COUNTERS), *(counters[name] for name in COUNTERS))


def parse_counters(payload: bytes) -> dict:
    """``{name: value}`` from a READ_COUNTERS response payload."""
    if len(payload) != 4 * len(COUNTERS):
        raise ValueError(f"READ_COUNTERS response payload must be {4 * len(COUNTERS)} bytes, "
                         f"not {len(payload)}")
    return dict(zip(COUNTERS, struct.unpack("<" + "I" * len(COUNTERS), payload)))


def nak_payload(*, code: int, cmd: int) -> bytes:
    """Payload of a NAK: error code u8, request cmd u8."""
    return bytes([_check_u8("code", int(code)), _check_u8("cmd", int(cmd))])


def parse_nak(payload: bytes) -> tuple[ErrorCode | int, int]:
    """``(code, request cmd)`` from a NAK payload; ``code`` is an :class:`ErrorCode` when known."""
    if len(payload) != 2:
        raise ValueError(f"NAK payload must be 2 bytes, not {len(payload)}")
    code, cmd = payload
    try:
        code = ErrorCode(code)
    except ValueError:
        pass
    return code, cmd
