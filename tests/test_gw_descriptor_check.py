"""amaranth.sim tests of gateware.descriptor_check.DescriptorCheck against
hw.descriptors.check_descriptors: the flag and the section's extent one cycle after each write."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.descriptor_check import CHECK_LATENCY, DescriptorCheck
from hw.array import ArrayConfig
from hw.image import ImageError
from hw.descriptors import (LAYER_FIELDS, DESC_HEADER_WORDS, DESC_LAYER_WORDS, check_descriptors,
                            layer_limits)


def _layers_ok(words, config):
    """hw.layout's verdict on the layer words alone (the header made to pass)."""
    words = list(words)
    n_whole = max(0, len(words) - DESC_HEADER_WORDS) // DESC_LAYER_WORDS
    words[:4] = [max(n_whole, 1), 1, 1, 0]
    if n_whole == 0:                   # no whole layer: pad the header's one with good words
        return None
    try:
        check_descriptors(np.array(words), config)
        return True
    except ImageError:
        return False


def _random_sections(config, rng, n):
    """Sections of random length whose layer words are in range (the pairs of
    ``LAYER_FIELD_PAIRS`` and, mostly, the split of c_out into q and rem too) but for up to two at
    or past a limit (or in a choice field's gap: ``groups = 3`` on a four-group engine)."""
    lim = layer_limits(config)
    out = []
    for _ in range(n):
        layers = int(rng.integers(1, config.max_layers + 1))
        words = [0] * DESC_HEADER_WORDS
        for _ in range(layers):
            layer = {}
            for name in LAYER_FIELDS:
                v = lim[name]
                hi = {"rem": layer.get("period", 1) - 1,
                      "table_base": config.table_depth - layer.get("period", 1),
                      "param_base": config.param_depth - layer.get("c_out", 1)}.get(name, v.hi)
                layer[name] = int(rng.choice(v.values)) if v.values else int(rng.integers(v.lo, hi + 1))
            # q and rem split c_out by period (hw.descriptors.split_matches), but in about one
            # layer in eight.
            if rng.random() < 7 / 8:
                layer["q"], layer["rem"] = divmod(layer["c_out"], layer["period"])
            words += layer.values()
        for _ in range(int(rng.integers(0, 3))):
            at = int(rng.integers(DESC_HEADER_WORDS, len(words)))
            v = lim[LAYER_FIELDS[(at - DESC_HEADER_WORDS) % DESC_LAYER_WORDS]]
            words[at] = int(rng.choice([v.lo - 1 if v.lo else 0, v.hi, v.hi + 1, 2, 3, 1 << 24,
                                        2 ** 32 - 1]))
        cut = int(rng.integers(0, 3)) * int(rng.integers(1, DESC_LAYER_WORDS))
        out.append(words[:len(words) - cut] if cut < len(words) - DESC_HEADER_WORDS else words)
    return out


@pytest.mark.parametrize("config", [
    ArrayConfig(rows=8, cols=8, groups=4, max_layers=4),
    ArrayConfig(rows=2, cols=2, p_max=4, weight_depth=16, table_depth=16, param_depth=16,
                act_depth=256, max_layers=3),
], ids=["8x8x4", "2x2"])
def test_against_check_descriptors(config):
    seed = 11
    rng = np.random.default_rng(seed)
    sections = _random_sections(config, rng, 40)
    # The choice fields' gaps, in the last layer of a good section.
    good = next(w for w in sections if _layers_ok(w, config) and len(w) % DESC_LAYER_WORDS == 0)
    for name, value in (("k", 2), ("groups", 3)):
        sections.append(list(good))
        sections[-1][-DESC_LAYER_WORDS + LAYER_FIELDS.index(name)] = value
    dut = DescriptorCheck(config=config)
    got = []

    async def tb(ctx):
        for words in sections:
            ctx.set(dut.unload, 1)
            await ctx.tick()
            ctx.set(dut.unload, 0)
            assert (ctx.get(dut.ok), ctx.get(dut.words)) == (1, 0), f"seed {seed}: unload"
            extent = [0] * CHECK_LATENCY           # the extent written, a value a cycle
            for addr, word in enumerate(words):
                ctx.set(dut.we, 1)
                ctx.set(dut.addr, addr)
                ctx.set(dut.data, word)
                await ctx.tick()
                extent.append(addr + 1)
                assert ctx.get(dut.words) == extent[-CHECK_LATENCY], f"seed {seed}"
                # A gap with no write changes nothing.
                if rng.random() < 0.1:
                    ctx.set(dut.we, 0)
                    ctx.set(dut.data, 2 ** 32 - 1)
                    await ctx.tick()
                    extent.append(extent[-1])
                    assert ctx.get(dut.words) == extent[-CHECK_LATENCY], f"seed {seed}"
            ctx.set(dut.we, 0)
            await ctx.tick().repeat(CHECK_LATENCY - 1)
            assert ctx.get(dut.words) == len(words), f"seed {seed}"
            got.append(ctx.get(dut.ok))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    want = [_layers_ok(w, config) for w in sections]
    wrong = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if w is not None and g != w]
    assert not wrong, f"seed {seed}: sections {wrong}"
    assert 5 < sum(w is True for w in want) and 5 < sum(w is False for w in want)


def test_refuses_a_config_that_is_not_one():
    with pytest.raises(TypeError, match="DescriptorCheck config must be an ArrayConfig, not 8"):
        DescriptorCheck(config=8)
