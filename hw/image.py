"""The engine image container: what LOAD_IMAGE carries, built by host/ and parsed by the loader.

All fields are u32 little-endian words::

    word 0   magic 0x41435350 ("PSCA")
    word 1   version (low 16 bits, = 5) | n_sections << 16
    word 2   config_id of the engine it was packed for (hw.array.ArrayConfig.config_id)
    word 3   total words of the image, this header and the final CRC word included
    per section:
             space (low 8 bits, a hw.memory_map.Space) | n_words << 8
             n_words data words (word address 0, 1, ... of that space)
    last     zlib.crc32 of every preceding image byte

Checks happen in byte order, exactly as the hardware loader (:mod:`gateware.link`) makes them while
the image streams past, so both report the same error code for the same bytes: the first failing
check wins; an image too short for its own header is BAD_SECTION. What the words of each space
mean is :mod:`hw.layout`'s business; this module only frames them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

import numpy as np

from hw.link import ErrorCode
from hw.memory_map import ADDR_BITS, Space

__all__ = ["MAGIC", "VERSION", "HEADER_WORDS", "SPACE_WORDS", "ImageError", "build_image",
           "parse_image", "image_words"]

MAGIC = 0x41435350
#: 2: layer descriptors gained ``mix`` and ``mix_wrap`` (hw.descriptors.LAYER_FIELDS), which an engine
#: reading version 1 would ignore and so compute a mixed layer wrong; version 1 images (both
#: fields zero) would still run, but are refused like any other version.
#: 3: ``frames``, ``frame_in`` and ``frame_out`` (batches of frames; zero for one frame).
#: 4: ``mix`` = 2, an FC's inputs split over the row groups, whose partial sums an engine of
#: version 3 would not add (it would write group 0's alone).
#: 5: ``out_w = 2 * w_out`` on an unpooled layer writes its pixels 2 bytes apart (two frames
#: interleaved for an FC that takes them in its columns, whose split sums are added on two
#: columns), which an engine of version 4 would write contiguously.
#: 6: padded rows (``hw.layout``): a stride-2 layer's mixed flat tiles with a port a group read
#: the second output row ``s * (w_in - w_out)`` bytes on, and a flat or folded layer writes the
#: next row's lanes ``out_w - w_out`` bytes on, which an engine of version 5 would not.
#: 7: ``out_w = 2 * (w_out // 2)`` on a pooled layer writes its pooled pixels 2 bytes apart (two
#: frames interleaved for an FC after a pooled layer), which an engine of version 6 would write
#: contiguously.
VERSION = 7
#: magic, version/n_sections, config_id, total words.
HEADER_WORDS = 4
#: Words a space can hold by default: its whole word-address range.
SPACE_WORDS = 2 ** ADDR_BITS
_MAX_SECTION_WORDS = 2 ** 24 - 1  # n_words field width


class ImageError(ValueError):
    """A malformed image.

    Members
    -------
    code : hw.link.ErrorCode
        The error code the engine's NAK carries for the same image.
    """

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self._code = ErrorCode(code)

    @property
    def code(self) -> ErrorCode:
        return self._code


def _check_config_id(config_id) -> int:
    if not isinstance(config_id, (int, np.integer)) or not 0 <= int(config_id) <= 0xFFFF_FFFF:
        raise ValueError(f"config_id must be an integer in 0..4294967295, not {config_id!r}")
    return int(config_id)


def _capacities(capacity: Mapping | None) -> dict:
    caps = {space: SPACE_WORDS for space in Space}
    if capacity is not None:
        for space, words in capacity.items():
            space = Space(space)
            if not isinstance(words, int) or not 0 <= words <= SPACE_WORDS:
                raise ValueError(f"capacity of {space.name} must be an integer in "
                                 f"0..{SPACE_WORDS}, not {words!r}")
            caps[space] = words
    return caps


def image_words(sections: Mapping) -> int:
    """Total words of an image holding ``sections`` (``{space: n_words or array}``)."""
    return HEADER_WORDS + sum(1 + (n if isinstance(n, int) else len(n))
                              for n in sections.values()) + 1


def build_image(sections: Mapping, config_id: int, *, capacity: Mapping | None = None) -> bytes:
    """Pack sections into an image.

    Parameters
    ----------
    sections : dict of Space -> numpy.ndarray
        1-D arrays of u32 words (any integer dtype with values in 0..2**32-1), written in the
        dict's order; each space at most once.
    config_id : int
        The engine's ``ArrayConfig.config_id`` (u32).
    capacity : dict of Space -> int, optional
        Words each space holds (default :data:`SPACE_WORDS`); larger sections are refused.

    Raises
    ------
    ValueError
        On a bad argument, naming it.
    """
    config_id = _check_config_id(config_id)
    caps = _capacities(capacity)
    if not isinstance(sections, Mapping):
        raise ValueError(f"sections must be a dict of Space -> array, not {type(sections).__name__}")
    if len(sections) > 0xFFFF:
        raise ValueError(f"an image holds at most 65535 sections, not {len(sections)}")
    body = []
    for key, words in sections.items():
        try:
            space = Space(key)
        except ValueError:
            raise ValueError(f"section key must be a Space ({', '.join(s.name for s in Space)}), "
                             f"not {key!r}") from None
        words = np.asarray(words)
        if words.ndim != 1 or (words.size and not np.issubdtype(words.dtype, np.integer)):
            raise ValueError(f"section {space.name} must be a 1-D integer array, "
                             f"not {words.dtype} of shape {words.shape}")
        if words.size and (int(words.min()) < 0 or int(words.max()) > 0xFFFF_FFFF):
            raise ValueError(f"section {space.name} words must be in 0..4294967295, "
                             f"not {int(words.min())}..{int(words.max())}")
        if len(words) > caps[space]:
            raise ValueError(f"section {space.name} has {len(words)} words; the space holds "
                             f"{caps[space]}")
        body.append(np.uint32(int(space) | len(words) << 8))
        body.extend(words.astype(np.uint32))
    total = HEADER_WORDS + len(body) + 1
    head = [MAGIC, VERSION | len(sections) << 16, config_id, total]
    data = np.array(head + body, dtype="<u4").tobytes()
    return data + struct.pack("<I", zlib.crc32(data))


def parse_image(image: bytes, *, config_id: int | None = None,
                capacity: Mapping | None = None) -> tuple[int, dict]:
    """Check and unpack an image.

    Parameters
    ----------
    image : bytes
        The image (the LOAD_IMAGE payload).
    config_id : int, optional
        The engine's config_id; a different one in the image is BAD_CONFIG. None: accept any.
    capacity : dict of Space -> int, optional
        Words each space holds (default :data:`SPACE_WORDS`).

    Returns
    -------
    config_id : int
        The image's config_id.
    sections : dict of Space -> numpy.ndarray
        uint32 words per space, in image order.

    Raises
    ------
    ImageError
        With ``.code`` the first failing check in byte order (see the module docstring).
    """
    if config_id is not None:
        config_id = _check_config_id(config_id)
    caps = _capacities(capacity)
    image = bytes(image)
    n_avail = len(image) // 4
    words = np.frombuffer(image[:4 * n_avail], dtype="<u4")

    def word(i: int) -> int:
        if i >= n_avail:
            raise ImageError(ErrorCode.BAD_SECTION,
                             f"image of {len(image)} bytes ends before word {i}")
        return int(words[i])

    if word(0) != MAGIC:
        raise ImageError(ErrorCode.BAD_MAGIC, f"magic is {word(0):#010x}, not {MAGIC:#010x}")
    version, n_sections = word(1) & 0xFFFF, word(1) >> 16
    if version != VERSION:
        raise ImageError(ErrorCode.BAD_VERSION, f"version is {version}, this engine reads {VERSION}")
    image_config = word(2)
    if config_id is not None and image_config != config_id:
        raise ImageError(ErrorCode.BAD_CONFIG, f"image packed for config_id {image_config:#010x}, "
                                               f"engine is {config_id:#010x}")
    total = word(3)
    if 4 * total != len(image):
        raise ImageError(ErrorCode.BAD_SECTION, f"header says {total} words ({4 * total} bytes), "
                                                f"image is {len(image)} bytes")
    crc_pos = total - 1
    pos = HEADER_WORDS
    sections = {}
    for index in range(n_sections):
        if pos >= crc_pos:
            raise ImageError(ErrorCode.BAD_SECTION, f"section {index} header at word {pos} is past "
                                                    f"the data (CRC at word {crc_pos})")
        head = word(pos)
        space_code, n_words = head & 0xFF, head >> 8
        if space_code not in Space._value2member_map_:
            raise ImageError(ErrorCode.BAD_SECTION, f"section {index}: unknown space {space_code}")
        space = Space(space_code)
        if space in sections:
            raise ImageError(ErrorCode.BAD_SECTION, f"section {index}: space {space.name} repeated")
        if n_words > caps[space]:
            raise ImageError(ErrorCode.BAD_SECTION, f"section {index}: {n_words} words for "
                                                    f"{space.name}, which holds {caps[space]}")
        if pos + 1 + n_words > crc_pos:
            raise ImageError(ErrorCode.BAD_SECTION, f"section {index}: {n_words} words from word "
                                                    f"{pos + 1} run past the CRC at word {crc_pos}")
        sections[space] = words[pos + 1:pos + 1 + n_words].astype(np.uint32)
        pos += 1 + n_words
    if pos != crc_pos:
        raise ImageError(ErrorCode.BAD_SECTION, f"sections end at word {pos}, CRC is at word "
                                                f"{crc_pos}")
    crc = zlib.crc32(image[:4 * crc_pos])
    if word(crc_pos) != crc:
        raise ImageError(ErrorCode.BAD_IMAGE_CRC, f"image CRC is {word(crc_pos):#010x}, "
                                                  f"computed {crc:#010x}")
    return image_config, sections
