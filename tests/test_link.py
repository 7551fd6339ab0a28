"""Tests of hw.link: frame encoding against a hand-built reference, and the resynchronising decoder."""

import random
import struct
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from hw.link import (SYNC, MAX_PAYLOAD, NAK, Command, ErrorCode, Frame, FrameDecoder, encode_frame,
                     frame_crc, ping_payload, parse_ping, counters_payload, parse_counters,
                     nak_payload, parse_nak, response_cmd)


def _reference_frame(cmd, seq, payload):
    # Written out from the contract, independent of encode_frame.
    body = bytes([cmd, seq]) + len(payload).to_bytes(4, "little") + payload
    return b"\xa5\x5a" + body + zlib.crc32(body).to_bytes(4, "little")


def test_encode_matches_contract_hand_case():
    # PING, seq 7: the CRC is zlib's over 01 07 00 00 00 00.
    frame = encode_frame(cmd=Command.PING, seq=7)
    crc = zlib.crc32(bytes([1, 7, 0, 0, 0, 0]))
    assert frame == bytes([0xA5, 0x5A, 1, 7, 0, 0, 0, 0]) + crc.to_bytes(4, "little")
    assert frame_crc(1, 7, b"") == crc


@given(cmd=st.integers(0, 255), seq=st.integers(0, 255), payload=st.binary(max_size=300))
def test_encode_decode_round_trip(cmd, seq, payload):
    wire = encode_frame(cmd=cmd, seq=seq, payload=payload)
    assert wire == _reference_frame(cmd, seq, payload)
    dec = FrameDecoder()
    # Byte by byte: the decoder is incremental.
    out = []
    for b in wire:
        out += dec.feed(bytes([b]))
    assert out == [Frame(cmd, seq, payload)]
    assert dec.errors == [] and dec.pending == 0
    assert Frame(cmd, seq, payload).encode() == wire


@pytest.mark.parametrize("kwargs, message", [
    (dict(cmd=256, seq=0), "cmd must be an integer in 0..255, not 256"),
    (dict(cmd=1, seq=-1), "seq must be an integer in 0..255, not -1"),
])
def test_encode_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        encode_frame(**kwargs)


def test_decoder_validates():
    with pytest.raises(ValueError, match="max_payload must be an integer in 0..4294967295, not -1"):
        FrameDecoder(max_payload=-1)


def _frames_strategy():
    return st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40)),
                    min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(frames=_frames_strategy(), garbage=st.lists(st.binary(max_size=30), min_size=7, max_size=7),
       chunk=st.integers(1, 17))
def test_garbage_between_frames(frames, garbage, chunk):
    # Garbage (possibly holding sync bytes and absurd lengths) between good frames: every good
    # frame comes out, in order, and nothing else.
    wire = bytearray()
    for i, (cmd, seq, payload) in enumerate(frames):
        wire += garbage[i % 7] + b"\xa5" * (i % 2)
        wire += encode_frame(cmd=cmd, seq=seq, payload=payload)
    wire += garbage[6]
    dec = FrameDecoder(max_payload=64)
    out = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(bytes(wire[i:i + chunk]))
    out += dec.timeout()
    assert out == [Frame(*f) for f in frames]
    assert dec.pending == 0


@settings(max_examples=200, deadline=None)
@given(frames=_frames_strategy(), data=st.data())
def test_bit_flips_and_truncation(frames, data):
    # Corrupt some frames (a bit flip or a truncation); the intact ones all come out, in order; a
    # corrupted one never does.
    wire = bytearray()
    expect = []
    for i, (cmd, seq, payload) in enumerate(frames):
        raw = bytearray(encode_frame(cmd=cmd, seq=seq, payload=payload))
        how = data.draw(st.sampled_from(["ok", "flip", "cut"]), label=f"frame {i}")
        if how == "flip":
            bit = data.draw(st.integers(0, 8 * len(raw) - 1), label="bit")
            raw[bit // 8] ^= 1 << (bit % 8)
            # A flip in the sync only hides the frame; anywhere else the CRC catches it.
        elif how == "cut":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="cut")]
        else:
            expect.append(Frame(cmd, seq, payload))
        wire += raw
        if how == "cut":
            # The sender went quiet: the receiver times out before the next frame.
            wire += b"<timeout>"
    dec = FrameDecoder(max_payload=64)
    out = []
    for piece in bytes(wire).split(b"<timeout>"):
        out += dec.feed(piece)
        out += dec.timeout()
    assert out == expect


def test_error_records():
    dec = FrameDecoder(max_payload=4)
    good = encode_frame(cmd=1, seq=2)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    too_long = encode_frame(cmd=3, seq=0, payload=bytes(5))
    assert dec.feed(bytes(bad) + too_long + good) == [Frame(1, 2)]
    assert dec.errors == [ErrorCode.BAD_CRC, ErrorCode.BAD_LENGTH]
    assert dec.feed(good[:9]) == []
    assert dec.timeout() == []
    assert dec.errors[-1] == ErrorCode.TIMEOUT and dec.pending == 0


def test_payload_helpers():
    assert ping_payload(config_id=0x12345678, loaded=True) == bytes([0x78, 0x56, 0x34, 0x12, 1])
    assert parse_ping(bytes([0x78, 0x56, 0x34, 0x12, 3])) == (0x12345678, True)
    counters = dict(cycles=1, busy=2, stalls=3, macs=0xFFFFFFFF)
    assert counters_payload(counters) == struct.pack("<4I", 1, 2, 3, 0xFFFFFFFF)
    assert parse_counters(counters_payload(counters)) == counters
    assert nak_payload(code=ErrorCode.TIMEOUT, cmd=Command.INFER) == bytes([4, 3])
    assert parse_nak(bytes([9, 2])) == (ErrorCode.BAD_SECTION, 2)
    assert parse_nak(bytes([200, 2])) == (200, 2)
    assert response_cmd(Command.READ_COUNTERS) == 0x84 and NAK == 0xFF
    assert MAX_PAYLOAD > 4 * 6 * 2 ** 18
    with pytest.raises(ValueError, match="PING response payload must be 5 bytes, not 4"):
        parse_ping(bytes(4))
