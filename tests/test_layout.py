"""Tests of hw.layout: word images decoded back independently, input/output encoding, the
cycle model's hand-worked values, refusals."""

import numpy as np
import pytest

from bench.layers import random_layer_model, random_chain_model
from hw.array import ArrayConfig
from hw.cycles import LAYER_OVERHEAD, drain_cycles, layer_cycles
from hw import layout as hw_layout
from hw.layout import build_layout
from hw.descriptors import LAYER_FIELDS, DESC_HEADER_WORDS, DESC_LAYER_WORDS
from hw.memory_map import Space

from bench.descriptor_cases import small_engine, hand_layer, hand_section


def _model():
    return random_chain_model([dict(c_out=6), dict(c_out=11, variant="PSD2_P8", stride=2),
                               dict(c_out=5, kind="fc")], c_in=2, h=5, w=7, seed=3)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_weights_decode_to_the_dense_tensor(groups):
    """Every row group holds the block's filters (row i: filter r + P * (b * gs + i mod gs)); an
    FC whose inputs are split over the groups holds in group g's rows the chunk g of its inputs
    (channels g * c_in .. of its K = G * c_in)."""
    q = _model()
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, groups=groups)
    lay = build_layout(q, cfg)
    R = cfg.rows
    wbytes = lay.sections[Space.WEIGHTS].view(np.uint8).view(np.int8).reshape(-1, 4 * cfg.words_per_entry)[:, :R]
    for plan, layer in zip(lay.layers, q.layers):
        f = plan.fields
        P = f["period"]
        masks = lay.sections[Space.TABLES][f["table_base"]:f["table_base"] + P]
        split = f["mix"] == 2
        w = np.asarray(layer.weight).reshape(layer.c_out, f["c_in"] * (f["groups"] if split else 1), -1)
        rebuilt = np.zeros_like(w)
        e = f["weight_base"]
        gs = R // f["groups"]
        for r in range(P):
            for b in range(-(-plan.class_filters[r] // gs)):
                k = 0
                for c in range(f["c_in"]):
                    for t in [t for t in range(9) if masks[(r + c) % P] >> t & 1]:
                        for i in range(R):
                            fil = r + P * (b * gs + i % gs)
                            if fil < layer.c_out:
                                if split:
                                    rebuilt[fil, i // gs * f["c_in"] + c, t] = wbytes[e + k, i]
                                elif i < gs:
                                    rebuilt[fil, c, t] = wbytes[e + k, i]
                                else:
                                    assert wbytes[e + k, i] == rebuilt[fil, c, t]
                            else:
                                assert wbytes[e + k, i] == 0
                        k += 1
                e += k
        assert np.array_equal(rebuilt, w), plan.name


def test_descriptors_params_and_regions():
    q = _model()
    cfg = ArrayConfig.for_model(q, rows=4, cols=4)
    lay = build_layout(q, cfg)
    d = lay.sections[Space.DESCRIPTORS]
    assert list(d[:4]) == [3, 2 * 5 * 7, 5, lay.layers[-1].fields["out_base"]]
    for i, plan in enumerate(lay.layers):
        at = DESC_HEADER_WORDS + i * DESC_LAYER_WORDS
        assert [int(v) for v in d[at:at + len(LAYER_FIELDS)]] == [plan.fields[n] for n in LAYER_FIELDS]
        # ping-pong: each layer reads what the previous one wrote
        if i:
            assert plan.fields["in_base"] == lay.layers[i - 1].fields["out_base"]
    bias = lay.sections[Space.BIAS].astype(np.uint32).view(np.int32)
    assert np.array_equal(bias, np.concatenate([l.bias for l in q.layers]))
    rq = lay.sections[Space.REQUANT]
    assert np.array_equal(rq & 0xFFFF, np.concatenate([l.multiplier for l in q.layers]))
    assert np.array_equal(rq >> 16, np.concatenate([l.shift for l in q.layers]))
    # FC is a 1x1 conv on its flattened input (132 values). Its 5 filters on 4 rows: one group,
    # 2 blocks of 4 filters x 132 steps (264 cycles); inputs split in 2, 3 blocks of 2 x 66
    # (198); split in 4, 5 blocks of 1 x 33 (165): a map of 4 rows of 33 values, group g
    # reading row g.
    fc = lay.layers[-1].fields
    assert cfg.groups == 4
    assert (fc["c_in"], fc["h_in"], fc["w_in"], fc["hw_in"], fc["k"], fc["groups"], fc["mix"]) == \
        (33, 4, 33, 1, 1, 4, 2)
    one = build_layout(q, cfg.replace(groups=1)).layers[-1].fields
    assert (one["c_in"], one["h_in"], one["w_in"], one["k"], one["mix"]) == (11 * 3 * 4, 1, 1, 1, 0)


def test_input_words_and_decode():
    q = random_layer_model(seed=1, c_in=1, c_out=2, h=3, w=3)
    lay = build_layout(q, ArrayConfig.for_model(q, rows=2, cols=2))
    frame = np.arange(-4, 5, dtype=np.int8).reshape(1, 3, 3)
    words = lay.input_words(frame)
    assert [hex(w) for w in words] == ["0xfffefdfc", "0x3020100", "0x4"]
    out = lay.decode_output(bytes(range(18)))
    assert out.shape == (2, 3, 3) and out[1, 0, 0] == 9
    with pytest.raises(ValueError, match=r"shape \[1, 3, 3\], not \[3, 3\]"):
        lay.input_words(frame[0])
    with pytest.raises(ValueError, match="must be 18 bytes"):
        lay.decode_output(b"\0")


def test_cycle_model_hand_worked():
    # One class of 3 filters, R = 4: 2 tiles of 9 steps, no holds.
    assert layer_cycles((9,), (3,), 2, rows=4, cols=4) == LAYER_OVERHEAD + 2 + 18 + drain_cycles(4, 4)
    # Steps shorter than R: each tile's last step waits until R cycles after the previous one;
    # the first tile starts with the hold window already open (CLASS + PREP count).
    assert layer_cycles((2,), (1,), 3, rows=8, cols=2) == LAYER_OVERHEAD + 2 + 2 + 8 + 8 + drain_cycles(8, 2)
    # Empty trailing classes overlap the drain; empty leading ones cost one cycle each.
    assert layer_cycles((9, 9), (1, 0), 1, rows=4, cols=4) == layer_cycles((9,), (1,), 1, rows=4, cols=4)
    assert layer_cycles((9, 9), (0, 1), 1, rows=4, cols=4) == layer_cycles((9,), (1,), 1, rows=4, cols=4) + 1


def test_macs_match_method_formula():
    q = random_layer_model(seed=2, c_in=8, c_out=16, h=6, w=6, variant="PSD4_P8")
    lay = build_layout(q, ArrayConfig.for_model(q))
    (p,) = lay.layers
    # METHOD.md boosted count: [(C_i/P) k^2 + (C_i - C_i/P) n] H_o W_o C_o
    assert p.macs == (1 * 9 + 7 * 4) * 36 * 16
    assert p.dense_macs == 9 * 36 * 16 * 8


def test_pool_layout_and_cycles():
    """A pooled layer: the conv rows the pool reads in h_out (an odd last row, which the pool
    drops, is not computed) and the conv width in w_out, the stored (pooled, floored) map in
    out_w/out_hw, the next layer reads the pooled map, and pooling costs POOL_CYCLES (no extra
    tiles)."""
    from hw.cycles import POOL_CYCLES
    q = random_chain_model([dict(c_out=6, pool=True), dict(c_out=4, stride=2, pool=True),
                            dict(c_out=3, kind="fc")], c_in=2, h=9, w=11, seed=2)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4)
    lay = build_layout(q, cfg)
    f0, f1 = lay.layers[0].fields, lay.layers[1].fields
    assert (f0["pool"], f0["h_out"], f0["w_out"], f0["out_w"], f0["out_hw"]) == (1, 8, 11, 5, 20)
    assert (f1["c_in"], f1["h_in"], f1["w_in"]) == (6, 4, 5)
    assert (f1["h_out"], f1["w_out"], f1["out_w"], f1["out_hw"]) == (2, 3, 1, 1)
    assert lay.layers[2].fields["c_in"] == 4
    assert lay.output_shape == (3, 1, 1)
    def plain(h):
        q2 = random_chain_model([dict(c_out=6), dict(c_out=4, stride=2), dict(c_out=3, kind="fc")],
                                c_in=2, h=h, w=11, seed=2)
        return build_layout(q2, ArrayConfig.for_model(q2, rows=4, cols=4)).layers[0]
    # Two row groups take conv rows in pairs: 8 rows, 11 columns in tiles of 4 -> 4 x 3 tiles
    # (the 9th row would have added 3).
    assert (f0["groups"], f0["flat"], lay.layers[0].tiles) == (2, 0, 4 * 3)
    assert lay.layers[0].macs == plain(8).macs == plain(9).macs * 8 // 9
    assert layer_cycles((9,), (3,), 2, rows=4, cols=4, pool=True) == \
        layer_cycles((9,), (3,), 2, rows=4, cols=4) + POOL_CYCLES
    assert drain_cycles(4, 4, pool=True) == drain_cycles(4, 4) + POOL_CYCLES


def test_refusals():
    q = random_layer_model(seed=0, c_in=2, c_out=2, h=1, w=4)
    q.layers[0].pool = True
    with pytest.raises(ValueError, match="pool needs a conv output of at least 2 x 2"):
        build_layout(q, ArrayConfig())


def test_layer_mapping_picks_the_fastest():
    """Row groups by the cycle model: classes of R/4 filters take four groups (a quarter of the
    tiles), full classes one, a tie the fewest weight entries; the fold where the map is C/2
    wide; never more groups than the config has."""
    from hw.layout import layer_mapping
    # 8 classes of 2 filters, 16 steps each, 8 x 8 conv output, R = C = 8.
    steps, per = (16,) * 8, (2,) * 8
    m4 = layer_mapping(steps, per, 8, 8, rows=8, cols=8, groups=4)
    assert (m4["groups"], m4["fold"], m4["group_rows"], m4["tiles"]) == (4, 0, 2, 2)
    assert m4["cycles"] == layer_cycles(steps, per, 2, rows=8, cols=8, group_rows=2)
    assert m4["entries"] == 8 * 16
    m2 = layer_mapping(steps, per, 8, 8, rows=8, cols=8, groups=2)
    assert (m2["groups"], m2["tiles"]) == (2, 4) and m2["cycles"] > m4["cycles"]
    assert layer_mapping(steps, per, 8, 8, rows=8, cols=8, groups=1)["groups"] == 1
    # One class of 8 filters: one group (more would only add blocks).
    m = layer_mapping((18,), (8,), 8, 8, rows=8, cols=8, groups=4)
    assert (m["groups"], m["tiles"], m["entries"]) == (1, 8, 18)
    # 5 filters: 1 block x 8 rows, 2 x 4 (a tie: fewer entries wins), or 3 blocks x 2 tiles.
    m = layer_mapping((18,), (5,), 8, 8, rows=8, cols=8, groups=4)
    assert (m["groups"], m["tiles"], m["entries"]) == (4, 2, 54)
    m = layer_mapping((18,), (5,), 8, 8, rows=8, cols=8, groups=2)
    assert (m["groups"], m["entries"]) == (1, 18)
    # A map C/2 wide with full classes folds (also on a four-group engine).
    m = layer_mapping((18,), (16,), 7, 4, rows=8, cols=8, groups=4)
    assert (m["groups"], m["fold"], m["tiles"]) == (1, 1, 4)


def test_four_groups_cycle_model_and_pool():
    """Four groups: tiles of 4 output rows; a pooled layer costs POOL_CYCLES more, same tiles."""
    from hw.cycles import DESC_CYCLES, POOL_CYCLES
    q = random_layer_model(seed=4, c_in=3, c_out=16, h=7, w=9, variant="PSD2_P8")
    qp = random_layer_model(seed=4, c_in=3, c_out=16, h=7, w=9, variant="PSD2_P8", pool=True)
    cfg = ArrayConfig(rows=8, cols=4, groups=4)
    (p,), (pp,) = build_layout(q, cfg).layers, build_layout(qp, cfg).layers
    assert p.fields["groups"] == 4 and p.tiles == 2 * 3          # ceil(7/4) x ceil(9/4)
    # (A model's first layer loads its descriptor while the engine idles, before the start.)
    assert p.cycles == layer_cycles(p.steps, p.class_filters, 6, rows=8, cols=4,
                                    group_rows=2) - DESC_CYCLES
    # The pool drops conv row 6, which is not computed: rows 0-5 still take 2 x 3 tiles of four
    # groups, and 6 of the 7 rows' MACs.
    assert pp.cycles == p.cycles + POOL_CYCLES and pp.tiles == p.tiles
    assert pp.macs == p.macs * 6 // 7 and pp.fields["h_out"] == 6
    assert (pp.fields["out_w"], pp.fields["out_hw"]) == (4, 12)


def test_row_bound_hand_worked():
    """Worked by hand: rotation classes ``f mod P`` of 32 filters at P = 6 hold 6, 6, 5, 5, 5, 5
    filters. On 8 rows: one group (8 rows) or two (4 rows) take 2 x 8 or 2 x 4 rows a class, 48
    slots; four groups of 2 rows take 3 x 2 a class, 36 slots: 32 / 36. 64 filters at P = 6
    (11 x 4, 10 x 2): 6 x 2 x 4 + 5 x 2 x 2 = 68 slots on four groups, 72 on two. 64 at P = 9 (8, then
    7 x 8): 72 slots on any grouping. Classes of 4 (P = 8, 32 filters) fill groups of 4 or 2."""
    from hw.layout import row_bound, tile_bound
    assert row_bound((6, 6, 5, 5, 5, 5), rows=8, groups=4) == pytest.approx(32 / 36)
    assert row_bound((6, 6, 5, 5, 5, 5), rows=8, groups=2) == pytest.approx(32 / 48)
    assert row_bound((11,) * 4 + (10,) * 2, rows=8, groups=4) == pytest.approx(64 / 68)
    assert row_bound((11,) * 4 + (10,) * 2, rows=8, groups=2) == pytest.approx(64 / 72)
    assert row_bound((8,) + (7,) * 8, rows=8, groups=4) == pytest.approx(64 / 72)
    assert row_bound((8,) + (7,) * 8, rows=4, groups=4) == pytest.approx(64 / 64)
    assert row_bound((4,) * 8, rows=8, groups=1) == pytest.approx(0.5)
    assert row_bound((4,) * 8, rows=8, groups=2) == 1.0
    # A real layer (FashionNet's conv3 shape at PS2_P6): its classes, and utilization under it.
    q = random_layer_model(seed=1, c_in=32, c_out=32, h=14, w=14, stride=2, variant="PS2_P6")
    cfg = ArrayConfig(rows=8, cols=8, groups=4, p_max=8, act_depth=16384)
    (p,) = build_layout(q, cfg).layers
    assert sorted(p.class_filters) == [5, 5, 5, 5, 6, 6]
    bound = row_bound(p.class_filters, rows=8, groups=4)
    assert tile_bound(p, rows=8, cols=8) <= bound < 0.9


def test_tile_bound_hand_worked():
    """FashionNet's conv3 shape (32 -> 32, 14x14 -> 7x7, stride 2) at PSD2_P8 on an 8x8 array with
    two groups: classes of 4 filters fill the 4 rows of a group. With the same class in both
    groups a tile holds 2 output rows of 8 columns, so a class covers 7x7 pixels with
    ceil(7/2) * ceil(7/8) = 4 tiles of 2 x 8: 49 / 64 of the tile slots, whatever the steps.
    Mixing two classes (one per group) on one output row a tile: 7 tiles of 8 columns per pair of
    classes, 49 / 56."""
    from hw.layout import tile_bound, layer_mapping
    q = random_layer_model(seed=1, c_in=32, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    cfg = ArrayConfig(rows=8, cols=8, groups=2, p_max=8, act_depth=16384)
    (p,) = build_layout(q, cfg).layers
    assert (p.fields["groups"], p.fields["mix"], p.tiles) == (2, 1, 7)
    assert p.class_filters == (4,) * 8 and min(p.steps) >= 8
    assert tile_bound(p, rows=8, cols=8) == pytest.approx(49 / 56)
    same = layer_mapping(p.steps, p.class_filters, 7, 7, rows=8, cols=8, groups=2)   # no c_in: no mix
    assert (same["groups"], same["mix"], same["tiles"]) == (2, 0, 4)
    L = p.steps[0]
    tile_cycles = lambda sets, tiles: sets * tiles * L        # one block of filters a set
    # Tiles alone: unmixed 8 classes x 4 tiles, mixed 4 sets x 7 tiles: 4 L fewer cycles, less
    # at most the 8 cycles the per-class overheads can differ by.
    assert same["cycles"] - p.cycles > tile_cycles(8, 4) - tile_cycles(4, 7) - 8
    # The engine's cycle count only adds per-layer overhead to the tiles' cycles.
    assert p.macs / (64 * p.cycles) < tile_bound(p, rows=8, cols=8)
    # Steps shorter than R: a tile still takes R cycles (the drain), so the bound drops with L / R.
    q1 = random_layer_model(seed=1, c_in=1, c_out=8, h=8, w=8, variant="PSD1_P8")
    (p1,) = build_layout(q1, ArrayConfig(rows=8, cols=8, groups=1, p_max=8)).layers
    # One input channel: seven classes of one tap, the diagonal one (PSD) of nine.
    assert p1.steps == (1,) * 7 + (9,) and p1.class_filters == (1,) * 8
    # MACs (7 * 1 + 9) * 64 pixels; 8 tiles (one output row each) per class of max(L, 8) cycles.
    assert tile_bound(p1, rows=8, cols=8) == pytest.approx((16 * 64) / (64 * 8 * (7 * 8 + 9)))


def test_flat_tiles_hand_worked():
    """Flat tiles: C consecutive pixels of each region, never three output rows in one tile."""
    from hw.layout import flat_tiles
    assert flat_tiles(14, 14, cols=8, groups=1) == 25          # ceil(196 / 8)
    assert flat_tiles(14, 14, cols=8, groups=2) == 13          # regions of 7 x 14 = 98 pixels
    assert flat_tiles(7, 7, cols=8, groups=1) == 7             # w = C - 1: two rows at most
    assert flat_tiles(7, 7, cols=8, groups=2) is None          # 7 rows do not split in two
    # 4 x 5 on 8 columns: pixels 8 .. 15 are (1, 3) .. (3, 0), three rows.
    assert flat_tiles(4, 5, cols=8, groups=1) is None
    # ... but 2 x 5 ends at pixel 9: tiles (0, 0) .. (1, 2) and (1, 3) .. (1, 4).
    assert flat_tiles(2, 5, cols=8, groups=1) == 2
    assert flat_tiles(6, 4, cols=4, groups=2) == 3             # w = C: the plain tiles


def test_layer_mapping_flat():
    """FashionNet's conv2 shape (14 x 14 output) on an 8 x 8 array: rows of 14 pixels fill 16
    columns in plain tiles (28 a class), flat tiles fill 8 of 8 but the last (25); classes of
    4 filters take two flat regions of 7 rows (13 tiles of 2 x 8 pixels), which needs four ports."""
    from hw.layout import layer_mapping, tile_bound
    m = layer_mapping((64,) * 4, (8,) * 4, 14, 14, rows=8, cols=8, groups=2)
    assert (m["groups"], m["flat"], m["fold"], m["tiles"]) == (1, 1, 0, 25)
    m = layer_mapping((74,) * 8, (4,) * 8, 14, 14, rows=8, cols=8, groups=4)
    assert (m["groups"], m["flat"], m["tiles"]) == (2, 1, 13)
    m = layer_mapping((74,) * 8, (4,) * 8, 14, 14, rows=8, cols=8, groups=2)   # two ports only
    assert (m["groups"], m["flat"], m["tiles"]) == (2, 0, 14)
    # Mixed classes at stride 1 (w_in = w_out): one port a group reads a flat tile (its pixels
    # are consecutive input bytes), so two ports take two mixed groups over the whole map.
    m = layer_mapping((74,) * 8, (4,) * 8, 14, 14, rows=8, cols=8, groups=2, c_in=16, contiguous=True)
    assert (m["groups"], m["flat"], m["mix"], m["tiles"]) == (2, 1, 1, 25)
    # Pooled layers never run flat (pooling pairs need whole rows); a map C wide needs no wrap.
    assert layer_mapping((64,) * 4, (8,) * 4, 14, 14, rows=8, cols=8, groups=2, pool=True)["flat"] == 0
    assert layer_mapping((64,) * 4, (8,) * 4, 8, 8, rows=8, cols=8, groups=2)["flat"] == 0
    # The descriptor of a flat layer, and its bound: 196 of 200 pixel slots per class.
    q = random_layer_model(seed=2, c_in=16, c_out=32, h=28, w=28, stride=2, variant="PS4_P4")
    (p,) = build_layout(q, ArrayConfig(rows=8, cols=8, groups=2, p_max=4, act_depth=20480)).layers
    f = p.fields
    assert (f["flat"], f["flat_h"], f["flat_n"], f["flat_in"], p.tiles) == (1, 14, 196, 2 * 14 * 28, 25)
    assert tile_bound(p, rows=8, cols=8) == pytest.approx(196 / 200)


def test_mix_allowed():
    """Mixing needs rotation to line the classes up (P divides c_in), whole sets of G classes
    (G divides P) of equal size (P divides c_out), and no pooling."""
    from hw.layout import mix_allowed, mixed_classes
    assert mix_allowed(8, 32, 32, groups=2) and mix_allowed(8, 16, 8, groups=4)
    assert not mix_allowed(6, 32, 64, groups=2)          # 32 channels are not whole periods
    assert not mix_allowed(8, 32, 36, groups=2)          # classes of 5 and 4 filters
    assert not mix_allowed(6, 36, 36, groups=4)          # 6 classes are not sets of 4
    assert not mix_allowed(8, 32, 32, groups=2, pool=True)
    assert not mix_allowed(8, 32, 32, groups=1)
    assert mixed_classes((4,) * 8, 4) == (4, 0, 0, 0, 4, 0, 0, 0)


def test_mixed_weight_entries_hand_worked():
    """A mixed layer's weight entries, read back from the WEIGHTS words: 8 -> 8 channels, PS2_P4
    ... on 2 rows and two groups (one row each): set r = 0 holds filter 0 in row 0 and filter 1 in
    row 1; step k of class 0's walk is (c, tap) and row 1 must hold filter 1's weight at channel
    (c - 1) mod 8, the same tap (whose support slot (1 + c - 1) mod 4 is class 0's at c); set
    r = 2 likewise with class 2's walk and filters 2, 3."""
    q = random_layer_model(seed=6, c_in=8, c_out=8, h=3, w=3, variant="PS3_P4")
    cfg = ArrayConfig(rows=2, cols=4, groups=2, p_max=4)
    layout = build_layout(q, cfg)
    (p,) = layout.layers
    assert p.fields["mix"] == 1 and p.fields["groups"] == 2
    assert p.fields["mix_wrap"] == 8 * 3 * 3
    (l,) = q.layers
    table = l.period_table
    walks = {r: [(c, t) for c in range(8) for t in sorted(table[(r + c) % 4])] for r in (0, 2)}
    walk = walks[0]
    words = layout.sections[Space.WEIGHTS].view(np.uint8).view(np.int8)
    wpe = 4 * cfg.words_per_entry
    entries = words.reshape(-1, wpe)[:, :2]
    # Sets r = 0 and r = 2, one block each (classes of 2 filters on rows of one group each).
    assert len(entries) == 2 * 2 * len(walk)
    for block, r in enumerate((0, 2)):
        for b in range(2):
            e = entries[(block * 2 + b) * len(walk):(block * 2 + b + 1) * len(walk)]
            for g in range(2):
                f = r + g + 4 * b
                want = [l.weight[f, (c - g) % 8, t // 3, t % 3] for c, t in walks[r]]
                assert list(e[:, g]) == want, (r, b, g)


def test_schedule():
    """Layout.schedule: each layer's mapping in words and its utilization, recomputed here from
    MACs and cycles, beside its mapping's bound; a FashionNet-like chain runs flat, mixed, plain."""
    from hw.layout import tile_bound
    q = random_chain_model([dict(c_out=16, variant="PS4_P4"), dict(c_out=32, stride=2, variant="PSD2_P8"),
                            dict(c_out=32, stride=2, variant="PSD2_P8"), dict(c_out=10, kind="fc")],
                           c_in=1, h=28, w=28, seed=3)
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=4)
    layout = build_layout(q, cfg)
    rows = layout.schedule()
    assert [r["layer"] for r in rows] == [l.name for l in q.layers]
    assert sum(r["cycles"] for r in rows) == layout.expected_cycles
    for r, p in zip(rows, layout.layers):
        assert r["utilization"] == pytest.approx(p.macs / (64 * p.cycles), abs=1e-4)
        assert r["tile_bound"] == pytest.approx(tile_bound(p, rows=8, cols=8), abs=1e-4)
        assert r["utilization"] <= r["tile_bound"]
    # 28x28 on 8 columns, classes of 4 filters but one input channel (no mixing): two groups of
    # 4 rows on two flat regions of 14 rows (49 tiles, 56 plain); 14x14 and 7x7 with classes of
    # 4 and 16 / 32 channels: mixed (two classes on flat tiles, four on plain rows); FC (10
    # filters, 512 inputs): its inputs split in 4 (5 blocks of 2 filters x 128 steps instead of
    # 2 blocks of 8 x 512).
    assert [r["mapping"] for r in rows] == ["2 groups, flat in 2 regions", "2 groups, 2 classes a tile, flat",
                                            "4 groups, 4 classes a tile", "4 groups, inputs split in 4"]
    assert rows[3]["tile_bound"] == pytest.approx(10 * 512 / (64 * 5 * 128))


def test_batch_input_and_output_order():
    """A batch's maps: a conv's input and result tall (channel c of frame b at c*B*hw + b*hw),
    checked byte by byte; decode_output inverts it and encode_output is its inverse."""
    q = random_layer_model(seed=1, c_in=2, c_out=3, h=2, w=2)
    lay = build_layout(q, ArrayConfig.for_model(q, rows=2, cols=2, batch=2), batch=2)
    assert (lay.batch, lay.input_tall, lay.output_tall) == (2, True, True)
    assert (lay.input_len, lay.output_len) == (2 * 2 * 4, 2 * 3 * 4)
    x = np.arange(16, dtype=np.int8).reshape(2, 2, 2, 2)      # [b, c, y, x] = 8b + 4c + 2y + x
    got = lay.input_words(x).view(np.uint8).view(np.int8)
    want = [8 * b + 4 * c + p for c in range(2) for b in range(2) for p in range(4)]
    assert got.tolist() == want
    raw = np.arange(24, dtype=np.int8)                        # byte c*8 + b*4 + p
    out = lay.decode_output(raw.tobytes())
    assert out.shape == (2, 3, 2, 2) and out[1, 2, 0, 1] == 2 * 8 + 1 * 4 + 1
    assert np.array_equal(lay.encode_output(out), raw)
    with pytest.raises(ValueError, match=r"batch of 2 frames must have shape \[2, 2, 2, 2\]"):
        lay.input_words(x[0])
    with pytest.raises(ValueError, match=r"must be 24 bytes \(2 x \[3, 2, 2\]\)"):
        lay.decode_output(b"\0")


def test_batch_fc_input_frame_after_frame():
    """In a batch of 3 the layer before an FC writes frame after frame (the FC reads a frame's
    values as one vector, c_in bytes a frame), both run frame by frame from each frame's bases."""
    q = random_chain_model([dict(c_out=4), dict(c_out=5, kind="fc")], c_in=2, h=3, w=4, seed=2)
    lay = build_layout(q, ArrayConfig.for_model(q, rows=4, cols=4, batch=3), batch=3)
    conv, fc = (p.fields for p in lay.layers)
    assert (lay.input_tall, lay.output_tall) == (True, False)
    # conv: input tall (pitch 3 * 12, frames 12 apart), output frame after frame (pitch 12).
    assert (conv["hw_in"], conv["frame_in"], conv["out_hw"], conv["frame_out"]) == (36, 12, 12, 48)
    assert (conv["out_w"], conv["w_out"]) == (4, 4)
    assert (fc["hw_in"], fc["frame_in"], fc["out_hw"], fc["frame_out"]) == (1, 48, 1, 5)
    assert [p.passes for p in lay.layers] == [3, 3] and lay.layers[1].mapping.endswith("frame by frame")
    out = lay.decode_output(np.arange(15, dtype=np.int8).tobytes())
    assert out.shape == (3, 5, 1, 1) and out[2, 1, 0, 0] == 11


@pytest.mark.parametrize("groups", [1, 4])
def test_batch_of_two_fc_in_columns(groups):
    """In a batch of two the layer before an FC writes the frames interleaved (value v of frame
    b at v * 2 + b: its pixels 2 bytes apart, ``out_w = 2 * w_out``), and the FC takes the two
    frames in two columns in one pass: each byte the conv writes (frame b, filter f, pixel y, x
    at ``out_base + b * frame_out + f * out_hw + y * out_w + 2 x``) is the one the FC reads for
    value ``f * hw + y * w + x`` in column b (``in_base + g * w_in + c * hw_in + b``, chunk g of
    the split inputs); its result is tall (``f * 2 + b``). The FC costs what one frame's does."""
    q = random_chain_model([dict(c_out=4), dict(c_out=5, kind="fc")], c_in=2, h=3, w=4, seed=2)
    config = ArrayConfig.for_model(q, rows=4, cols=4, groups=groups, batch=2)
    one = build_layout(q, config)
    lay = build_layout(q, config, batch=2)
    conv, fc = (p.fields for p in lay.layers)
    assert (lay.input_tall, lay.output_tall) == (True, True)
    h, w, hw = 3, 4, 12
    assert (conv["out_hw"], conv["out_w"], conv["w_out"], conv["frame_out"]) == (2 * hw, 2 * w, w, 1)
    assert lay.layers[0].passes == 2
    G = fc["groups"]
    assert fc["mix"] == (2 if G > 1 else 0) and (G > 1) == (groups > 1)
    assert (fc["frames"], fc["frame_in"], fc["h_out"], fc["w_out"], fc["out_w"], fc["out_hw"]) == (1, 0, 1, 2, 2, 2)
    assert (fc["hw_in"], fc["c_in"], fc["h_in"]) == (2, 4 * hw // G, G)
    assert lay.layers[1].passes == 1 and lay.layers[1].columns == 2
    assert lay.layers[1].mapping.endswith("2 frames in its columns")
    written = {}
    for b in range(2):
        for f in range(4):
            for y in range(h):
                for x in range(w):
                    at = conv["out_base"] + b * conv["frame_out"] + f * conv["out_hw"] + y * conv["out_w"] + 2 * x
                    assert at not in written
                    written[at] = (b, f * hw + y * w + x)
    K = fc["c_in"]
    read = {fc["in_base"] + g * (fc["w_in"] if G > 1 else 0) + c * fc["hw_in"] + b: (b, g * K + c)
            for b in range(2) for g in range(G) for c in range(K)}
    assert read == written
    assert lay.layers[1].cycles == one.layers[1].cycles
    assert lay.layers[1].macs == 2 * one.layers[1].macs
    out = lay.decode_output(np.arange(10, dtype=np.int8).tobytes())
    assert out.shape == (2, 5, 1, 1) and out[1, 3, 0, 0] == 3 * 2 + 1


def test_batch_of_two_fc_in_columns_after_a_pooled_layer():
    """A pooled layer before an FC (session 22) also writes the two frames interleaved: its
    pooled map (5 x 7 conv output -> 2 x 3, the odd last row and column dropped: the row is not
    computed, ``h_out = 4``) with pooled
    pixels 2 bytes apart (``out_w = 2 * 3``, ``out_hw = 2 * 6``), so that the FC takes both
    frames in its columns, reading value ``f * 6 + y * 3 + x`` of frame b where the conv wrote
    pooled pixel (y, x) of filter f."""
    q = random_chain_model([dict(c_out=4, pool=True), dict(c_out=5, kind="fc")], c_in=2, h=5, w=7,
                           seed=3)
    config = ArrayConfig.for_model(q, rows=4, cols=4, groups=2, batch=2)
    conv, fc = (p.fields for p in build_layout(q, config, batch=2).layers)
    ph, pw = 2, 3
    assert (conv["pool"], conv["h_out"], conv["w_out"]) == (1, 4, 7)
    assert (conv["out_w"], conv["out_hw"], conv["frame_out"]) == (2 * pw, 2 * ph * pw, 1)
    lay = build_layout(q, config, batch=2)
    assert lay.layers[1].columns == 2 and lay.layers[1].passes == 1
    written = {conv["out_base"] + b * conv["frame_out"] + f * conv["out_hw"] + y * conv["out_w"] + 2 * x:
               (b, f * ph * pw + y * pw + x)
               for b in range(2) for f in range(4) for y in range(ph) for x in range(pw)}
    G, K = fc["groups"], fc["c_in"]
    read = {fc["in_base"] + g * (fc["w_in"] if G > 1 else 0) + c * fc["hw_in"] + b: (b, g * K + c)
            for b in range(2) for g in range(G) for c in range(K)}
    assert read == written


def test_batch_of_two_fc_in_columns_after_a_depth_first_prefix():
    """With the layer before the FC the last of a depth-first prefix, each of its per-frame runs
    writes its frame interleaved (from the map's base + b, pixels 2 bytes apart): each byte is
    the one the FC reads for that value in that frame's column."""
    q = random_chain_model([dict(c_out=8, stride=2), dict(c_out=6), dict(c_out=5, kind="fc")],
                           c_in=2, h=6, w=12, seed=7)
    config = ArrayConfig.for_model(q, rows=4, cols=4, groups=2, batch=2).replace(max_layers=8)
    lay = build_layout(q, config, batch=2, depth_first=2)
    *prefix, fc = lay.layers
    assert [p.frame for p in prefix] == [0, 0, 1, 1] and fc.columns == 2 and fc.passes == 1
    h, w = 3, 6
    written = {}
    for run in prefix[1::2]:
        f = run.fields
        assert (f["out_w"], f["w_out"], f["out_hw"], f["frame_out"]) == (2 * w, w, 2 * h * w, 0)
        for c in range(6):
            for y in range(h):
                for x in range(w):
                    at = f["out_base"] + c * f["out_hw"] + y * f["out_w"] + 2 * x
                    assert at not in written
                    written[at] = (run.frame, c * h * w + y * w + x)
    f = fc.fields
    G, K = f["groups"], f["c_in"]
    read = {f["in_base"] + g * (f["w_in"] if G > 1 else 0) + c * f["hw_in"] + b: (b, g * K + c)
            for b in range(2) for g in range(G) for c in range(K)}
    assert read == written


def test_padded_rows():
    """A stride-2 layer on padded rows, worked by hand. Its 6-pixel output rows (12 -> 6) wrap
    in the middle of 8-column flat tiles: the tile's second output row's input starts
    ``2 * (w_in - 6)`` bytes after where the first row's would run on, which with ``w_in = 12``
    is 12 bytes, no whole number of the 16 bytes a bank row holds (2C banks). Padded to a pitch
    of 12 + ((6 - 12) mod 8) = 14 it is 16: one bank row, ``rd_jump`` = 1. The flat layer
    before it writes those rows, each tile's lanes past a row end ``14 - 12 = 2`` bytes further
    on (``wr_gap``, from the tile's ``split = w_out - x0``). Every byte each rule addresses is
    checked against the map's definition, and no padding byte is ever read."""
    from hw.layout import _padded_pitch
    q = random_chain_model([dict(c_out=32, variant="PSD2_P16"), dict(c_out=32, stride=2, variant="PSD2_P16"),
                            dict(c_out=4, kind="fc")], c_in=16, h=12, w=12, seed=5)
    config = ArrayConfig.for_model(q, rows=8, cols=8, groups=4)
    C = config.cols
    lay = build_layout(q, config)
    l0, l1, _ = (p.fields for p in lay.layers)
    assert lay.input_pitch == 12 and lay.input_len == 16 * 12 * 12     # the input is not padded
    assert (l0["w_out"], l0["out_w"], l0["out_hw"]) == (12, 14, 12 * 14)
    assert (l1["w_in"], l1["hw_in"], l1["w_out"], l1["stride"]) == (14, 12 * 14, 6, 2)
    assert (l0["flat"], l1["flat"], l1["mix"], l1["groups"]) == (1, 1, 1, 4)
    jump = 2 * (l1["w_in"] - l1["w_out"]) // (2 * C)
    assert 2 * (l1["w_in"] - l1["w_out"]) == 2 * C * jump == 16
    # The writer: its flat tiles of C pixels, lanes past the row end (j >= split) gap bytes on.
    gap = l0["out_w"] - l0["w_out"]
    written = set()
    for f in range(32):
        for n0 in range(0, 12 * 12, C):
            y0, x0 = divmod(n0, 12)
            first = l0["out_base"] + f * l0["out_hw"] + y0 * l0["out_w"] + x0
            split = 12 - x0
            for j in range(min(C, 144 - n0)):
                y, x = divmod(n0 + j, 12)
                want = l0["out_base"] + f * l0["out_hw"] + y * l0["out_w"] + x
                assert first + j + (gap if j >= split else 0) == want
                written.add(want)
    # The reader: a tile of output pixels n0 .., tap (ky, kx), channel c; column j at n0_addr +
    # 2j, or from the split on (the next output row) jump bank rows further.
    read = set()
    for c in range(32):
        for n0 in range(0, 36, C):
            oy0, ox0 = divmod(n0, 6)
            split = 6 - ox0
            for ky in range(3):
                for kx in range(3):
                    base = l1["in_base"] + c * l1["hw_in"] + (2 * oy0 + ky - 1) * l1["w_in"] + 2 * ox0 + kx - 1
                    for j in range(min(C, 36 - n0)):
                        oy, ox = divmod(n0 + j, 6)
                        y, x = 2 * oy + ky - 1, 2 * ox + kx - 1
                        if not (0 <= y < 12 and 0 <= x < 12):
                            continue                    # zero padding, not read
                        want = l1["in_base"] + c * l1["hw_in"] + y * l1["w_in"] + x
                        assert base + 2 * j + (2 * C * jump if j >= split else 0) == want
                        read.add(want)
    assert read == written          # every byte written is read, and no padding byte is
    # The rule: the smallest pitch >= w with pitch = w_out (mod C); none where the taps reach
    # past the row (27 -> 14: the last output's taps read x = 27, the right zero padding).
    plans = hw_layout._plan_shapes(q, 8, 8)
    assert _padded_pitch(plans[1], 8) == 14 and _padded_pitch(plans[1], 4) == 14
    assert _padded_pitch(plans[0], 8) is None                     # stride 1
    odd = random_layer_model(seed=4, c_in=2, c_out=2, h=27, w=27, stride=2, variant="PSD2_P8")
    assert _padded_pitch(hw_layout._plan_shapes(odd, 8, 8)[0], 8) is None


def test_padded_input():
    """A padded input map is sent padded: row y of channel c at ``c * h * pitch + y * pitch``,
    zeros in the padding, ``input_len`` counting them (FashionNet's conv2 PSD2_P16: 28 -> 30)."""
    q = random_layer_model(seed=4, c_in=16, c_out=32, h=28, w=28, stride=2, variant="PSD2_P16")
    lay = build_layout(q, ArrayConfig.for_model(q, rows=8, cols=8, groups=4))
    assert lay.input_pitch == 30 and lay.input_len == 16 * 28 * 30
    assert lay.sections[Space.DESCRIPTORS][1] == lay.input_len
    x = np.random.default_rng(0).integers(-128, 128, (16, 28, 28)).astype(np.int8)
    stored = lay.input_words(x).view(np.uint8).view(np.int8)[:lay.input_len].reshape(16, 28, 30)
    assert np.array_equal(stored[:, :, :28], x) and not stored[:, :, 28:].any()
    # In a batch (tall: channel c of frame b at c * 2 * h * pitch + b * h * pitch).
    lay2 = build_layout(q, ArrayConfig.for_model(q, rows=8, cols=8, groups=4, batch=2), batch=2)
    assert lay2.input_pitch == 30 and lay2.input_tall
    xb = np.stack([x, -x - 1])
    stored = lay2.input_words(xb).view(np.uint8).view(np.int8)[:lay2.input_len].reshape(16, 2, 28, 30)
    assert np.array_equal(stored[:, :, :, :28], xb.transpose(1, 0, 2, 3)) and not stored[:, :, :, 28:].any()


def test_batch_split_inputs_on_a_tall_map():
    """A 1x1 conv on a 1 x 1 map splits its inputs over the row groups in a batch too, where its
    input map is tall (value k of frame b at k * B + b): the descriptor's row pitch ``w_in`` is
    the chunk's K / G channel pitches, not K / G bytes (the random chain sweep found the engine
    reading the other frame's values with K / G). Every address the split walk reads
    (``in_base + b * frame_in + g * w_in + c * hw_in`` for frame b, group g, channel c, as the
    descriptor fields are defined) must hold input value g * K / G + c of frame b, in the bytes
    ``input_words`` stores. The FC after it reads the 1x1 conv's output interleaved (value k of
    frame b at k * 2 + b), both frames in its columns: its chunks are K / G * 2 bytes apart."""
    q = random_chain_model([dict(c_out=6, k=1), dict(c_out=5, kind="fc")], c_in=16, h=1, w=1, seed=3)
    config = ArrayConfig.for_model(q, rows=4, cols=4, groups=4, batch=2)
    # One frame: 6 filters of 16 inputs on 4 rows take 2 blocks x 16 steps in one group, 3
    # blocks x 8 split in two; the FC's 5 filters of 6 inputs 2 blocks x 6 cycles, or split,
    # 3 blocks x 3 steps held to 4 cycles (R = 4): the same cycles, fewer weight entries.
    assert [p.fields["mix"] for p in build_layout(q, config).layers] == [2, 2]
    lay = build_layout(q, config, batch=2)
    conv1x1, fc = (p.fields for p in lay.layers)
    assert lay.input_tall and conv1x1["mix"] == 2 and conv1x1["groups"] == 2
    assert (conv1x1["c_in"], conv1x1["h_in"], conv1x1["hw_in"], conv1x1["w_in"]) == (8, 2, 2, 16)
    assert (conv1x1["frames"], conv1x1["frame_in"]) == (2, 1)
    x = np.arange(32, dtype=np.int8).reshape(2, 16, 1, 1)           # [b, k] = 16 b + k
    stored = lay.input_words(x).view(np.uint8).view(np.int8)
    for b in range(2):
        for g in range(2):
            for c in range(8):
                at = (conv1x1["in_base"] + b * conv1x1["frame_in"] + g * conv1x1["w_in"]
                      + c * conv1x1["hw_in"])
                assert stored[at] == x[b, g * 8 + c, 0, 0], (b, g, c)
    assert fc["mix"] == 2 and (fc["hw_in"], fc["w_in"], fc["w_out"]) == (2, 6, 2)   # 6 / 2 x 2
    for b in range(2):
        for g in range(2):
            for c in range(3):
                assert (fc["in_base"] + g * fc["w_in"] + c * fc["hw_in"] + b
                        == conv1x1["out_base"] + b * conv1x1["frame_out"] + (3 * g + c) * conv1x1["out_hw"])


def test_batch_tall_fields_and_cycles():
    """FashionNet's conv3 shape, two frames: one tall pass of flat tiles over both frames' 98
    pixels (13 tiles of 8 instead of 7 of a 49-pixel map each), cheaper than two passes."""
    from hw.layout import tile_bound
    q = random_layer_model(seed=4, c_in=16, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=4, batch=2)
    one = build_layout(q, cfg).layers[0]
    two = build_layout(q, cfg, batch=2).layers[0]
    f = two.fields
    assert two.tall and two.passes == 1 and f["mix"] and f["flat"]
    assert (f["frames"], f["frame_in"], f["frame_out"]) == (2, 0, 0)
    assert (f["h_in"], f["h_out"], f["hw_in"], f["out_hw"], f["flat_n"]) == (14, 7, 2 * 196, 2 * 49, 98)
    assert two.tiles == 13 and two.macs == 2 * one.macs
    assert two.cycles < 2 * one.cycles
    assert tile_bound(two, rows=8, cols=8) == pytest.approx(98 / 104)


def test_cycle_model_passes_hand_worked():
    """Frame by frame: the classes again per pass, PASS_CYCLES and the trailing empty classes
    between passes, one drain at the end; tiles keep the drain chain's spacing across passes."""
    from hw.cycles import PASS_CYCLES
    one = layer_cycles((9,), (3,), 2, rows=4, cols=4)
    assert layer_cycles((9,), (3,), 2, rows=4, cols=4, passes=3) == \
        one + 2 * (PASS_CYCLES + 2 + 18)
    # A trailing empty class is passed between passes (1 cycle), not after the last.
    assert layer_cycles((9, 9), (3, 0), 2, rows=4, cols=4, passes=2) == \
        one + (1 + PASS_CYCLES) + 2 + 18
    # One-step tiles on 8 rows: the second pass's tile (CLASS, PREP, its step) still waits for
    # the drain chain of the first's, 8 cycles after it: 1 + PASS_CYCLES + 2 have passed.
    assert layer_cycles((1,), (1,), 1, rows=8, cols=2, passes=2) == \
        LAYER_OVERHEAD + (2 + 1) + PASS_CYCLES + (2 + 1 + (8 - 1 - PASS_CYCLES - 2)) + drain_cycles(8, 2)


def test_batch_refusals():
    q = random_layer_model(seed=1, c_in=2, c_out=3, h=8, w=8)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="Batch must be a whole number of frames >= 1"):
            build_layout(q, cfg, batch=bad)
    with pytest.raises(ValueError, match=r"in batches of 8 frames does not fit .* activation bytes"):
        build_layout(q, cfg, batch=8)


def test_layer_mapping_port_a_group():
    """FashionNet's conv2 PSD2_P16 shape (14 x 14, 16 -> 32, classes of 2 filters) on an 8 x 8
    engine with four ports: four mixed groups of 2 rows. Two ports a group allow only a 14-pixel
    row a tile (2 tiles of 8 columns a row: 28 a block); at stride 1 (``contiguous``) one port a
    group reads flat tiles of the whole map, ceil(196 / 8) = 25 a block. Bounds by hand (4 sets
    of 4 classes, one block each, 39 steps a tile): 32 * 39 * 196 / (64 * 4 * tiles * 39)."""
    from hw.layout import layer_mapping, tile_bound
    steps, per = (39,) * 16, (2,) * 16
    kw = dict(rows=8, cols=8, groups=4, c_in=16)
    m = layer_mapping(steps, per, 14, 14, contiguous=True, **kw)
    assert (m["groups"], m["flat"], m["mix"], m["tiles"]) == (4, 1, 1, 25)
    m = layer_mapping(steps, per, 14, 14, **kw)
    assert (m["groups"], m["flat"], m["mix"], m["tiles"]) == (4, 0, 1, 28)
    # Built from a layer: the bound follows the tiles. At stride 2 (28 -> 14) the tile's second
    # row's input starts 2 * (w_in - w_out) = 28 bytes on, which is no whole number of bank rows
    # (16 bytes): the input map's rows are padded to 30 bytes (2 * (30 - 14) = 32, two bank
    # rows), so one port a group reads a flat tile there too. A 27-pixel input row (also 14
    # outputs) cannot be padded: its last output's taps reach x = 27, the right padding, which
    # a padded row would not read as zeros.
    for stride, h, flat, pitch, bound in ((1, 14, 1, 14, 32 * 196 / (64 * 4 * 25)),
                                          (2, 28, 1, 30, 32 * 196 / (64 * 4 * 25)),
                                          (2, 27, 0, 27, 32 * 196 / (64 * 4 * 28))):
        q = random_layer_model(seed=4, c_in=16, c_out=32, h=h, w=h, stride=stride, variant="PSD2_P16")
        lay = build_layout(q, ArrayConfig.for_model(q, rows=8, cols=8, groups=4))
        (p,) = lay.layers
        assert (p.fields["groups"], p.fields["mix"], p.fields["flat"]) == (4, 1, flat), p.mapping
        assert (p.fields["w_in"], p.fields["hw_in"], lay.input_pitch) == (pitch, h * pitch, pitch)
        assert lay.input_len == 16 * h * pitch
        assert tile_bound(p, rows=8, cols=8) == pytest.approx(bound)


def test_split_inputs_hand_worked():
    """An FC's inputs split over the row groups, worked by hand: FashionNet's 1024 -> 10 on an
    8 x 8 four-group engine. Descriptor load 32 fields + 2, setup 3, final class check 1 (38),
    one CLASS and one PREP cycle, the tiles, then the drain: issue 1, read 5, array
    8 + 8 + 4, drain chain 8, output path 9, write-back 1 (44)."""
    from hw.layout import split_allowed, layer_mapping
    assert LAYER_OVERHEAD == 38 and drain_cycles(8, 8) == 44
    # Whole periods per chunk, groups of 2 or 4, K divisible, no pooling.
    assert split_allowed(1, 1024, groups=4) and split_allowed(8, 64, groups=4)
    assert not split_allowed(8, 48, groups=4)          # chunks of 12: not whole periods of 8
    assert not split_allowed(1, 10, groups=4)          # 10 inputs do not split in 4
    assert not split_allowed(1, 1024, groups=1) and not split_allowed(1, 64, groups=2, pool=True)
    kw = dict(rows=8, cols=8, groups=4, c_in=1024)
    # One group: 10 filters in 2 blocks of 8 rows x 1024 steps.
    plain = layer_mapping((1024,), (10,), 1, 1, **kw)
    assert (plain["groups"], plain["mix"], plain["cycles"]) == (1, 0, 38 + 2 + 2 * 1024 + 44)
    # Split in 4: 5 blocks of 2 filters x 256 steps (2 in 2: 3 blocks of 4 x 512 = 1536).
    split = layer_mapping((1024,), (10,), 1, 1, split=True, **kw)
    assert (split["groups"], split["mix"], split["group_rows"], split["tiles"], split["steps"],
            split["entries"], split["cycles"]) == (4, 2, 2, 1, (256,), 5 * 256, 38 + 2 + 5 * 256 + 44)
    two = layer_mapping((1024,), (10,), 1, 1, split=True, **dict(kw, groups=2))
    assert (two["groups"], two["mix"], two["cycles"]) == (2, 2, 38 + 2 + 3 * 512 + 44)
    # Groups of one row: 3 filters of 40 inputs on R = 4, split in 4: 3 blocks of 1 filter x
    # 10 steps (10 >= R: no tile is held), against 1 block of 40 (split in 2: 2 blocks of 20).
    small = layer_mapping((40,), (3,), 1, 1, rows=4, cols=2, groups=4, c_in=40, split=True)
    assert (small["groups"], small["mix"], small["entries"]) == (4, 2, 30)
    # Drain on 4 x 2: issue 1, read 5, array 4 + 2 + 4, drain chain 4, output path 9,
    # write-back 1 (30).
    assert (small["steps"], small["cycles"]) == ((10,), 38 + 2 + 3 * 10 + 30)


def test_check_header():
    """The loader's model check, worked by hand on a small engine: 3 descriptor slots, an INPUT
    space of 64 words (256 bytes), 256 bytes of activation memory."""
    from hw.image import ImageError
    from hw.descriptors import check_header, header_limits
    from hw.link import ErrorCode
    cfg = ArrayConfig(rows=2, cols=2, p_max=4, weight_depth=16, table_depth=16, param_depth=16,
                      act_depth=256, max_layers=3)
    assert header_limits(cfg) == {"n_layers": 3, "input_len": 256, "output_len": 256,
                                  "result_end": 256}
    for ok in ([1, 1, 1, 0], [3, 256, 256, 0], [2, 10, 6, 250], [1, 4, 4, 0, 99, 99]):
        check_header(np.array(ok), cfg)
    bad = {(0, 4, 4, 0): "n_layers = 0: this engine runs 1..3",
           (4, 4, 4, 0): "n_layers = 4: this engine runs 1..3",
           (1, 0, 4, 0): "input_len = 0: this engine runs 1..256",
           (1, 257, 4, 0): "input_len = 257: this engine runs 1..256",
           (1, 4, 0, 0): "output_len = 0: this engine runs 1..256",
           (1, 4, 257, 0): "output_len = 257: this engine runs 1..256",
           (1, 4, 7, 250): r"result_base \+ output_len = 250 \+ 7 = 257: past the 256-byte",
           (2,): "input_len = 0"}       # words missing from a short section count as 0
    for words, message in bad.items():
        with pytest.raises(ImageError, match=message) as e:
            check_header(np.array(words), cfg)
        assert e.value.code == ErrorCode.BAD_MODEL
    with pytest.raises(ImageError, match=r"n_layers = 0 \(the image has no DESCRIPTORS header\)"):
        check_header(None, cfg)


def test_check_header_length_ports():
    """With the largest activation memory (1 MiB, the load port's reach) the lengths are bounded
    by the core's 20-bit length ports (2**20 - 1 bytes), not by the memories: an input of
    2**20 bytes used to be truncated to 0."""
    from hw.image import ImageError
    from hw.descriptors import MAX_LEN, check_header, header_limits
    assert MAX_LEN == 2 ** 20 - 1
    cfg = ArrayConfig(act_depth=1 << 20)
    assert header_limits(cfg) == {"n_layers": 16, "input_len": 2 ** 20 - 1,
                                  "output_len": 2 ** 20 - 1, "result_end": 1 << 20}
    check_header(np.array([1, 2 ** 20 - 1, 2 ** 20 - 1, 0]), cfg)
    with pytest.raises(ImageError, match="input_len = 1048576: this engine runs 1..1048575"):
        check_header(np.array([1, 2 ** 20, 4, 0]), cfg)
    with pytest.raises(ImageError, match="output_len = 1048576: this engine runs 1..1048575"):
        check_header(np.array([1, 4, 2 ** 20, 0]), cfg)


@pytest.mark.parametrize("batch", [1, 2])
def test_built_headers_pass_the_check(batch):
    from hw.descriptors import check_header
    q = random_chain_model([dict(c_out=6), dict(c_out=5, kind="fc")], c_in=2, h=5, w=5, seed=2)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, batch=batch)
    check_header(build_layout(q, cfg, batch=batch).sections[Space.DESCRIPTORS], cfg)


def test_layer_limits():
    """Each descriptor field's range on the small engine, worked by hand from its depths: 256
    bytes of activations, 16 parameters, table slots and weight entries, P <= 4, 2 row groups."""
    from hw.descriptors import layer_limits
    lim = {n: str(v) for n, v in layer_limits(small_engine()).items()}
    assert lim == dict(c_in="1..256", h_in="1..256", w_in="1..256", hw_in="1..256", c_out="1..16",
                       h_out="1..256", w_out="1..256", out_w="1..256", out_hw="1..256", k="1 or 3",
                       stride="1 or 2", relu="0 or 1", pool="0 or 1", period="1..4", q="0..16",
                       rem="0..3", table_base="0..15", weight_base="0..15", param_base="0..15",
                       in_base="0..255", out_base="0..255", groups="1 or 2", fold="0 or 1",
                       flat="0 or 1", flat_n="0..256", flat_h="0..256", flat_in="0..256",
                       mix="0, 1 or 2", mix_wrap="0..256", frames="1..256", frame_in="0..256",
                       frame_out="0..256")
    assert str(layer_limits(ArrayConfig(rows=8, cols=8, groups=4))["groups"]) == "1, 2 or 4"


def test_check_descriptors():
    """The loader's layer check, worked by hand: every layer word of the section inside its
    field's range, the pairs (rem < period, table_base + period <= 16, param_base + c_out <= 16),
    q and rem splitting c_out by period (q * 4 + rem = 6), and a whole descriptor for each of the
    header's layers."""
    from hw.image import ImageError
    from hw.descriptors import check_descriptors
    from hw.link import ErrorCode
    cfg = small_engine()
    good = hand_layer()
    # The edges of the ranges and of the pairs run.
    edges = [hand_layer(rem=3, c_out=7, param_base=9), hand_layer(table_base=12, period=4),
             hand_layer(table_base=15, period=1, q=6, rem=0),
             hand_layer(param_base=0, c_out=16, q=4, rem=0), hand_layer(c_in=256, in_base=255, groups=1),
             hand_layer(k=1, stride=2, mix=2, frames=256, frame_out=256)]
    for layer in edges:
        check_descriptors(hand_section(layer), cfg)
    check_descriptors(hand_section(good, good, good), cfg)
    # Words past the header's layers are checked too (the engine takes them as they come), and
    # a part of a descriptor is checked as far as it goes.
    check_descriptors(hand_section(good, good[:9], n_layers=1), cfg)
    bad = {
        "layer 0 descriptor field c_in = 0: this engine runs 1..256": [hand_layer(c_in=0)],
        "layer 0 descriptor field h_out = 257: this engine runs 1..256": [hand_layer(h_out=257)],
        "layer 0 descriptor field h_out = 16777216: this engine runs 1..256":
            [hand_layer(h_out=1 << 24)],     # would be cut to 0 by a 24-bit register
        "layer 0 descriptor field k = 2: this engine runs 1 or 3": [hand_layer(k=2)],
        "layer 0 descriptor field stride = 3: this engine runs 1 or 2": [hand_layer(stride=3)],
        "layer 0 descriptor field groups = 4: this engine runs 1 or 2": [hand_layer(groups=4)],
        "layer 0 descriptor field mix = 3: this engine runs 0, 1 or 2": [hand_layer(mix=3)],
        "layer 0 descriptor field period = 5: this engine runs 1..4": [hand_layer(period=5)],
        "layer 0 descriptor field frames = 0: this engine runs 1..256": [hand_layer(frames=0)],
        "layer 0 descriptor field in_base = 256: this engine runs 0..255": [hand_layer(in_base=256)],
        "layer 0 descriptor field weight_base = 16: this engine runs 0..15":
            [hand_layer(weight_base=16)],
        "layer 0 descriptor field rem = 2 with period = 2: this engine needs rem < period":
            [hand_layer(period=2)],
        "layer 0 descriptor field table_base = 13 with period = 4: this engine needs "
        "table_base \\+ period <= table_depth = 16": [hand_layer(table_base=13)],
        "layer 0 descriptor field param_base = 11 with c_out = 6: this engine needs "
        "param_base \\+ c_out <= param_depth = 16": [hand_layer(param_base=11)],
        "layer 0 descriptor fields q = 1, rem = 3 with period = 4: this engine needs "
        "q \\* period \\+ rem = c_out = 6": [hand_layer(rem=3)],
        "layer 0 descriptor fields q = 0, rem = 2 with period = 4: this engine needs "
        "q \\* period \\+ rem = c_out = 6": [hand_layer(q=0)],
        "layer 0 descriptor fields q = 2, rem = 0 with period = 4: this engine needs "
        "q \\* period \\+ rem = c_out = 6": [hand_layer(q=2, rem=0)],
        "layer 2 descriptor field relu = 2: this engine runs 0 or 1":
            [good, good, hand_layer(relu=2)],
        "layer 1 descriptor field c_out = 17: this engine runs 1..16": [good, hand_layer(c_out=17)],
    }
    for message, layers in bad.items():
        with pytest.raises(ImageError, match=message) as e:
            check_descriptors(hand_section(*layers), cfg)
        assert e.value.code == ErrorCode.BAD_MODEL
    # A bad word past the header's layers, in a part of a descriptor.
    with pytest.raises(ImageError, match="layer 1 descriptor field k = 0: this engine runs 1 or 3"):
        check_descriptors(hand_section(good, hand_layer(k=0)[:10], n_layers=1), cfg)
    # Fewer descriptors than layers.
    for words, have in ((hand_section(good, n_layers=2), "1 whole layer descriptor "),
                        (hand_section(good, good[:31], n_layers=2), "1 whole layer descriptor "),
                        (hand_section(n_layers=1), "0 whole layer descriptors")):
        with pytest.raises(ImageError, match=f"n_layers = [12], but the DESCRIPTORS section "
                                             f"holds {have}"):
            check_descriptors(words, cfg)
    # The header is checked first.
    with pytest.raises(ImageError, match="n_layers = 0: this engine runs 1..3"):
        check_descriptors(hand_section(good, n_layers=0), cfg)


@pytest.mark.parametrize("name", ["FashionNet_PSD2_P8", "FashionNet_PS2_P6", "FashionNet_PS1_P9",
                                  "DigitsNet_PSD2_P16", "DigitsNet_PS4_P4"])
@pytest.mark.parametrize("batch", [1, 2])
def test_built_descriptors_pass_the_check(name, batch):
    """Every descriptor ``build_layout`` writes runs on its engine, on one, two and four row
    groups, one frame or a batch."""
    from host.synthetic import random_qmodel
    from hw.descriptors import check_descriptors
    q = random_qmodel(name, seed=4)
    for groups in (1, 2, 4):
        cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=groups, batch=batch)
        check_descriptors(build_layout(q, cfg, batch=batch).sections[Space.DESCRIPTORS], cfg)


def test_prefetch_cycles():
    """The next layer's descriptor load (34 cycles) hides behind a layer's drain, less its
    trailing empty classes' checks, worked by hand: drains of 44 (8 x 8), 32 (4 x 4), 34 (4 x 4
    pooled) and 26 cycles (2 x 2)."""
    from hw.cycles import DESC_CYCLES, prefetch_cycles
    assert DESC_CYCLES == 34
    assert prefetch_cycles(8, 8, pool=False, trailing=0) == 34
    assert prefetch_cycles(8, 8, pool=False, trailing=15) == 29
    assert prefetch_cycles(4, 4, pool=False, trailing=0) == 32
    assert prefetch_cycles(4, 4, pool=True, trailing=0) == 34
    assert prefetch_cycles(2, 2, pool=False, trailing=14) == 12
    # A chain: each layer after the first hides its descriptor load behind its predecessor's
    # drain. P = 16 on 3 filters leaves 13 trailing empty classes (a 4 x 4 drain of 32: 19
    # hidden), P = 1 none (32 hidden); each layer alone (same shapes) is a model's first layer,
    # whose whole load runs while the engine idles, before the start.
    kw = dict(h=5, w=5, seed=3)
    q = random_chain_model([dict(c_out=3, variant="PSD2_P16"), dict(c_out=4, variant="pSC9"),
                            dict(c_out=5, kind="fc")], c_in=2, **kw)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, groups=1).replace(act_depth=4096)
    lay = build_layout(q, cfg)
    alone = [build_layout(random_chain_model([d], c_in=c, **kw), cfg).expected_cycles
             for d, c in ((dict(c_out=4, variant="pSC9"), 3), (dict(c_out=5, kind="fc"), 4))]
    assert [p.cycles for p in lay.layers[1:]] == [alone[0] + DESC_CYCLES - 19,
                                                  alone[1] + DESC_CYCLES - 32]
    assert lay.expected_cycles == sum(p.cycles for p in lay.layers)
    from hw.layout import model_cycles
    assert model_cycles(q, rows=4, cols=4, groups=1) == lay.expected_cycles


def _two_convs():
    """(2, 8, 8) -> 3x3 conv, 8 filters (8, 8, 8) -> 3x3 conv stride 2, 4 filters (4, 4, 4)."""
    return random_chain_model([dict(c_out=8), dict(c_out=4, stride=2)], c_in=2, h=8, w=8, seed=5)


def test_depth_first_memory_and_fields_hand_worked():
    """Two frames, both layers depth-first: the 512-byte map between them holds one frame.
    Worked by hand (maps aligned to 2C = 16 bytes): ping-pong needs region 0 = max(2 x 128 input,
    2 x 64 result) = 256 plus region 1 = 2 x 512 = 1024; depth-first, the input (256) and one
    scratch map (512), then the result (2 x 64 = 128): 896."""
    from hw.layout import requirements
    q = _two_convs()
    need = lambda k: requirements(q, rows=8, cols=8, groups=2, batch=2, depth_first=k)
    assert need(0)["act_depth"][0] == 256 + 1024 and need(2)["act_depth"][0] == 128 + 256 + 512
    assert need(0)["max_layers"][0] == 2 and need(2)["max_layers"][0] == 4
    cfg = ArrayConfig(rows=8, cols=8, act_depth=896, max_layers=4, groups=2)
    lay = build_layout(q, cfg, batch=2)
    assert lay.depth_first == 2
    assert [(l.name, l.frame) for l in lay.layers] == [("l0", 0), ("l1", 0), ("l0", 1), ("l1", 1)]
    got = [{k: l.fields[k] for k in ("in_base", "hw_in", "out_base", "out_hw", "frames",
                                     "frame_in", "frame_out")} for l in lay.layers]
    for b in (0, 1):
        # l0 reads frame b of the tall input (at 0, where INPUT writes; channel pitch 2 x 64)
        # and writes the scratch map (at 256, one frame: pitch 64); l1 reads it and writes
        # frame b of the tall result (at 256 + 512, channel pitch 2 x 16, frame b 16 bytes on).
        assert got[2 * b] == dict(in_base=64 * b, hw_in=128, out_base=256, out_hw=64,
                                  frames=1, frame_in=0, frame_out=0)
        assert got[2 * b + 1] == dict(in_base=256, hw_in=64, out_base=768 + 16 * b, out_hw=32,
                                      frames=1, frame_in=0, frame_out=0)
    desc = lay.sections[Space.DESCRIPTORS]
    assert list(desc[:4]) == [4, 2 * 128, 2 * 64, 768]
    # The frames share each layer's weights, table and parameters.
    for a, b in ((0, 2), (1, 3)):
        assert all(lay.layers[a].fields[k] == lay.layers[b].fields[k]
                   for k in ("weight_base", "table_base", "param_base"))
    one = build_layout(q, cfg.replace(act_depth=4096))
    assert len(lay.sections[Space.WEIGHTS]) == len(one.sections[Space.WEIGHTS])
    assert lay.macs == 2 * one.macs
    assert lay.layers[0].cycles == one.layers[0].cycles


def test_depth_first_picks_the_fastest_that_fits():
    """``build_layout`` takes the batch whole where it fits (fastest), depth-first where only
    that fits; ``check_model`` names the prefix it tried."""
    from hw.layout import model_cycles
    q = _two_convs()
    big = ArrayConfig(rows=8, cols=8, act_depth=4096, max_layers=4, groups=2)
    assert build_layout(q, big, batch=2).depth_first == 0
    assert model_cycles(q, rows=8, cols=8, groups=2, batch=2) < \
        model_cycles(q, rows=8, cols=8, groups=2, batch=2, depth_first=2)
    small = big.replace(act_depth=896)
    lay = build_layout(q, small, batch=2)
    assert lay.depth_first == 2
    assert small.fits(q, batch=2) and small.fits(q, batch=2, depth_first=2)
    assert not small.fits(q, batch=2, depth_first=0)
    assert not big.replace(act_depth=880).fits(q, batch=2)
    assert lay.expected_cycles == model_cycles(q, rows=8, cols=8, groups=2, batch=2, depth_first=2)
    with pytest.raises(ValueError, match=r"batches of 2 frames does not fit .* needs 1280 activation "
                                         r"bytes in total, 400 more .*; with its first 2 layers "
                                         r"frame by frame \(depth-first\) it would need 896$"):
        build_layout(q, big.replace(act_depth=880), batch=2)
    with pytest.raises(ValueError, match=r"its first 2 layers frame by frame\) does not fit .* "
                                         r"needs 896 activation bytes in total, 16 more"):
        build_layout(q, big.replace(act_depth=880), batch=2, depth_first=2)
    with pytest.raises(ValueError, match=r"needs 4 layers in total, 1 more than max_layers = 3"):
        build_layout(q, small.replace(max_layers=3), batch=2, depth_first=2)
    for bad, batch in ((1, 2), (3, 2), (2, 1), (-1, 2), (2.0, 2), (True, 2)):
        with pytest.raises(ValueError, match=r"depth_first must be one of \[0(, 2)?\] for 2 layers"):
            build_layout(q, big, batch=batch, depth_first=bad)


def test_for_model_sizes_a_batch_depth_first():
    """FashionNet_PSD2_P8 in batches of two: whole, its 16 x 28 x 28 conv1 map would need
    2 x 12,544 bytes beside the 2 x 6,272 of conv2's (37,888 in all: 2,368-byte banks, past a
    2K block RAM). With conv1 and conv2 depth-first: conv2's two frames (12,544) + the input
    (2 x 784) + one frame of conv1 (12,544) = 26,656, in 1,024-byte rows 27,648: 1,728-byte
    banks. conv3 (7 x 7) still takes both frames as one tall map."""
    from host.synthetic import random_qmodel
    q = random_qmodel("FashionNet_PSD2_P8")
    assert ArrayConfig.for_model(q).act_depth == 19_456
    cfg = ArrayConfig.for_model(q, batch=2)
    assert cfg.groups == 4 and cfg.act_depth == 27_648 and cfg.bank_depth <= 2048
    assert cfg.max_layers == 2 * 2 + 3
    lay = build_layout(q, cfg, batch=2)
    assert lay.depth_first == 2
    conv3 = [l for l in lay.layers if l.name == "conv3"]
    assert len(conv3) == 1 and conv3[0].tall
    assert lay.expected_cycles < 2 * build_layout(q, ArrayConfig.for_model(q)).expected_cycles
