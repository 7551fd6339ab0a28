import pytest

from hw.variants import (Variant, VariantNameError, parse_variant, split_model_name, DENSE,
                         PAPER_VARIANTS)


@pytest.mark.parametrize("suffix, kind, kss, period", [
    ("pSC9", "pSC", 9, None), ("pSC4", "pSC", 4, None), ("pSC1_P16", "pSC", 1, 16),
    ("PS4_P4", "PS", 4, 4), ("PS2_P6", "PS", 2, 6), ("PS1_P9", "PS", 1, 9),
    ("PSD4_P8", "PSD", 4, 8), ("PSD1_P16", "PSD", 1, 16), ("PSD2_P8", "PSD", 2, 8),
])
def test_parse_and_print_round_trip(suffix, kind, kss, period):
    v = parse_variant(suffix)
    assert (v.kind, v.kss, v.period) == (kind, kss, period)
    assert str(v) == v.name == suffix


@pytest.mark.parametrize("name, net, suffix", [
    ("VGG16_pSC4", "VGG16", "pSC4"),
    ("ResNet18_0.5_PSD1_P8", "ResNet18_0.5", "PSD1_P8"),
    ("ResNet18_PS2_P6", "ResNet18", "PS2_P6"),
    ("MobileNetV2_0.75", "MobileNetV2_0.75", "pSC9"),
    ("my_small_net_pSC2_P16", "my_small_net", "pSC2_P16"),
])
def test_split_model_name(name, net, suffix):
    n, v = split_model_name(name)
    assert n == net and v.name == suffix


@pytest.mark.parametrize("bad", ["PS4", "PSD2", "PS0_P4", "PS10_P4", "PSD2_P0", "PSD2_P1", "pSCx",
                                 "PSD9_P8", "XY4_P4", ""])
def test_bad_variants_name_the_grammar(bad):
    with pytest.raises(VariantNameError) as e:
        parse_variant(bad)
    msg = str(e.value)
    assert bad in msg or "KSS" in msg or "period" in msg.lower() or "PSD" in msg


@pytest.mark.parametrize("bad", ["VGG16_PS4", "VGG16_PSD2_Px", "_PSD2_P8", ""])
def test_bad_model_names(bad):
    with pytest.raises(VariantNameError, match="grammar|non-empty"):
        split_model_name(bad)


def test_dense_and_periodic_flags():
    assert DENSE.is_dense and not DENSE.is_periodic
    assert Variant("PSD", 2, 8).is_periodic and not Variant("PSD", 2, 8).is_dense
    assert not Variant("pSC", 4, 8).is_periodic


def test_paper_variant_set_is_complete_and_unique():
    names = [v.name for v in PAPER_VARIANTS]
    assert len(names) == len(set(names)) == 19
    for must in ["pSC9", "pSC4", "pSC2", "pSC1", "PS4_P4", "PS2_P6", "PS1_P9", "PSD4_P8", "PSD2_P16",
                 "PSD1_P16", "pSC4_P8", "pSC1_P16"]:
        assert must in names
