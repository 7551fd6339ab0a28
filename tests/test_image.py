"""Tests of hw.image: the container against a hand-packed reference, and every rejection code."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw.image import MAGIC, VERSION, ImageError, build_image, parse_image, image_words
from hw.link import ErrorCode
from hw.memory_map import Space


def _reference_image(sections, config_id):
    # Packed by hand from the contract, independent of build_image.
    body = b""
    for space, words in sections.items():
        body += struct.pack("<I", int(space) | len(words) << 8)
        body += b"".join(struct.pack("<I", int(w)) for w in words)
    total = 4 + len(body) // 4 + 1
    data = struct.pack("<4I", 0x41435350, 7 | len(sections) << 16, config_id, total) + body
    return data + struct.pack("<I", zlib.crc32(data))


def _reseal(image: bytearray) -> bytes:
    # Recompute the image CRC after an edit, so only the edited check fails.
    image[-4:] = struct.pack("<I", zlib.crc32(bytes(image[:-4])))
    return bytes(image)


def test_hand_case():
    sections = {Space.WEIGHTS: np.array([1, 0xFFFFFFFF], dtype=np.uint32), Space.BIAS: np.zeros(0, np.uint32)}
    image = build_image(sections, 0xCAFE)
    assert image[:4] == b"PSCA" == struct.pack("<I", MAGIC)
    assert image == _reference_image(sections, 0xCAFE)
    assert len(image) == 4 * image_words(sections) == 4 * (4 + 3 + 1 + 1)


@settings(max_examples=100, deadline=None)
@given(spaces=st.lists(st.sampled_from(list(Space)), unique=True, max_size=6), seed=st.integers(0, 2**32 - 1),
       config_id=st.integers(0, 2**32 - 1))
def test_round_trip(spaces, seed, config_id):
    rng = np.random.default_rng(seed)
    sections = {s: rng.integers(0, 2**32, size=int(rng.integers(0, 20)), dtype=np.uint64) for s in spaces}
    image = build_image(sections, config_id)
    assert image == _reference_image(sections, config_id)
    got_id, got = parse_image(image, config_id=config_id)
    assert got_id == config_id and list(got) == spaces
    for s in spaces:
        assert got[s].dtype == np.uint32 and np.array_equal(got[s], sections[s])


def _image():
    return bytearray(build_image({Space.DESCRIPTORS: np.arange(3), Space.WEIGHTS: np.arange(5)}, 77))


def _set_word(image, i, value):
    image[4 * i:4 * i + 4] = struct.pack("<I", value)
    return image


@pytest.mark.parametrize("edit, code", [
    (lambda im: _reseal(_set_word(im, 0, 0x41435351)), ErrorCode.BAD_MAGIC),
    (lambda im: _reseal(_set_word(im, 1, VERSION - 1 | 2 << 16)), ErrorCode.BAD_VERSION),
    (lambda im: _reseal(_set_word(im, 1, VERSION + 1 | 2 << 16)), ErrorCode.BAD_VERSION),
    (lambda im: _reseal(_set_word(im, 2, 78)), ErrorCode.BAD_CONFIG),
    (lambda im: _reseal(_set_word(im, 3, 16)), ErrorCode.BAD_SECTION),          # total != length
    (lambda im: bytes(im[:-4]), ErrorCode.BAD_SECTION),                         # truncated
    (lambda im: bytes(im[:10]), ErrorCode.BAD_SECTION),                         # header cut
    (lambda im: bytes(im[:3]), ErrorCode.BAD_SECTION),
    (lambda im: _reseal(_set_word(im, 4, 6 | 3 << 8)), ErrorCode.BAD_SECTION),   # unknown space 6
    (lambda im: _reseal(_set_word(im, 8, 0 | 5 << 8)), ErrorCode.BAD_SECTION),   # repeated space
    (lambda im: _reseal(_set_word(im, 8, 2 | 6 << 8)), ErrorCode.BAD_SECTION),   # runs over the CRC
    (lambda im: _reseal(_set_word(im, 8, 2 | 4 << 8)), ErrorCode.BAD_SECTION),   # ends before the CRC
    (lambda im: _reseal(_set_word(im, 1, VERSION | 3 << 16)), ErrorCode.BAD_SECTION),  # a section too many
    (lambda im: _reseal(_set_word(im, 1, VERSION | 1 << 16)), ErrorCode.BAD_SECTION),  # a section too few
    (lambda im: bytes(_set_word(im, 9, 0x1234)), ErrorCode.BAD_IMAGE_CRC),
    (lambda im: bytes(_set_word(im, 14, 0x1234)), ErrorCode.BAD_IMAGE_CRC),
])
def test_rejections(edit, code):
    image = edit(_image())
    with pytest.raises(ImageError) as info:
        parse_image(image, config_id=77)
    assert info.value.code == code
    assert str(info.value).startswith(code.name)


def test_first_failing_check_wins():
    # Bad magic and bad CRC: the magic comes first in byte order.
    image = _set_word(_image(), 0, 0)
    with pytest.raises(ImageError) as info:
        parse_image(bytes(image))
    assert info.value.code == ErrorCode.BAD_MAGIC


def test_capacity():
    sections = {Space.BIAS: np.arange(4)}
    with pytest.raises(ValueError, match="section BIAS has 4 words; the space holds 3"):
        build_image(sections, 1, capacity={Space.BIAS: 3})
    with pytest.raises(ImageError) as info:
        parse_image(build_image(sections, 1), capacity={Space.BIAS: 3})
    assert info.value.code == ErrorCode.BAD_SECTION
    assert parse_image(build_image(sections, 1), capacity={Space.BIAS: 4})[0] == 1


@pytest.mark.parametrize("args, message", [
    (({Space.BIAS: np.array([-1])}, 1), "section BIAS words must be in 0..4294967295, not -1..-1"),
    (({Space.BIAS: np.zeros((2, 2), int)}, 1), "section BIAS must be a 1-D integer array"),
    (({9: np.zeros(1, int)}, 1), "section key must be a Space"),
    (({}, -1), "config_id must be an integer in 0..4294967295, not -1"),
    (([], 1), "sections must be a dict of Space -> array, not list"),
])
def test_build_validates(args, message):
    with pytest.raises(ValueError, match=message):
        build_image(*args)


def test_empty_image():
    image = build_image({}, 5)
    assert len(image) == 20 and parse_image(image) == (5, {})
