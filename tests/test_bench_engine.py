"""bench.engine's derived columns (no RTL run): non-zeros per filter, the target flag, the bound."""

import pytest

from bench.engine import _bounds, _table, BENCH_CONFIG, TARGET_NNZ_PER_FILTER
from bench.layers import random_layer_model
from hw.layout import build_layout


def _plans(variant, c_in=32):
    q = random_layer_model(seed=1, c_in=c_in, c_out=32, h=14, w=14, stride=2, variant=variant)
    return build_layout(q, BENCH_CONFIG).layers


def test_nnz_per_filter_and_target():
    # PSD2_P8: per period of 8 channels, 7 kernels of 2 taps and the diagonal one of 9.
    b = _bounds(_plans("PSD2_P8"), BENCH_CONFIG)
    assert b["nnz_per_filter"] == 4 * (7 * 2 + 9) and b["in_target"]
    # PS1_P9: one tap per kernel, 32 channels: below the target's 64.
    b = _bounds(_plans("PS1_P9"), BENCH_CONFIG)
    assert b["nnz_per_filter"] == 32 and not b["in_target"]
    assert TARGET_NNZ_PER_FILTER == 64


def test_bound_of_a_7x7_map():
    # 7 x 7 output on 8 columns: whatever the rows and groups do, at most 7/8 of the columns.
    b = _bounds(_plans("PS4_P4"), BENCH_CONFIG)
    assert 0 < b["tile_bound"] <= 7 / 8
    # Classes of 8 filters (P = 4) fill all 8 rows of one group, one output row per tile.
    assert b["tile_bound"] == pytest.approx(7 / 8)
    # Classes of 4 (P = 8) reach 7 / 8 only by mixing (the same class in two groups of 4 rows
    # would split 7 output rows in pairs: 49 / 64): four classes on four groups of 2 rows.
    b = _bounds(_plans("PSD2_P8"), BENCH_CONFIG)
    assert (b["mapping"], b["tile_bound"]) == ("4 groups, 4 classes a tile", pytest.approx(7 / 8))


def test_table_marks_target_rows():
    row = dict(case="c", variant="PS4_P4", cycles=100, macs=5000, utilization=0.78,
               dense_cycles=200, speedup=2.0, ideal_speedup=2.25, bit_exact=True,
               **_bounds(_plans("PS4_P4"), BENCH_CONFIG))
    line = _table([row]).splitlines()[1]
    assert "128*" in line and "0.875" in line and line.endswith("  " + row["mapping"])
