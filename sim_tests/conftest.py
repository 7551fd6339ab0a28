"""Shared fixtures of the RTL tests: simulator availability and the engine configurations.

Every cocotb run goes through :func:`bench.rtl.run_rtl` (one simulator build per array
configuration, cached under ``sim_build/``; many cases per run). Tests are marked ``icarus`` or
``verilator`` so ``-m`` picks a simulator; sweeps are marked ``slow``.
"""

import shutil

import pytest

from hw.array import ArrayConfig
from hw.layout import DESC_HEADER_WORDS, LAYER_FIELDS
from hw.memory_map import Space

#: The engine the RTL tests build: the Arty A7-35T's 8 x 8 array, memories big enough for
#: FashionNet (dense) and every random case, so one build serves all of them.
SIM_CONFIG = ArrayConfig(rows=8, cols=8, p_max=16, weight_depth=16384, table_depth=256,
                         param_depth=512, act_depth=20480, max_layers=8)
#: A small, non-square array (more tiles, more partial blocks), Icarus only (fast to build).
SMALL_CONFIG = ArrayConfig(rows=4, cols=2, p_max=16, weight_depth=4096, table_depth=256,
                           param_depth=512, act_depth=4096, max_layers=8)


def with_descriptor_word(sections, index, value):
    """A copy of an image's ``sections`` with DESCRIPTORS word ``index`` set to ``value``."""
    out = dict(sections)
    out[Space.DESCRIPTORS] = sections[Space.DESCRIPTORS].copy()
    out[Space.DESCRIPTORS][index] = value
    return out


def runaway_sections(sections):
    """``sections`` with the first layer's ``h_out`` at 2**20: a well-formed model that runs for
    hours, which the host gives up on and the engine must abort."""
    return with_descriptor_word(sections, DESC_HEADER_WORDS + LAYER_FIELDS.index("h_out"), 1 << 20)


def pytest_collection_modifyitems(config, items):
    if shutil.which("iverilog") is None:
        skip = pytest.mark.skip(reason="iverilog is not installed (apt-get install iverilog)")
        for item in items:
            if "icarus" in item.keywords:
                item.add_marker(skip)
