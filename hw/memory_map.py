"""The engine's load-port address spaces: the contract between hw.image, host/ and gateware/.

The host's image and input frames reach the engine as 32-bit words, each tagged with an address
space and a word address inside it. What the words of each space mean (packing of descriptors,
period tables, weights, ...) is defined by :mod:`hw.layout`; the link layer only routes them.
"""

from enum import IntEnum

__all__ = ["Space", "SPACE_BITS", "ADDR_BITS", "WORD_BITS", "LEN_BITS", "COUNTERS"]

SPACE_BITS = 4
ADDR_BITS = 18
WORD_BITS = 32
#: Bits of a frame's input or output length in bytes (the core's ``input_len`` / ``output_len``):
#: a whole load-word space of bytes.
LEN_BITS = ADDR_BITS + 2


class Space(IntEnum):
    """Address spaces of the engine's load port."""

    DESCRIPTORS = 0  #: layer descriptors the sequencer runs
    TABLES = 1       #: period tables (index-buffer contents) of every layer
    WEIGHTS = 2      #: non-zero int8 weights in CSR_P order
    BIAS = 3         #: int32 bias per output channel
    REQUANT = 4      #: requantization multiplier and shift per output channel
    INPUT = 5        #: one int8 input frame, C x H x W order, 4 bytes a word, little-endian


#: Performance counters, in the order the engine reports them (32 bits each, reset per frame).
COUNTERS = ("cycles", "busy", "stalls", "macs")
