import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hw.patterns import PeriodTable, period_table, kernel_masks, base_kvs
from hw.variants import Variant, parse_variant

PERIODIC = [Variant("PS", 4, 4), Variant("PS", 2, 6), Variant("PS", 1, 9), Variant("PS", 3, 3),
            Variant("PSD", 4, 8), Variant("PSD", 2, 8), Variant("PSD", 1, 8), Variant("PSD", 4, 16),
            Variant("PSD", 2, 16), Variant("PSD", 1, 16), Variant("PSD", 3, 2), Variant("PSD", 1, 6)]

periodic = st.sampled_from(PERIODIC)
dims = st.integers(min_value=1, max_value=40)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=80, deadline=None)
@given(periodic, dims, dims, seeds)
def test_periodic_mask_invariants(variant, c_out, c_in, seed):
    P, n = variant.period, variant.kss
    mask = kernel_masks(variant, c_out, c_in, seed=seed)
    assert mask.shape == (c_out, c_in, 3, 3) and mask.dtype == bool
    flat = mask.reshape(c_out, c_in * 9)
    # Row period P (filters f and f+P identical) and column period P*k*k of the flattened matrix.
    assert np.array_equal(flat[P:], flat[:-P]) if c_out > P else True
    assert np.array_equal(flat[:, P * 9:], flat[:, :-P * 9]) if c_in > P else True
    # Exact non-zeros: kernel (f, c) is dense iff (f + c + 1) mod P == 0 for PSD, else KSS n.
    f, c = np.meshgrid(np.arange(c_out), np.arange(c_in), indexing="ij")
    per_kernel = mask.reshape(c_out, c_in, 9).sum(-1)
    if variant.kind == "PSD":
        expect = np.where((f + c + 1) % P == 0, 9, n)
    else:
        expect = np.full_like(f, n)
    assert np.array_equal(per_kernel, expect), f"seed={seed}"


@settings(max_examples=60, deadline=None)
@given(periodic, seeds)
def test_table_covers_every_tap_and_has_paper_kvs(variant, seed):
    t = period_table(variant, seed=seed)
    assert t.period == variant.period
    covered = set().union(*map(set, t.supports))
    assert covered == set(range(9)), f"seed={seed}"
    sparse = {s for s in t.supports if len(s) == variant.kss}
    if variant.kind == "PS":
        assert t.kvs == variant.period and len(sparse) == variant.period
    else:
        assert len(sparse) == min(base_kvs(variant.kss), variant.period - 1)
        assert t.supports[-1] == tuple(range(9))
        if base_kvs(variant.kss) <= variant.period - 1:
            # Enough sparse slots: the sparse variants alone cover the kernel.
            assert set().union(*map(set, sparse)) == set(range(9)), f"seed={seed}"


@pytest.mark.parametrize("name, kvs, period", [
    ("PSD4_P8", 5, 8), ("PSD4_P16", 5, 16), ("PSD2_P8", 7, 8), ("PSD2_P16", 7, 16),
    ("PSD1_P8", 8, 8), ("PSD1_P16", 10, 16), ("PS4_P4", 4, 4), ("PS2_P6", 6, 6), ("PS1_P9", 9, 9),
])
def test_kvs_and_period_of_method_table(name, kvs, period):
    t = period_table(parse_variant(name), seed=7)
    assert (t.kvs, t.period) == (kvs, period)


def _authors_rule(name, i, j):
    """METHOD.md's table of the authors' rule, transcribed by hand."""
    P = int(name.split("_P")[1])
    r = (i + j + 1) % P
    if r == 0:
        return set(range(9))
    if name == "PSD4_P8":
        return {1: {0, 1, 3, 4}, 5: {0, 1, 3, 4}, 2: {1, 2, 4, 5}, 6: {1, 2, 4, 5},
                3: {3, 4, 6, 7}, 7: {3, 4, 6, 7}, 4: {4, 5, 7, 8}}[r]
    if name == "PSD4_P16":
        if r in (1, 5, 9, 13):
            return {0, 1, 3, 4}
        if r in (2, 6, 10, 14):
            return {1, 2, 4, 5}
        if r in (3, 7, 11, 15):
            return {3, 4, 6, 7}
        return {4, 5, 7, 8}
    return {1: {0, 1}, 2: {1, 2}, 3: {3, 4}, 4: {4, 5}, 5: {6, 7}, 6: {7, 8}, 7: {0, 1}}[r]


@pytest.mark.parametrize("name", ["PSD4_P8", "PSD4_P16", "PSD2_P8"])
def test_authors_mode_matches_method_table(name):
    mask = kernel_masks(parse_variant(name), 20, 37, mode="authors")
    for i in range(20):
        for j in range(37):
            assert set(np.flatnonzero(mask[i, j].ravel())) == _authors_rule(name, i, j), (i, j)


def test_seeded_reproducible_and_seed_sensitive():
    v = Variant("PS", 2, 6)
    assert period_table(v, seed=3) == period_table(v, seed=3)
    assert len({period_table(v, seed=s).supports for s in range(10)}) > 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.sampled_from([None, 4, 8, 16]), dims, dims, seeds)
def test_non_periodic_counts(kss, period, c_out, c_in, seed):
    v = Variant("pSC", kss, period)
    per_kernel = kernel_masks(v, c_out, c_in, seed=seed).reshape(c_out, c_in, 9).sum(-1)
    f, c = np.meshgrid(np.arange(c_out), np.arange(c_in), indexing="ij")
    expect = np.where((f + c + 1) % period == 0, 9, kss) if period else np.full_like(f, kss)
    assert np.array_equal(per_kernel, expect), f"seed={seed}"


def test_dense_and_1x1_are_dense():
    assert kernel_masks(Variant("pSC", 9), 4, 5).all()
    assert kernel_masks(Variant("PSD", 1, 8), 4, 5, k=1).all()
    assert period_table(Variant("PSD", 1, 8), k=1).supports == ((0,),)


def test_errors_say_why():
    with pytest.raises(ValueError, match="not periodic"):
        period_table(Variant("pSC", 4))
    with pytest.raises(ValueError, match="cannot cover"):
        period_table(Variant("PS", 1, 4))
    with pytest.raises(ValueError, match="authors' rule"):
        period_table(Variant("PS", 4, 4), mode="authors")
    with pytest.raises(ValueError, match="mode"):
        kernel_masks(Variant("PS", 4, 4), 2, 2, mode="nope")
    with pytest.raises(ValueError, match="c_in must be a positive integer"):
        kernel_masks(Variant("PS", 4, 4), 2, 0)
    with pytest.raises(ValueError, match="Slot 0"):
        PeriodTable(3, ((3, 1),))


def test_bitmasks_match_supports():
    t = PeriodTable(3, ((0, 1), (8,), tuple(range(9))))
    assert list(t.bitmasks()) == [0b11, 0b100000000, 0b111111111]
