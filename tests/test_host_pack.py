"""host.pack: model checks (pattern, period table), image contents and the storage report."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw.qmodel import QLayer
from host.pack import PackError, check_layer, check_model, parse_array
from host.synthetic import random_qmodel


def _mutate(layer, **changes):
    return QLayer(**{**layer.__dict__, **changes})


@pytest.fixture(scope="module")
def model():
    return random_qmodel("DigitsNet_PSD2_P8", seed=3)


def test_synthetic_model_passes(model):
    csrp = check_model(model)
    assert [c.layer for c in csrp] == [l.name for l in model.layers]
    # The CSR_P form holds exactly the pattern positions: decode gives the weights back.
    for c, l in zip(csrp, model.layers):
        assert np.array_equal(c.to_dense(), l.weight)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, 10**6))
def test_out_of_pattern_weight_is_named(model, seed, which):
    """A non-zero weight outside the pattern: the error names layer, filter, channel and tap."""
    layer = model.layers[1]
    table = np.array([[t in s for t in range(9)] for s in layer.period_table])
    # Independent enumeration of the (filter, channel, tap) positions outside the pattern.
    outside = [(f, c, t) for f in range(layer.c_out) for c in range(layer.c_in) for t in range(9)
               if not table[(f + c) % len(table), t]]
    f, c, t = outside[which % len(outside)]
    w = layer.weight.copy()
    w[f, c, t // 3, t % 3] = 5
    bad = _mutate(layer, weight=w)
    with pytest.raises(PackError, match=rf"Layer 'conv2': filter {f}, input channel {c}, tap {t} ") as e:
        check_layer(bad)
    assert "outside the pattern" in str(e.value), f"seed {seed}"


@pytest.mark.parametrize("change, message", [
    # Period of the table differs from the variant's.
    (lambda l: {"period_table": l.period_table[:-1]},
     "Layer 'conv2': period table has 7 slots but variant PSD2_P8 has period 8"),
    # A sparse slot with the wrong KSS.
    (lambda l: {"period_table": [[0, 1, 2]] + l.period_table[1:]},
     r"Layer 'conv2': variant PSD2_P8 needs exactly one dense slot and 7 slots of KSS 2, "
     r"but the period table's slot 0 has 3 taps \[0, 1, 2\]"),
    # No dense slot in a PSD table.
    (lambda l: {"period_table": l.period_table[:-1] + [[0, 1]]},
     "but the period table's 0 dense slots"),
    # The variant says PS (no dense slot) but the table has one.
    (lambda l: {"variant": "PS2_P8"}, r"Layer 'conv2': slot 7 of the period table has 9 taps"),
    # Non-periodic variant with a table.
    (lambda l: {"variant": "pSC2"}, "variant pSC2 is not periodic"),
    (lambda l: {"variant": "XYZ"}, "Layer 'conv2': 'XYZ' is not a variant"),
    (lambda l: {"period_table": [[3, 1]] * 8}, "Layer 'conv2': bad period table: Slot 0 support"),
])
def test_period_table_mismatch(model, change, message):
    layer = model.layers[1]
    with pytest.raises(PackError, match=message):
        check_layer(_mutate(layer, **change(layer)))


def test_dense_layer_with_sparse_table_is_refused(model):
    fc = model.layers[-1]
    with pytest.raises(PackError, match=r"Layer 'fc' \(fc, k = 1, variant pSC9\) must be dense"):
        check_layer(_mutate(fc, period_table=[[0], [0]]))


def test_parse_array():
    assert parse_array("8x4") == (8, 4) and parse_array(" Auto ") == "auto"
    for bad in ("8", "ax2", "0x8", "8x-1", "automatic"):
        with pytest.raises(ValueError, match="Array must be ROWSxCOLS"):
            parse_array(bad)


def test_image_round_trips_through_the_container(model):
    """The image parses back (hw.image, an independent parser) to the layout's words."""
    from hw.image import parse_image
    from host.pack import pack

    packed = pack(model, array=(4, 4))
    cfg = packed.config
    assert (cfg.rows, cfg.cols) == (4, 4)
    config_id, sections = parse_image(packed.image, config_id=cfg.config_id, capacity=cfg.capacity())
    assert config_id == cfg.config_id
    assert set(sections) == set(packed.layout.sections)
    for space, words in packed.layout.sections.items():
        assert np.array_equal(sections[space], words), space


