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


def test_row_bound_column():
    """The row bound over a layer: PS2_P6 on 32 filters (classes of 6, 6, 5, 5, 5, 5) fills at
    most 32 / 36 of the 8 x 8 engine's rows (four groups of 2 rows, 3 a class), below the 0.90
    target whatever the pixels; classes of 8 filters (PS4_P4) can fill them all."""
    b = _bounds(_plans("PS2_P6"), BENCH_CONFIG)
    assert b["in_target"] and b["row_bound"] == pytest.approx(32 / 36, abs=1e-4)
    assert b["tile_bound"] <= b["row_bound"]
    assert _bounds(_plans("PS4_P4"), BENCH_CONFIG)["row_bound"] == 1.0


def test_table_marks_target_rows():
    row = dict(case="c", variant="PS4_P4", cycles=100, macs=5000, utilization=0.78,
               dense_cycles=200, speedup=2.0, ideal_speedup=2.25, bit_exact=True,
               **_bounds(_plans("PS4_P4"), BENCH_CONFIG))
    line = _table([row]).splitlines()[1]
    assert "128*" in line and "0.875" in line and line.endswith("  " + row["mapping"])


def test_auto_shapes_fill_rows(monkeypatch):
    """run_auto_shapes: a layer whose --array auto shape is the benchmarked 8 x 8 copies its
    row; another runs on its own shape's engine (here the RTL runner is replaced by the exact
    cycle model, which the RTL tests hold it to)."""
    import bench.rtl
    from bench.engine import run_auto_shapes
    from hw.array import ArrayConfig
    seen = []

    def fake_run_rtl(config, cases, **kw):
        seen.append((config.rows, config.cols, len(cases)))
        out = []
        for case in cases:
            layout = build_layout(case.qmodel, config)
            out.append({"counters": {"cycles": layout.expected_cycles, "macs": layout.macs},
                        "bit_exact": True, "layout": layout})
        return out
    monkeypatch.setattr(bench.rtl, "run_rtl", fake_run_rtl)
    suite = (("fashionnet.conv3", 32, 32, 14, 14, 2),)
    rows = [dict(case="fashionnet.conv3", variant=v, cycles=1000, utilization=0.5, bit_exact=True,
                 mapping="m") for v in ("PS4_P4", "PSD2_P8")]
    run_auto_shapes(rows, suite=suite, variants=("PS4_P4", "PSD2_P8"), config=BENCH_CONFIG)
    ps4, psd = rows
    # Classes of 8 on a 7 x 7 map: 16 x 4 (flat tiles of 4 pixels); classes of 4 too since
    # session 18 (four mixed groups of 4 rows, flat tiles of 4 pixels with a port a group on
    # rows padded 14 -> 15: 13 tiles of the 49 pixels instead of 7 rows of 8 columns).
    assert seen == [(16, 4, 2)]
    # (The suite's first case is built with seed 0.)
    q = random_layer_model(seed=0, c_in=32, c_out=32, h=14, w=14, stride=2, variant="PS4_P4")
    assert ArrayConfig.shape_for_model(q) == (16, 4) and ps4["auto_shape"] == "16x4"
    plan = build_layout(q, BENCH_CONFIG.replace(rows=16, cols=4)).layers[0]
    assert ps4["auto_cycles"] == plan.cycles
    assert ps4["auto_utilization"] == pytest.approx(plan.macs / (64 * plan.cycles), abs=1e-4)
    q = random_layer_model(seed=0, c_in=32, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    lay = build_layout(q, BENCH_CONFIG.replace(rows=16, cols=4))
    assert lay.input_pitch == 15 and lay.layers[0].mapping == "4 groups, 4 classes a tile, flat"
    assert (psd["auto_shape"], psd["auto_cycles"]) == ("16x4", lay.layers[0].cycles)


def test_batch_bound_and_nnz():
    """Two frames of the 7 x 7 map: per-frame non-zeros unchanged, the bound 98 / 104."""
    from bench.engine import bench_config, parse_args
    q = random_layer_model(seed=1, c_in=32, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    cfg = bench_config(batch=2)
    assert cfg.act_depth == 2 * BENCH_CONFIG.act_depth
    b = _bounds(build_layout(q, cfg, batch=2).layers, cfg)
    assert b["nnz_per_filter"] == 4 * (7 * 2 + 9) and b["in_target"]
    assert b["tile_bound"] == pytest.approx(98 / 104, abs=1e-4)
    assert b["mapping"].endswith("2 frames as one map")
    assert parse_args(["--batch", "3"]).batch == 3
    for bad in ("0", "x"):
        with pytest.raises(SystemExit):
            parse_args(["--batch", bad])


def test_target_summary_counts_by_hand():
    """Three layer rows and a network: two in the utilization target (one at 0.95, one at 0.86
    capped by a row bound of 0.889), one outside it; speedups 0.99, 0.87 and 0.95 of ideal; the
    network row is left out of both counts."""
    from bench.engine import target_summary
    row = lambda case, variant, util, sp, target, rb: dict(
        case=case, variant=variant, utilization=util, speedup=sp, ideal_speedup=4.5,
        in_target=target, row_bound=rb)
    rows = [row("a", "PS4_P4", 0.95, 0.99 * 4.5, True, 1.0),
            row("b", "PS2_P6", 0.86, 0.87 * 4.5, True, 0.889),
            row("c", "PS1_P9", 0.50, 0.95 * 4.5, False, 0.889),
            row("Net (network)", "PSD2_P8", 0.10, 0.10, True, 1.0)]
    util, speed = target_summary(rows)
    assert util == ("utilization >= 0.90 where a filter has >= 64 non-zeros: 1 of 2 rows: below, "
                    "b PS2_P6 0.860 (row bound 0.889)")
    assert speed == "speedup >= 0.90 x ideal: 2 of 3 layer rows: below, b PS2_P6 0.870 (row bound 0.889)"
    rows[1].update(auto_shape="4x16", auto_utilization=0.97)
    rows[0].update(auto_shape="8x8", auto_utilization=0.95)
    assert target_summary(rows)[1] == "  on each layer's --array auto shape: 2 of 2 rows"
