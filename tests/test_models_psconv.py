"""PSConv2d: masks from hw.patterns, exact zeros under training, state_dict round trip."""

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hw.patterns import kernel_masks
from hw.variants import PAPER_VARIANTS, parse_variant
from models.psconv import PSConv2d, enforce_masks, sparse_convs


def _train_steps(conv, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, conv.in_channels, 6, 6, generator=g)
        loss = conv(x).pow(2).mean() + conv(x).sum() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("variant", ["PSD2_P8", "PS4_P4", "pSC2", "pSC1_P8", "PSD1_P8"])
def test_mask_is_hw_mask_and_weights_masked_at_init(variant):
    conv = PSConv2d(12, 20, 3, variant=variant, seed=5)
    ref = kernel_masks(parse_variant(variant), 20, 12, k=3, seed=5, mode="random")
    assert np.array_equal(conv.mask.numpy(), ref)
    assert torch.all(conv.weight[~conv.mask] == 0)
    assert conv.nnz == int(ref.sum())
    # Not everything is zero: the kept taps hold the random init.
    assert torch.count_nonzero(conv.weight) == conv.nnz


def test_authors_mode_matches_method_rule():
    """METHOD.md: r = (i + j + 1) mod P; PSD2_P8 r=1 -> {0,1}, 2 -> {1,2}, 3 -> {3,4}, ..."""
    rule = {0: set(range(9)), 1: {0, 1}, 2: {1, 2}, 3: {3, 4}, 4: {4, 5}, 5: {6, 7}, 6: {7, 8}, 7: {0, 1}}
    conv = PSConv2d(9, 10, 3, variant="PSD2_P8", mode="authors")
    m = conv.mask.numpy().reshape(10, 9, 9)
    for i in range(10):
        for j in range(9):
            assert set(np.flatnonzero(m[i, j])) == rule[(i + j + 1) % 8], (i, j)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_masked_entries_stay_exactly_zero_under_optimizers(opt_name):
    seed = 11
    torch.manual_seed(seed)
    conv = PSConv2d(8, 16, 3, variant="PSD2_P8", seed=3, bias=True)
    if opt_name == "sgd":
        opt = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    else:
        opt = torch.optim.AdamW(conv.parameters(), lr=0.01, weight_decay=0.1)
    before = conv.weight.detach().clone()
    # No enforce_masks call: the gradient hook alone must keep the zeros.
    _train_steps(conv, opt, 8, seed)
    assert torch.all(conv.weight[~conv.mask] == 0), f"seed {seed}"
    assert not torch.equal(conv.weight[conv.mask], before[conv.mask]), "the kept weights must train"
    if opt_name == "sgd":
        buf = opt.state[conv.weight]["momentum_buffer"]
        assert torch.all(buf[~conv.mask] == 0)


def test_gradient_is_masked():
    conv = PSConv2d(4, 8, 3, variant="PS2_P6")
    conv(torch.randn(2, 4, 5, 5)).sum().backward()
    assert torch.all(conv.weight.grad[~conv.mask] == 0)
    assert torch.count_nonzero(conv.weight.grad) > 0


def test_enforce_masks_restores_zeros():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), PSConv2d(4, 8, 3, variant="PSD1_P8"))
    with torch.no_grad():
        model[1].weight.fill_(1.0)
        model[0].weight.fill_(1.0)
    enforce_masks(model)
    assert torch.equal(model[1].weight, model[1].mask.float())
    assert torch.all(model[0].weight == 1.0), "dense convs are untouched"
    assert list(sparse_convs(model)) == ["1"]


def test_state_dict_round_trips_mask_and_metadata():
    src = PSConv2d(6, 10, 3, variant="PSD2_P8", seed=7, mode="random")
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = PSConv2d(6, 10, 3, variant="PSD4_P8", seed=0, mode="authors")
    dst.load_state_dict(torch.load(buf, weights_only=False))
    assert torch.equal(dst.mask, src.mask)
    assert torch.equal(dst.weight, src.weight)
    assert (dst.variant, dst.seed, dst.mode) == ("PSD2_P8", 7, "random")


def test_load_applies_mask_to_foreign_weights():
    conv = PSConv2d(3, 5, 3, variant="PSD1_P8")
    sd = conv.state_dict()
    sd["weight"] = torch.ones_like(sd["weight"])
    conv.load_state_dict(sd)
    assert torch.equal(conv.weight.detach(), conv.mask.float())


def test_explicit_mask_and_forward_equals_masked_conv():
    rng = np.random.default_rng(0)
    mask = rng.random((5, 3, 3, 3)) < 0.4
    conv = PSConv2d(3, 5, 3, mask=mask, stride=2)
    assert conv.variant is None and np.array_equal(conv.mask.numpy(), mask)
    x = torch.randn(2, 3, 7, 7)
    w = conv.weight.detach() * torch.as_tensor(mask)
    ref = torch.nn.functional.conv2d(x, w, stride=2, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    assert conv(x).shape == (2, 5, 4, 4)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(in_channels=0, out_channels=4, variant="PSD2_P8"), "in_channels must be a positive integer, not 0"),
    (dict(in_channels=4, out_channels=4, variant="PSD2_P8", mode="bogus"), "mode must be one of random, authors"),
    (dict(in_channels=4, out_channels=4), "needs a variant or an explicit mask"),
    (dict(in_channels=4, out_channels=4, mask=np.ones((4, 4, 1, 1), bool)), "mask shape must be (4, 4, 3, 3)"),
    (dict(in_channels=4, out_channels=4, variant=3), "variant must be a variant name"),
])
def test_validation_messages(kwargs, msg):
    with pytest.raises(ValueError) as e:
        PSConv2d(**kwargs)
    assert msg in str(e.value)


@settings(max_examples=25, deadline=None)
@given(v=st.sampled_from(PAPER_VARIANTS), c_in=st.integers(1, 10), c_out=st.integers(1, 10),
       seed=st.integers(0, 1000))
def test_property_mask_population_and_zero_weights(v, c_in, c_out, seed):
    conv = PSConv2d(c_in, c_out, 3, variant=v, seed=seed)
    ref = kernel_masks(v, c_out, c_in, k=3, seed=seed)
    assert np.array_equal(conv.mask.numpy(), ref)
    assert torch.count_nonzero(conv.weight[~conv.mask]) == 0
