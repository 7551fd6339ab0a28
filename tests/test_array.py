"""Tests of hw.array.ArrayConfig: validation, fingerprint, sizing from a model, fit check."""

import pytest

from bench.layers import random_layer_model, random_chain_model
from hw.array import ArrayConfig
from hw.layout import build_layout
from hw.memory_map import Space


def test_defaults_and_read_only():
    cfg = ArrayConfig()
    assert (cfg.rows, cfg.cols, cfg.banks) == (8, 8, 16)
    assert cfg.bank_depth * cfg.banks == cfg.act_depth
    assert cfg.words_per_entry == 2
    with pytest.raises(AttributeError):
        cfg.rows = 4


@pytest.mark.parametrize("kw,msg", [
    (dict(rows=0), "rows must be an integer in 1..64, not 0"),
    (dict(rows=6), "rows must be a power of two"),
    (dict(cols=1), "cols must be an integer in 2..64, not 1"),
    (dict(act_depth=100), "act_depth must be a multiple of 2 \\* cols = 16"),
    (dict(p_max=32, table_depth=16), "p_max \\(32\\) must not exceed table_depth \\(16\\)"),
    (dict(rows=True), "rows must be an integer in 1..64, not True"),
    (dict(groups=3), "groups must be 1, 2 or 4, not 3"),
    (dict(groups=8), "groups must be an integer in 1..4, not 8"),
    (dict(rows=2, groups=4), "groups \\(4\\) must not exceed rows \\(2\\)"),
])
def test_validation_messages(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ArrayConfig(**kw)


def test_config_id_is_stable_and_parameter_sensitive():
    a, b = ArrayConfig(), ArrayConfig()
    assert a.config_id == b.config_id and a == b and 0 <= a.config_id < 2**32
    ids = {ArrayConfig(rows=r).config_id for r in (1, 2, 4, 8, 16)}
    assert len(ids) == 5
    assert a.replace(act_depth=1024).config_id != a.config_id


def test_for_model_fits_and_check_names_layer():
    q = random_chain_model([dict(c_out=8), dict(c_out=16, variant="PSD2_P8", stride=2),
                            dict(c_out=10, kind="fc")], c_in=1, h=8, w=8)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4)
    cfg.check_model(q)                                   # fits
    assert cfg.p_max >= 8
    small = cfg.replace(weight_depth=16)
    # Hand count (R = 4): l0 dense 8 filters = 2 blocks x 9 steps = 18 entries (already > 16);
    # l1 PSD2_P8, 8 classes of 2 filters of 7 * 2 + 9 = 23 steps each, mixed (the row groups take
    # different classes, so the 4 rows of an entry hold 4 filters): 16 filters / 4 x 23 = 92;
    # fc (256 inputs) 10 filters, inputs split in 2 (groups of 2 rows, chunks of 128): 5 blocks
    # x 128 steps = 640 (split in 4: 10 blocks of 1 x 64, the same cycles and entries, so the
    # fewer groups win). Total 750.
    assert [p.mapping for p in build_layout(q, cfg).layers][2] == "2 groups, inputs split in 2"
    with pytest.raises(ValueError, match=r"the model needs 750 weight entries in total, 734 more than "
                                         r"weight_depth = 16 \(overflowing at layer 'l0'\)"):
        small.check_model(q)
    # Ping-pong regions: max(input 64, l1 out 256) + max(l0 out 512, fc out 10) = 768 bytes.
    with pytest.raises(ValueError, match=r"needs 768 activation bytes in total, 736 more than "
                                         r"act_depth = 32 \(overflowing at layer 'l0'\)"):
        cfg.replace(act_depth=32).check_model(q)
    assert cfg.fits(q) and not small.fits(q) and not cfg.replace(act_depth=32).fits(q)
    assert cfg.fits(q, batch=1, depth_first=0)


def test_capacity_matches_spaces():
    cfg = ArrayConfig(rows=8, cols=4, act_depth=256)
    cap = cfg.capacity()
    assert cap[Space.WEIGHTS] == cfg.weight_depth * 2
    assert cap[Space.INPUT] == 64
    assert set(cap) == set(Space)


def test_refuses_non_periodic():
    q = random_layer_model(seed=0, c_in=2, c_out=2, h=3, w=3)
    q.layers[0].variant = "pSC4"
    with pytest.raises(ValueError, match="not periodic"):
        ArrayConfig.for_model(q)


def test_for_model_picks_groups_by_cycles():
    """for_model without groups: the row groups (1, 2, 4) the cycle model runs fastest, the
    fewest on a tie; the default config keeps two."""
    from hw.layout import model_cycles
    assert ArrayConfig().groups == 2 and ArrayConfig(rows=1).groups == 1
    # Classes of 2 filters (16 over P = 8): four groups of 2 rows fill the 8 rows.
    small = random_layer_model(seed=1, c_in=4, c_out=16, h=8, w=8, variant="PSD2_P8")
    cyc = {g: model_cycles(small, rows=8, cols=8, groups=g) for g in (1, 2, 4)}
    assert cyc[4] < cyc[2] < cyc[1]
    assert ArrayConfig.for_model(small).groups == 4
    # 4 rows: two groups of 2 fill them; four groups of 1 need two blocks: a tie, so two.
    assert ArrayConfig.for_model(small, rows=4, cols=8).groups == 2
    # 2 rows: one group of 2 already fills them.
    assert ArrayConfig.for_model(small, rows=2, cols=8).groups == 1
    assert ArrayConfig.for_model(small, groups=2).groups == 2            # asked for
    # Full classes on one output row: nothing to gain, so one group (one activation copy).
    fc = random_layer_model(seed=2, c_in=40, c_out=16, h=1, w=1, kind="fc")
    assert ArrayConfig.for_model(fc).groups == 1
    cfg = ArrayConfig.for_model(small)
    from hw.layout import build_layout
    assert build_layout(small, cfg).expected_cycles == cyc[4]


def test_shape_for_model_hand_worked():
    """FashionNet's conv3 shape (16 -> 64 channels here, 14x14 -> 7x7) at PS4_P4: classes of 16
    filters. On 8 x 8 they take two blocks of 8 rows over 49 pixels in tiles of 8 (49 / 56); on
    16 x 4 one block of 16 rows over flat tiles of 4 pixels (49 / 52); 4 x 16 leaves 16 - 7
    columns of every row idle. So 16 x 4 is fastest, and its cycles are the least of all three."""
    from hw.array import ArrayConfig, config_for_model
    from hw.layout import model_cycles
    q = random_layer_model(seed=2, c_in=16, c_out=64, h=14, w=14, stride=2, variant="PS4_P4")
    assert ArrayConfig.shape_for_model(q) == (16, 4)
    best = min(model_cycles(q, rows=16, cols=4, groups=g) for g in (1, 2, 4))
    for r, c in ((8, 8), (4, 16)):
        assert best < min(model_cycles(q, rows=r, cols=c, groups=g) for g in (1, 2, 4))
    cfg = config_for_model(q, "auto")
    assert (cfg.rows, cfg.cols) == (16, 4) and cfg == ArrayConfig.for_model(q, rows=16, cols=4)
    assert config_for_model(q) == ArrayConfig.for_model(q)                 # default 8 x 8
    # Aspect at most 4: 64 MACs never become 32 x 2 or 2 x 32; a MAC count must be a power of two.
    assert ArrayConfig.shape_for_model(q, max_aspect=1) == (8, 8)
    with pytest.raises(ValueError, match="power of two"):
        ArrayConfig.shape_for_model(q, macs=48)