def test_storage_report_matches_formulas(model):
    """Dense is H_F W_F b_v over all layers; CSR_P of a periodic layer is below CSR."""
    from host.pack import pack, storage_report

    report = storage_report(pack(model))
    dense_bits = sum(l.weight.size for l in model.layers) * 8
    assert report["formulas"]["Dense"] == dense_bits
    assert report["formulas"]["CSR_P"] < report["formulas"]["CSR"] < dense_bits * 1.01
    # Pattern positions counted independently: slot (f + c) mod P holds len(slot) taps.
    stored = 0
    for l in model.layers:
        slots = l.period_table or [list(range(l.k * l.k))]
        stored += sum(len(slots[(f + c) % len(slots)]) for f in range(l.c_out) for c in range(l.c_in))
    assert report["stored_weights"] == stored
    assert report["image_bits"] == 8 * len(pack(model).image)


def test_cli_pack(model, tmp_path, capsys):
    from host.__main__ import main

    path = tmp_path / "m.q.npz"
    model.save(path)
    assert main(["pack", "--model", str(path), "--out", str(tmp_path / "m.img"), "--json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert report["image_bits"] == 8 * (tmp_path / "m.img").stat().st_size
    # The per-layer schedule: one row per layer, its cycles summing to the frame's.
    assert [r["layer"] for r in report["schedule"]] == [l.name for l in model.layers]
    assert sum(r["cycles"] for r in report["schedule"]) == report["cycles_per_frame"]
    assert main(["pack", "--model", str(path), "--out", str(tmp_path / "m.img")]) == 0
    text = capsys.readouterr().out
    assert "schedule (8x8 array" in text and all(l.name in text for l in model.layers)
    assert main(["pack", "--model", str(tmp_path / "missing.npz"), "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pack", "--model", str(path), "--out", "x", "--array", "3x8"]) == 2
    assert "power of two" in capsys.readouterr().err


def test_cli_pack_batch(model, tmp_path, capsys):
    """--batch 2: the JSON says the batch; a run's cycles are the schedule's, a frame's half of
    them, and fewer than one frame alone takes (DigitsNet's small maps share tiles)."""
    import json
    from host.__main__ import main
    from hw.image import parse_image
    from hw.layout import model_cycles

    path = tmp_path / "m.q.npz"
    model.save(path)
    assert main(["pack", "--model", str(path), "--out", str(tmp_path / "m1.img"), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(["pack", "--model", str(path), "--out", str(tmp_path / "m2.img"), "--json",
                 "--batch", "2"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert one["batch"] == 1 and two["batch"] == 2
    assert one["cycles_per_frame"] == one["cycles_per_run"] == sum(r["cycles"] for r in one["schedule"])
    assert two["cycles_per_run"] == sum(r["cycles"] for r in two["schedule"])
    assert two["cycles_per_frame"] == two["cycles_per_run"] / 2 < one["cycles_per_frame"]
    cfg = two["config"]
    assert two["cycles_per_run"] == model_cycles(model, rows=cfg["rows"], cols=cfg["cols"],
                                                 groups=cfg["groups"], batch=2)
    # The engine sized for two frames: more activation memory, so another config_id.
    assert cfg["act_depth"] > one["config"]["act_depth"] and two["config_id"] != one["config_id"]
    assert any(r["tall"] for r in two["schedule"]) and not any(r["tall"] for r in one["schedule"])
    image = (tmp_path / "m2.img").read_bytes()
    assert two["image_bits"] == 8 * len(image)
    assert parse_image(image, config_id=two["config_id"])[0] == two["config_id"]
    assert main(["pack", "--model", str(path), "--out", str(tmp_path / "m2.img"), "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert f"batches of 2 frames: {two['cycles_per_run']} cycles a run" in text
    assert "2 frames as one map" in text
