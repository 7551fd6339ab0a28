"""Shared fixtures of the RTL tests: simulator availability and the engine configurations.

Every cocotb run goes through :func:`bench.rtl.run_rtl` (one simulator build per array
configuration, cached under ``sim_build/``; many cases per run). Tests are marked ``icarus`` or
``verilator`` so ``-m`` picks a simulator; sweeps are marked ``slow``.
"""

import shutil

import pytest

from hw.array import ArrayConfig
from hw.descriptors import DESC_HEADER_WORDS, LAYER_FIELDS, check_descriptors
from hw.memory_map import Space

#: The engine the RTL tests build: the Arty A7-35T's 8 x 8 array, memories big enough for
#: FashionNet (dense) and every random case, so one build serves all of them.
SIM_CONFIG = ArrayConfig(rows=8, cols=8, p_max=16, weight_depth=16384, table_depth=256,
                         param_depth=512, act_depth=20480, max_layers=8)
#: A small, non-square array (more tiles, more partial blocks), Icarus only (fast to build).
SMALL_CONFIG = ArrayConfig(rows=4, cols=2, p_max=16, weight_depth=4096, table_depth=256,
                           param_depth=512, act_depth=4096, max_layers=8)


def with_descriptor_words(sections, words):
    """A copy of an image's ``sections`` with DESCRIPTORS words set: ``{index: value}``."""
    out = dict(sections)
    out[Space.DESCRIPTORS] = sections[Space.DESCRIPTORS].copy()
    for index, value in words.items():
        out[Space.DESCRIPTORS][index] = value
    return out


def runaway_sections(sections, config):
    """``sections`` with a first layer that the engine's model check passes and that runs far
    longer than a host waits: it runs as many frames, one by one, as ``config``'s activation
    memory has bytes (``hw.descriptors.layer_limits``), its input a byte further up each time and
    its output in place. Only after hundreds of passes does its input map reach the memory's
    end (where the address guard would stop it). The host gives up on it first and the engine
    must abort it."""
    at = DESC_HEADER_WORDS
    out = with_descriptor_words(sections, {at + LAYER_FIELDS.index("frames"): config.act_depth,
                                           at + LAYER_FIELDS.index("frame_in"): 1,
                                           at + LAYER_FIELDS.index("frame_out"): 0})
    check_descriptors(out[Space.DESCRIPTORS], config)     # the engine must load it
    return out


def overrun_sections(sections, config):
    """``sections`` with a first layer that the engine's model check passes (each field is in
    range) but whose output map passes the end of the activation memory: as many output rows as
    the memory has bytes. The engine's address guard must stop its INFER (ADDRESS_FAULT)."""
    at = DESC_HEADER_WORDS
    out = with_descriptor_words(sections, {at + LAYER_FIELDS.index("h_out"): config.act_depth})
    check_descriptors(out[Space.DESCRIPTORS], config)
    return out


def pytest_collection_modifyitems(config, items):
    if shutil.which("iverilog") is None:
        skip = pytest.mark.skip(reason="iverilog is not installed (apt-get install iverilog)")
        for item in items:
            if "icarus" in item.keywords:
                item.add_marker(skip)
