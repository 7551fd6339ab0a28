"""amaranth.sim tests of the whole engine core: random layers and small networks, bit-exact
against hw.reference, with random back-pressure on the load and result streams."""

import numpy as np
import pytest
from amaranth import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from bench.layers import random_layer_model, random_chain_model
from gateware.core import Core
from hw.array import ArrayConfig
from hw.layout import build_layout
from hw.descriptors import HEADER_FIELDS
from hw.link import ErrorCode
from hw.memory_map import Space
from hw.reference import run_model

from bench.descriptor_cases import model_check_cases, small_engine

VARIANTS = ("pSC9", "PSD4_P2", "PS4_P4", "PS2_P6", "PSD2_P8", "PS1_P9", "PSD1_P16")


def run_core(qmodel, config, frame, *, seed=0, ready_p=1.0, valid_p=1.0, max_cycles=200_000,
             pack_pairs=None, reset_after=None, reload=True, batch=1, abort_after=None,
             faulty=None, descriptors_last=False, depth_first=None):
    """Load ``qmodel`` and ``frame`` (a batch: ``[B, C, H, W]``) into a :class:`Core`, run it,
    return (result bytes, counters, layout, header lengths).

    ``reset_after``: first load and start once, assert the reset ``reset_after`` cycles into the
    frame (everything in flight is abandoned; the datapath registers have no reset), then load
    again (without ``reload`` only the descriptor header, the registers a reset clears; the
    memories keep the rest) and run.

    ``abort_after``: first load and start once, pulse ``abort`` that many cycles into the frame
    (``"readout"``: while its first result byte waits), wait for the core to idle, then load
    only the INPUT words (the model must still be loaded) and run.

    ``faulty``: ``{descriptor word index: value}``: first load the model with those words
    changed (a layer the address guard must stop) and start it; the core must raise ``fault``
    and idle with no result byte (``lens["fault_at"]``: the cycle it idled, or ``None`` if it
    delivered a result instead, which the caller asserts on); then load the whole good image
    and run.

    ``descriptors_last``: load the DESCRIPTORS words after all others, so the start comes a
    cycle after the last of them, while the first layer's descriptor still loads.

    ``depth_first``: :func:`hw.layout.build_layout`'s (None: the config's choice).

    ``lens["first_byte"]``: cycles from the last run's start to its first result byte."""
    layout = build_layout(qmodel, config, batch=batch, depth_first=depth_first)
    dut = Core(config=config, pack_pairs=pack_pairs)
    rst = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(rst)(dut)
    words = layout.load_words(frame)
    if descriptors_last:
        desc = words[:, 0] == Space.DESCRIPTORS
        words = np.concatenate([words[~desc], words[desc]])
    again = words
    if not reload:
        hdr = (words[:, 0] == Space.DESCRIPTORS) & (words[:, 1] < len(HEADER_FIELDS))
        again = words[hdr]
    rng = np.random.default_rng(seed)
    out, counters, lens = [], {}, {}

    async def load_and_start(ctx, rows, p):
        """Load ``rows`` (each word offered with probability ``p`` a cycle), then pulse start."""
        i = 0
        while i < len(rows):
            on = rng.random() < p
            ctx.set(dut.load.valid, on)
            sp, a, d = (int(v) for v in rows[i])
            ctx.set(dut.load.payload.space, sp)
            ctx.set(dut.load.payload.addr, a)
            ctx.set(dut.load.payload.data, d)
            await ctx.tick()
            i += on
        ctx.set(dut.load.valid, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def tb(ctx):
        rows = words
        if faulty is not None:
            bad = words.copy()
            for index, value in faulty.items():
                at = np.nonzero((bad[:, 0] == Space.DESCRIPTORS) & (bad[:, 1] == index))[0]
                bad[at, 2] = value
            await load_and_start(ctx, bad, 1.0)
            ctx.set(dut.result.ready, 1)
            lens["fault_at"] = None
            for n in range(max_cycles):
                await ctx.tick()
                if ctx.get(dut.result.valid):
                    break
                if not ctx.get(dut.busy):
                    assert ctx.get(dut.fault), "the core idled with neither a result nor a fault"
                    lens["fault_at"] = n
                    break
            else:
                raise AssertionError(f"still busy {max_cycles} cycles into the faulty frame")
            if lens["fault_at"] is None:
                return                  # the caller reports it
            ctx.set(dut.result.ready, 0)
        if reset_after is not None:
            await load_and_start(ctx, words, 1.0)
            await ctx.tick().repeat(reset_after)
            assert ctx.get(dut.busy), "the frame ended before the reset"
            ctx.set(rst, 1)
            await ctx.tick().repeat(2)
            ctx.set(rst, 0)
            assert not ctx.get(dut.busy)
            rows = again
        if abort_after is not None:
            await load_and_start(ctx, words, 1.0)
            at = layout.expected_cycles + 20 if abort_after == "readout" else abort_after
            await ctx.tick().repeat(at)
            assert ctx.get(dut.busy), "the frame ended before the abort"
            assert ctx.get(dut.result.valid) == (abort_after == "readout")
            ctx.set(dut.abort, 1)
            await ctx.tick()
            ctx.set(dut.abort, 0)
            for n in range(1000):
                assert not ctx.get(dut.result.valid), "a result byte after the abort"
                if not ctx.get(dut.busy):
                    break
                await ctx.tick()
            else:
                raise AssertionError("still busy 1000 cycles after the abort")
            lens["abort_drain"] = n
            rows = words[words[:, 0] == Space.INPUT]
        await load_and_start(ctx, rows, valid_p)
        lens["input"], lens["output"] = ctx.get(dut.input_len), ctx.get(dut.output_len)
        held = None
        for n in range(max_cycles):
            if "first_byte" not in lens and ctx.get(dut.result.valid):
                lens["first_byte"] = n
            rdy = rng.random() < ready_p
            ctx.set(dut.result.ready, rdy)
            valid = ctx.get(dut.result.valid)
            beat = (ctx.get(dut.result.payload.data), ctx.get(dut.result.payload.last))
            if valid and held is not None:
                assert beat == held, f"result payload changed while not ready: {held} -> {beat}"
            held = beat if valid and not rdy else None
            await ctx.tick()
            if valid and rdy:
                out.append(beat[0])
                if beat[1]:
                    break
        else:
            raise AssertionError(f"no last result byte within {max_cycles} cycles")
        await ctx.tick()
        assert not ctx.get(dut.busy)
        assert not ctx.get(dut.fault), "fault after a frame build_layout laid out"
        for k in ("cycles", "busy", "stalls", "macs"):
            counters[k] = ctx.get(dut.counters[k])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return np.array(out, dtype=np.int64).astype(np.int8), counters, layout, lens


def check(qmodel, config, *, seed, batch=1, **kw):
    """Run ``batch`` random frames; the result, decoded, must be hw.reference's for each frame."""
    shape = tuple(qmodel.input_shape) if batch == 1 else (batch, *qmodel.input_shape)
    frame = np.random.default_rng(seed + 1).integers(-128, 128, shape).astype(np.int8)
    got, counters, layout, lens = run_core(qmodel, config, frame, seed=seed, batch=batch, **kw)
    frames = frame if batch > 1 else frame[None]
    want = np.stack([run_model(qmodel, f)[-1] for f in frames]).reshape(-1)
    assert got.size == want.size, f"seed {seed}: {got.shape} vs {want.shape}"
    got = layout.decode_output(got.tobytes()).reshape(-1)
    bad = np.nonzero(got != want)[0]
    assert not len(bad), f"seed {seed}: {len(bad)} of {want.size} outputs differ, first at {bad[:8]}"
    assert counters["macs"] == layout.macs, f"seed {seed}"
    assert counters["cycles"] == layout.expected_cycles, f"seed {seed}"
    assert {k: lens[k] for k in ("input", "output")} == {"input": layout.input_len,
                                                          "output": layout.output_len}
    return counters


def random_case(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.choice([1, 3, 3, 3]))
    variant = str(rng.choice(VARIANTS)) if k == 3 else "pSC9"
    kw = dict(c_in=int(rng.integers(1, 10)), c_out=int(rng.integers(1, 20)), h=int(rng.integers(1, 10)),
              w=int(rng.integers(1, 13)), k=k, stride=int(rng.integers(1, 3)), variant=variant,
              relu=bool(rng.integers(2)))
    rows, cols = [(8, 8), (4, 4), (2, 8), (4, 2), (1, 2)][int(rng.integers(5))]
    return kw, rows, cols


@pytest.mark.parametrize("seed", range(12))
def test_random_layer(seed):
    kw, rows, cols = random_case(seed)
    q = random_layer_model(seed=seed, **kw)
    check(q, ArrayConfig.for_model(q, rows=rows, cols=cols), seed=seed, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("pack_pairs", [None, False], ids=["default", "unpacked"])
def test_chain_with_fc(pack_pairs):
    """Also with the array's pair packing off (as on ECP5): same bytes, same cycle counts."""
    q = random_chain_model([dict(c_out=6), dict(c_out=12, stride=2, variant="PSD2_P8"),
                            dict(c_out=5, k=1), dict(c_out=7, kind="fc")], c_in=2, h=7, w=9, seed=5)
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=5, ready_p=0.5, pack_pairs=pack_pairs)


@pytest.mark.parametrize("at", [40, 300])
def test_reset_mid_frame(at):
    """A reset in the middle of a frame (the array full of partial sums, rows in the output path)
    leaves the engine usable: the same image and frame, loaded again, give the exact result and
    the model's cycle count. The datapath registers are reset-less (off the reset net), so this
    is what shows that nothing stale from the abandoned frame leaks into the next one."""
    q = random_chain_model([dict(c_out=9, variant="PSD2_P8"), dict(c_out=6, stride=2)],
                           c_in=3, h=8, w=9, seed=5)
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=5, reset_after=at)


@pytest.mark.parametrize("at", [30, 45, 60, 75, 90])
def test_start_right_after_reset(at):
    """Start again the cycle after a mid-frame reset, without reloading (one layer: its input
    region is intact): steps and rows still in the pipeline must not reach the new frame."""
    q = random_layer_model(seed=4, c_in=5, c_out=8, h=6, w=8, variant="PSD2_P8")
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=4, reset_after=at, reload=False)


@pytest.mark.parametrize("at", [3, 266, 486, 566, 866, 1264, "readout"])
def test_abort_mid_frame(at):
    """``abort`` at any point of a frame (1,271 cycles: the first layer's setup and tiles (its
    descriptor loaded while the core idled), its drain (cycles 470-502) while the second's
    descriptor loads, the second's tiles, its drain, the readout with a result byte on offer)
    idles the core once its tiles in flight are written back; the model stays loaded: the INPUT
    words alone, loaded again, give the exact result and the model's cycle count (the idle core
    loads the first descriptor again: an abort may cut the second's load short). (In session
    9, idling without waiting for the write-backs lost INPUT words to them: the case in the
    second layer's tiles failed.)"""
    q = random_chain_model([dict(c_out=9, variant="PSD2_P8"), dict(c_out=6, stride=2)],
                           c_in=3, h=8, w=9, seed=5)
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=5, abort_after=at, ready_p=0.6)


def test_start_during_descriptor_preload():
    """The first layer's descriptor loads while the core idles. Written last, the start comes
    a cycle after the last descriptor word and waits for that load (busy, the load port
    closed): the result byte comes up to DESC_CYCLES later than with the descriptors written
    first, yet the ``cycles`` counter (from the first layer's setup) is the model's either way
    (``check``)."""
    from hw.cycles import DESC_CYCLES
    q = random_chain_model([dict(c_out=9, variant="PSD2_P8"), dict(c_out=6, stride=2)],
                           c_in=3, h=8, w=9, seed=5)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4)
    first = {}
    for last in (False, True):
        frame = np.random.default_rng(6).integers(-128, 128, q.input_shape).astype(np.int8)
        got, counters, layout, lens = run_core(q, cfg, frame, seed=5, descriptors_last=last)
        assert np.array_equal(layout.decode_output(got.tobytes()).reshape(-1),
                              run_model(q, frame)[-1].reshape(-1))
        assert counters["cycles"] == layout.expected_cycles
        first[last] = lens["first_byte"]
    assert 0 < first[True] - first[False] <= DESC_CYCLES, first


def test_abort_while_start_waits():
    """An abort while the start waits for the first descriptor's load cancels the start: the
    core idles with no result byte, and the INPUT words, loaded again, run exactly."""
    q = random_layer_model(seed=3, c_in=3, c_out=8, h=6, w=7, variant="PSD2_P8")
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=3, abort_after=2,
          descriptors_last=True)


def _abort_models():
    four = random_chain_model([dict(c_out=16, variant="PSD2_P8", pool=True), dict(c_out=8, variant="PSD1_P16"),
                               dict(c_out=20, stride=2), dict(c_out=5, k=1), dict(c_out=4, kind="fc")],
                              c_in=2, h=14, w=13, seed=21)
    batch = random_chain_model([dict(c_out=16, variant="PS4_P4"), dict(c_out=16, stride=2, variant="PSD2_P8"),
                                dict(c_out=8, stride=2, variant="PS4_P4", pool=True),
                                dict(c_out=6, kind="fc"), dict(c_out=5, kind="fc")], c_in=4, h=8, w=6, seed=41)
    split = random_chain_model([dict(c_out=16, stride=2, variant="PSD2_P8"), dict(c_out=9, kind="fc"),
                                dict(c_out=6, kind="fc")], c_in=3, h=8, w=8, seed=52)
    return {"four groups, pooled, FC": (four, 1), "batch of 2, tall and by frame": (batch, 2),
            "split FC inputs, batch of 2": (split, 2)}


@pytest.mark.parametrize("frac", [0.3, 0.7])
@pytest.mark.parametrize("name", ["four groups, pooled, FC", "batch of 2, tall and by frame",
                                  "split FC inputs, batch of 2"])
def test_abort_across_mappings(name, frac):
    """An abort leaves every mapping's engine usable (four-group, mixed, pooled, folded, tall and
    frame-by-frame batch layers, split FC inputs): the INPUT words alone then give the exact
    result, cycles and MACs."""
    q, batch = _abort_models()[name]
    cfg = ArrayConfig.for_model(q, rows=8, cols=4, groups=4, batch=batch)
    at = int(frac * build_layout(q, cfg, batch=batch).expected_cycles)
    check(q, cfg, seed=60, batch=batch, abort_after=at, ready_p=0.7, valid_p=0.8)


def test_model_ok():
    """``model_ok`` follows hw.descriptors.check_descriptors (the header, a descriptor per layer,
    every layer word in its field's range) on sections written through the load port,
    MODEL_CHECK_LATENCY cycles after the last word; ``unload`` clears what was written (a load
    without a header is refused)."""
    from gateware.interfaces import MODEL_CHECK_LATENCY
    from hw.image import ImageError
    from hw.descriptors import check_descriptors
    cfg = small_engine()
    cases = model_check_cases(np.random.default_rng(7))
    dut = Core(config=cfg)
    got, want = [], []

    async def tb(ctx):
        for words in cases + [None]:
            ctx.set(dut.unload, 1)
            await ctx.tick()
            ctx.set(dut.unload, 0)
            for addr, word in enumerate(words if words is not None else []):
                ctx.set(dut.load.valid, 1)
                ctx.set(dut.load.payload.space, Space.DESCRIPTORS)
                ctx.set(dut.load.payload.addr, addr)
                ctx.set(dut.load.payload.data, int(word))
                await ctx.tick()
            ctx.set(dut.load.valid, 0)
            await ctx.tick().repeat(MODEL_CHECK_LATENCY - 1)
            got.append(ctx.get(dut.model_ok))
            try:
                check_descriptors(words, cfg)
                want.append(1)
            except ImageError as e:
                assert e.code == ErrorCode.BAD_MODEL
                want.append(0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    wrong = [(list(c) if c is not None else None, g, w)
             for c, g, w in zip(cases + [None], got, want) if g != w]
    assert not wrong, wrong[:3]
    assert 10 < sum(want) < len(want) - 10


def test_rejects_bad_pack_pairs():
    q = random_layer_model(seed=1, c_in=1, c_out=2, h=3, w=3)
    cfg = ArrayConfig.for_model(q, rows=2, cols=2)
    assert Core(config=cfg).pack_pairs is None and Core(config=cfg, pack_pairs=True).pack_pairs
    with pytest.raises(TypeError, match="Core pack_pairs must be a bool or None, not 'yes'"):
        Core(config=cfg, pack_pairs="yes")


def test_digitsnet():
    from host.synthetic import random_qmodel
    q = random_qmodel("DigitsNet_PSD2_P8", seed=3)
    check(q, ArrayConfig.for_model(q), seed=3)


def test_config_id_and_ready_while_busy():
    q = random_layer_model(seed=1, c_in=1, c_out=2, h=3, w=3)
    cfg = ArrayConfig.for_model(q, rows=2, cols=2)
    dut = Core(config=cfg)
    seen = {}

    async def tb(ctx):
        seen["id"] = ctx.get(dut.config_id)
        ctx.set(dut.start, 1)          # nothing loaded: zero layers... still must end
        await ctx.tick()
        ctx.set(dut.start, 0)
        seen["ready_busy"] = ctx.get(dut.load.ready), ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen["id"] == cfg.config_id
    assert seen["ready_busy"] == (0, 1)


@pytest.mark.parametrize("kw,rows,cols", [
    (dict(c_in=3, c_out=16, h=8, w=8, stride=2), 8, 8),                         # fold (w_out = C/2)
    (dict(c_in=2, c_out=9, h=3, w=1, stride=1), 4, 2),                          # fold, odd h_out
    (dict(c_in=4, c_out=16, h=7, w=9, stride=1, variant="PSD2_P8"), 8, 4),      # two row groups
])
def test_row_groups_and_fold(kw, rows, cols):
    q = random_layer_model(seed=4, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=2)
    f = build_layout(q, cfg).layers[0].fields
    assert f["fold"] or f["groups"] == 2
    check(q, cfg, seed=4, ready_p=0.7)


#: Flat tiles (C consecutive pixels of the flattened map, wrapping into the next output row):
#: one region on a two-port engine and two regions on a four-port one, stride 1 and 2, a row
#: end the tiles meet exactly (the next tile two rows down), w_out = C - 1, a chain. The shapes
#: are small for the Python simulator; FashionNet's own run in cocotb (``sim_tests``).
FLAT_LAYERS = [
    (dict(c_in=3, c_out=32, h=8, w=7, stride=1, variant="PS4_P4"), 8, 8, 2, 1, "w 7 on 8 columns"),
    (dict(c_in=2, c_out=16, h=8, w=12, stride=2, variant="PS4_P4", relu=False), 4, 4, 2, 1,
     "s2, w_out 6 on 4"),
    (dict(c_in=2, c_out=8, h=10, w=6, stride=1), 8, 8, 2, 1, "w 6: row ends met"),
    (dict(c_in=3, c_out=32, h=19, w=19, stride=2, variant="PSD4_P8"), 8, 8, 4, 2, "2 regions, s2, w_out 10"),
    (dict(c_in=2, c_out=16, h=6, w=2, stride=1, variant="PSD2_P8"), 4, 4, 4, 2, "2 regions, w_out C/2"),
    (dict(c_in=2, c_out=32, h=12, w=10, stride=2, variant="PSD2_P16", relu=False), 8, 8, 4, 2,
     "2 regions, s2, w_out 5"),
]


@pytest.mark.parametrize("kw,rows,cols,GM,G,how", FLAT_LAYERS, ids=[c[-1] for c in FLAT_LAYERS])
def test_flat_tiles(kw, rows, cols, GM, G, how):
    q = random_layer_model(seed=12, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)
    f = build_layout(q, cfg).layers[0].fields
    assert f["flat"] == 1 and f["groups"] == G, how
    check(q, cfg, seed=12, ready_p=0.6, valid_p=0.8)


def test_flat_chain():
    """Flat layers feed and follow row-group and pooled layers on chip."""
    # (Periods that do not divide the channels: these layers cannot mix classes instead.)
    q = random_chain_model([dict(c_out=8, variant="PS4_P4", pool=True), dict(c_out=8, variant="PS2_P6"),
                            dict(c_out=8, stride=2, variant="PSD2_P16"), dict(c_out=4, kind="fc")],
                           c_in=2, h=14, w=14, seed=13)
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=4)
    used = [(p.fields["groups"], p.fields["flat"]) for p in build_layout(q, cfg).layers]
    assert (1, 1) in used or (2, 1) in used, used
    check(q, cfg, seed=13, ready_p=0.5, valid_p=0.7)


#: Mixed classes (group g takes class r + g of the same pixels, g channel planes lower): flat
#: tiles of the whole map with two groups on four ports (FashionNet's conv2 shape in small, and
#: s 2 with w_out 5 on 4 columns), one output row a tile with two and four groups (FashionNet's
#: conv3 shape in small), flat with a port a group (stride 1: four groups on four ports,
#: FashionNet's conv2 PSD2_P16 shape in small, and two on the two-port engine), and a chain
#: where mixed layers feed each other and an FC. FashionNet's full shapes run in cocotb
#: (``sim_tests``).
MIXED_LAYERS = [
    (dict(c_in=8, c_out=32, h=11, w=11, stride=2, variant="PSD2_P8"), 8, 8, 4, 2, 1, "flat s2, w_out 6 on 8"),
    (dict(c_in=8, c_out=16, h=10, w=10, stride=2, variant="PS3_P4", relu=False), 4, 4, 4, 2, 1,
     "flat s2, w_out 5 on 4"),
    (dict(c_in=8, c_out=16, h=14, w=14, stride=2, variant="PSD2_P8"), 8, 8, 4, 4, 0, "conv3 shape in small, 4 groups"),
    (dict(c_in=8, c_out=16, h=7, w=7, stride=1, variant="PSD2_P8"), 8, 8, 2, 2, 0, "two groups, two ports"),
    (dict(c_in=16, c_out=32, h=6, w=6, stride=1, variant="PSD2_P16"), 8, 8, 4, 4, 1, "flat, port a group"),
    (dict(c_in=4, c_out=8, h=6, w=3, stride=1, variant="PS4_P4"), 4, 4, 2, 2, 1, "flat, two ports, port a group"),
]


@pytest.mark.parametrize("kw,rows,cols,GM,G,flat,how", MIXED_LAYERS, ids=[c[-1] for c in MIXED_LAYERS])
def test_mixed_classes(kw, rows, cols, GM, G, flat, how):
    q = random_layer_model(seed=12, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)
    f = build_layout(q, cfg).layers[0].fields
    assert (f["mix"], f["groups"], f["flat"]) == (1, G, flat), how
    check(q, cfg, seed=12, ready_p=0.6, valid_p=0.8)


def test_mixed_chain():
    """Mixed layers feed and follow flat and FC layers on chip."""
    q = random_chain_model([dict(c_out=8, variant="PSD2_P8"), dict(c_out=16, stride=2, variant="PSD2_P8"),
                            dict(c_out=16, variant="PS4_P4"), dict(c_out=4, kind="fc")],
                           c_in=8, h=10, w=10, seed=14)
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=4)
    used = [p.fields["mix"] for p in build_layout(q, cfg).layers]
    assert sum(used) >= 2, used
    check(q, cfg, seed=14, ready_p=0.5, valid_p=0.7)


def random_pool_case(seed):
    """A random layer with a 2x2 max-pool (conv output at least 2 x 2)."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([1, 3, 3, 3]))
    s = int(rng.integers(1, 3))
    lo = 2 * s if k == 3 else 2 * s - 1 + (s == 1)
    kw = dict(c_in=int(rng.integers(1, 8)), c_out=int(rng.integers(1, 20)), h=int(rng.integers(lo, 12)),
              w=int(rng.integers(lo, 20)), k=k, stride=s,
              variant=str(rng.choice(VARIANTS)) if k == 3 else "pSC9", relu=bool(rng.integers(2)),
              pool=True)
    rows, cols = [(8, 8), (4, 4), (2, 8), (4, 2), (1, 2), (8, 4), (2, 4)][int(rng.integers(7))]
    return kw, rows, cols


@pytest.mark.parametrize("seed", range(6))
def test_random_pool_layer(seed):
    kw, rows, cols = random_pool_case(seed)
    q = random_layer_model(seed=seed, **kw)
    check(q, ArrayConfig.for_model(q, rows=rows, cols=cols), seed=seed, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("kw,rows,cols,how", [
    (dict(c_in=2, c_out=5, h=6, w=11, stride=1, relu=True), 4, 4, "one group, column tiles, even h"),
    (dict(c_in=2, c_out=5, h=7, w=13, stride=1, relu=False), 4, 4, "one group, odd h and w"),
    (dict(c_in=3, c_out=6, h=11, w=17, stride=2, relu=False), 2, 4, "one group, stride 2, odd"),
    (dict(c_in=4, c_out=16, h=7, w=9, stride=1, variant="PSD2_P8"), 8, 4, "two groups, odd h"),
    (dict(c_in=3, c_out=12, h=8, w=10, stride=2, variant="PS4_P4", relu=False), 8, 4, "two groups, stride 2"),
    (dict(c_in=3, c_out=16, h=8, w=8, stride=2), 8, 8, "folded, even"),
    (dict(c_in=2, c_out=9, h=5, w=4, stride=1, relu=False), 4, 8, "folded, odd h"),
    (dict(c_in=2, c_out=3, h=5, w=6, stride=1, k=1), 1, 2, "1 x 2 array, 1x1 conv"),
])
def test_pool_layer(kw, rows, cols, how):
    q = random_layer_model(seed=6, pool=True, **kw)
    # Pin the engine's groups: the cycle model would give some one-group cases two groups.
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols,
                                groups=2 if "two groups" in how or "folded" in how else 1)
    f = build_layout(q, cfg).layers[0].fields
    assert ("two groups" in how) == (f["groups"] == 2) and ("folded" in how) == bool(f["fold"])
    check(q, cfg, seed=6, ready_p=0.6, valid_p=0.8)


def test_pool_chain():
    """Pooled maps feed the next layer on chip: conv+pool, stride-2 conv+pool, 1x1, FC."""
    q = random_chain_model([dict(c_out=6, pool=True), dict(c_out=8, stride=2, variant="PSD2_P8", pool=True),
                            dict(c_out=5, k=1), dict(c_out=4, kind="fc")], c_in=2, h=13, w=15, seed=8)
    check(q, ArrayConfig.for_model(q, rows=4, cols=4), seed=8, ready_p=0.5, valid_p=0.7)


#: Four row groups: classes of R/4 filters (P = 8 / 16 on few filters), classes in several
#: blocks of R/4, odd and even output heights (a last tile with 1, 2 or 3 rows), stride 1 and 2,
#: pooled (pairs (oy, oy+1) and (oy+2, oy+3) in one tile; a pair whose second row is missing
#: writes nothing), the fold on a four-group engine, R/4 = 1 and R = 16.
FOUR_GROUP_LAYERS = [
    (dict(c_in=4, c_out=16, h=7, w=9, stride=1, variant="PSD2_P8"), 8, 8, 4, "h_out 7"),
    (dict(c_in=3, c_out=16, h=11, w=8, stride=2, variant="PSD2_P8", relu=False), 8, 4, 4, "s2, h_out 6"),
    (dict(c_in=2, c_out=5, h=7, w=4, stride=1, relu=True), 8, 4, 4, "dense, 3 blocks"),
    (dict(c_in=3, c_out=16, h=7, w=9, stride=1, variant="PSD2_P8", pool=True), 8, 4, 4, "pool, h_out 7"),
    (dict(c_in=2, c_out=8, h=10, w=14, stride=2, variant="PS4_P4", relu=False, pool=True), 8, 8, 4,
     "pool s2, h_out 5"),
    (dict(c_in=2, c_out=6, h=6, w=13, stride=1, variant="PSD1_P16", pool=True), 4, 4, 4, "pool, gs 1"),
    (dict(c_in=3, c_out=16, h=8, w=8, stride=2), 8, 8, 1, "fold on 4 ports"),
    (dict(c_in=2, c_out=9, h=5, w=4, stride=1, relu=False, pool=True), 4, 8, 1, "fold pool on 4 ports"),
    (dict(c_in=2, c_out=32, h=7, w=5, stride=1, variant="PSD2_P8"), 16, 4, 4, "R 16"),
]


@pytest.mark.parametrize("kw,rows,cols,G,how", FOUR_GROUP_LAYERS, ids=[c[-1] for c in FOUR_GROUP_LAYERS])
def test_four_groups(kw, rows, cols, G, how):
    q = random_layer_model(seed=9, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=4)
    f = build_layout(q, cfg).layers[0].fields
    assert f["groups"] == G and bool(f["fold"]) == ("fold" in how), how
    check(q, cfg, seed=9, ready_p=0.6, valid_p=0.8)


@pytest.mark.parametrize("seed", range(8))
def test_random_four_groups(seed):
    """Random layers (small classes favoured, some pooled) on four-group engines."""
    rng = np.random.default_rng(1000 + seed)
    k = int(rng.choice([1, 3, 3, 3]))
    s = int(rng.integers(1, 3))
    pool = bool(rng.integers(2))
    lo = 2 * s if pool else 1
    kw = dict(c_in=int(rng.integers(1, 6)), c_out=int(rng.integers(1, 24)), h=int(rng.integers(lo, 12)),
              w=int(rng.integers(lo, 12)), k=k, stride=s, relu=bool(rng.integers(2)),
              variant=str(rng.choice(["PSD2_P8", "PSD1_P16", "PS4_P4", "PS2_P6", "pSC9"])) if k == 3 else "pSC9")
    if pool and k == 1 and s == 2:
        kw.update(h=max(kw["h"], 3), w=max(kw["w"], 3))
    kw["pool"] = pool
    rows, cols = [(8, 8), (4, 4), (8, 4), (16, 2)][seed % 4]
    q = random_layer_model(seed=seed, **kw)
    check(q, ArrayConfig.for_model(q, rows=rows, cols=cols, groups=4), seed=seed, ready_p=0.7,
          valid_p=0.8)


def test_four_group_chain():
    """A chain on a four-group engine: layers pick 4, 2 or 1 groups (or fold) each."""
    q = random_chain_model([dict(c_out=16, variant="PSD2_P8", pool=True), dict(c_out=8, variant="PSD1_P16"),
                            dict(c_out=20, stride=2), dict(c_out=5, k=1), dict(c_out=4, kind="fc")],
                           c_in=2, h=14, w=13, seed=21)
    cfg = ArrayConfig.for_model(q, rows=8, cols=4, groups=4)
    used = {(p.fields["groups"], p.fields["fold"]) for p in build_layout(q, cfg).layers}
    assert (4, 0) in used and (1, 0) in used, used
    check(q, cfg, seed=21, ready_p=0.5, valid_p=0.7)


def test_digitsnet_four_groups():
    from host.synthetic import random_qmodel
    q = random_qmodel("DigitsNet_PSD2_P8", seed=3)
    cfg = ArrayConfig.for_model(q)
    assert cfg.groups == 4            # classes of 2 filters: the cycle model picks four groups
    check(q, cfg, seed=3)


#: Batches: FashionNet's conv3 shapes in small, tall (mixed classes on flat tiles over both
#: frames, which 6 x 6 maps on 8 columns cross; two ports a group at stride 2, one at stride
#: 1), a pooled layer frame by frame, and a chain ending in an FC (whose input the layer before it
#: writes frame after frame), on two- and four-group engines.
@pytest.mark.parametrize("kw,rows,cols,GM,batch,how", [
    (dict(c_in=8, c_out=32, h=12, w=12, stride=2, variant="PSD2_P8"), 8, 8, 4, 2, "tall"),
    (dict(c_in=4, c_out=12, h=5, w=9, stride=1, variant="PS4_P4"), 4, 4, 2, 3, "tall"),
    (dict(c_in=3, c_out=10, h=6, w=7, stride=1, variant="PS2_P6", pool=True), 4, 4, 4, 2, "frame"),
    # FashionNet's conv3 PSD2_P16 shape in small: four mixed groups, a port each, tiles across frames.
    (dict(c_in=16, c_out=32, h=6, w=6, stride=1, variant="PSD2_P16"), 8, 8, 4, 2, "tall"),
])
def test_batch_layer(kw, rows, cols, GM, batch, how):
    q = random_layer_model(seed=31, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM, batch=batch)
    plan = build_layout(q, cfg, batch=batch).layers[0]
    assert (plan.tall, plan.passes) == ((True, 1) if how == "tall" else (False, batch)), plan.mapping
    check(q, cfg, seed=31, batch=batch, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("batch,GM", [(2, 4), (3, 2)])
def test_batch_chain(batch, GM):
    q = random_chain_model([dict(c_out=16, variant="PS4_P4"), dict(c_out=16, stride=2, variant="PSD2_P8"),
                            dict(c_out=8, stride=2, variant="PS4_P4", pool=True),
                            dict(c_out=6, kind="fc"), dict(c_out=5, kind="fc")],
                           c_in=4, h=8, w=6, seed=41)
    cfg = ArrayConfig.for_model(q, rows=8, cols=4, groups=GM, batch=batch)
    layout = build_layout(q, cfg, batch=batch)
    # (The first layer runs tall, mixed on flat tiles: stride 1, so one port a group suffices on
    # the two-port engine too; since session 18 so does the second, at stride 2 on rows the
    # first writes padded, 6 -> 7 bytes; the rest go frame by frame.)
    assert [p.tall for p in layout.layers] == [True, True, False, False, False], \
        [p.mapping for p in layout.layers]
    assert layout.layers[0].fields["out_w"] == layout.layers[1].fields["w_in"] == 7
    check(q, cfg, seed=41, batch=batch, ready_p=0.6, valid_p=0.7)


#: Batches of two into an FC: the layer before it writes the two frames interleaved (its
#: pixels 2 bytes apart: the tile's column and a flat region's offset doubled on their way into
#: the tag's address, the write lanes 2 bytes apart), whatever its mapping; the FC takes both
#: frames in two columns (split inputs: the partial sums added on columns 0 and 1). Since
#: session 22 a pooled layer does the same, its pooled pixels 2 bytes apart (``out_w = 2 *
#: (w_out // 2)``; an odd conv width floors).
@pytest.mark.parametrize("layer,shape,rows,cols,GM,want", [
    (dict(c_out=24, variant="PS2_P6"), (4, 8, 7), 8, 4, 4, "2 groups, flat in 2 regions, frame by frame"),
    (dict(c_out=16, variant="PSD2_P8"), (16, 6, 6), 8, 8, 4, "4 groups, 4 classes a tile, flat, frame by frame"),
    (dict(c_out=16, variant="pSC9"), (3, 5, 2), 8, 4, 2, "1 group, folded, frame by frame"),
    (dict(c_out=16, variant="pSC9"), (3, 5, 9), 8, 4, 1, "1 group, frame by frame"),
    (dict(c_out=12, stride=2, variant="PS2_P6"), (6, 9, 14), 8, 4, 4, "4 groups, frame by frame"),
    (dict(c_out=8, variant="PS4_P4", pool=True), (4, 6, 6), 8, 4, 4, "4 groups, frame by frame"),
    (dict(c_out=6, variant="PSD2_P8", relu=False, pool=True), (3, 5, 7), 8, 4, 2, "2 groups, frame by frame"),
    (dict(c_out=10, variant="pSC9", pool=True), (2, 4, 2), 8, 4, 2, "1 group, folded, frame by frame"),
])
def test_batch_of_two_fc_in_columns(layer, shape, rows, cols, GM, want):
    c_in, h, w = shape
    q = random_chain_model([layer, dict(c_out=5, kind="fc")], c_in=c_in, h=h, w=w, seed=53)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM, batch=2)
    conv, fc = build_layout(q, cfg, batch=2).layers
    assert conv.mapping == want        # (the mapping the case is chosen to cover)
    w_stored = conv.fields["w_out"] // 2 if layer.get("pool") else conv.fields["w_out"]
    assert (conv.fields["out_w"], conv.fields["frame_out"]) == (2 * w_stored, 1)
    assert (fc.columns, fc.passes) == (2, 1), fc.mapping
    check(q, cfg, seed=53, batch=2, ready_p=0.7, valid_p=0.8)


def test_batch_of_two_fc_in_columns_after_a_depth_first_prefix():
    """The layer before the FC is the last of a depth-first prefix: each of its frames' runs
    writes that frame interleaved (from the map's base + b), and the FC takes both."""
    q = random_chain_model([dict(c_out=8, stride=2), dict(c_out=6), dict(c_out=5, kind="fc")],
                           c_in=2, h=6, w=12, seed=7)
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, groups=2, batch=2).replace(max_layers=8)
    layers = build_layout(q, cfg, batch=2, depth_first=2).layers
    assert [p.frame for p in layers] == [0, 0, 1, 1, None] and layers[-1].columns == 2
    check(q, cfg, seed=54, batch=2, depth_first=2, ready_p=0.7, valid_p=0.8)


#: Padded rows (session 18): a stride-2 layer's mixed flat tiles with a port a group read a
#: tile's second output row ``2 * (w_in - w_out)`` bytes on, which the layout makes a whole
#: number of bank rows by padding the input map's rows (``w_in`` is then the pitch: 12 -> 14 on
#: 8 columns, 10 -> 13 on 4), so the port's columns past the row end read ``rd_jump`` bank rows
#: further. Single layers (input sent padded), one frame and two as one tall map (a tile's
#: second row in the next frame), and on a four-column engine.
@pytest.mark.parametrize("kw,rows,cols,GM,batch,pitch", [
    (dict(c_in=16, c_out=32, h=12, w=12, stride=2, variant="PSD2_P16"), 8, 8, 4, 1, 14),
    (dict(c_in=16, c_out=32, h=12, w=12, stride=2, variant="PSD2_P16"), 8, 8, 4, 2, 14),
    (dict(c_in=16, c_out=32, h=12, w=12, stride=2, variant="PSD2_P8", relu=False), 8, 8, 2, 1, 14),
    (dict(c_in=16, c_out=16, h=6, w=10, stride=2, variant="PSD2_P16"), 4, 4, 4, 1, 13),
], ids=["4 groups", "4 groups, tall batch", "2 groups", "4 columns, groups of 1 row"])
def test_padded_rows(kw, rows, cols, GM, batch, pitch):
    q = random_layer_model(seed=61, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM, batch=batch)
    layout = build_layout(q, cfg, batch=batch)
    f = layout.layers[0].fields
    # (The mapping the case is chosen to cover: mixed flat tiles, a port a group, padded input.)
    assert (f["mix"], f["flat"], f["groups"], f["w_in"], layout.input_pitch) == (1, 1, GM, pitch, pitch)
    assert layout.layers[0].tall == (batch > 1)
    check(q, cfg, seed=61, batch=batch, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("batch,GM,depth_first", [(1, 4, 0), (1, 2, 0), (2, 4, 0), (2, 4, 2)])
def test_padded_rows_chain(batch, GM, depth_first):
    """A flat layer writes the padded rows a stride-2 layer reads: its tiles' lanes past a row
    end land ``out_w - w_out`` bytes further on (``wr_gap``). Depth-first, the first two layers
    run frame by frame between one-frame maps, the second writing the batch's map."""
    q = random_chain_model([dict(c_out=32, variant="PSD2_P16"), dict(c_out=32, stride=2, variant="PSD2_P16"),
                            dict(c_out=4, kind="fc")], c_in=16, h=12, w=12, seed=5)
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=GM, batch=batch).replace(max_layers=8)
    layout = build_layout(q, cfg, batch=batch, depth_first=depth_first)
    first, second = layout.layers[0].fields, layout.layers[1].fields    # (depth-first: frame 0)
    assert (first["flat"], first["w_out"], first["out_w"]) == (1, 12, 14), layout.layers[0].mapping
    assert (second["mix"], second["flat"], second["w_in"]) == (1, 1, 14), layout.layers[1].mapping
    check(q, cfg, seed=62, batch=batch, depth_first=depth_first, ready_p=0.6, valid_p=0.7)


#: FCs whose inputs split over the groups (``mix`` = 2): the groups' partial sums of each filter
#: are added on column 0 as the array drains (group G-1 first), bit-exact with the exact cycles
#: and MACs of the model; groups of 2 rows on four ports, of 4 rows on two of four ports and on
#: the two-port engine, of 1 row (R = 4, G = 4); a chain of two FCs in a batch of 2, each
#: taking both frames in its columns.
@pytest.mark.parametrize("K,F,rows,cols,GM,G", [
    (64, 10, 8, 8, 4, 4), (96, 12, 8, 4, 4, 2), (48, 5, 4, 4, 2, 2), (40, 3, 4, 2, 4, 4),
])
def test_split_inputs(K, F, rows, cols, GM, G):
    q = random_layer_model(seed=51, c_in=K, c_out=F, h=1, w=1, k=1, variant="pSC9",
                           relu=False)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)
    plan = build_layout(q, cfg).layers[0]
    assert (plan.fields["mix"], plan.fields["groups"]) == (2, G), plan.mapping
    check(q, cfg, seed=51, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("batch", [1, 2])
def test_split_inputs_of_a_strided_1x1_conv(batch):
    """A 1x1 conv of stride 2 on a 1 x 1 map is an FC whose inputs may split, and its stride
    changes nothing there: the descriptor says stride 1, because the sequencer walks the chunks
    as rows ``stride`` apart (with stride 2, group 1 read the row past the map: ``make sweep
    SWEEP_SEED=23``'s layer seed 2310118 in session 22). Both, one frame and a batch of two."""
    q = random_layer_model(seed=2310118, c_in=12, c_out=12, h=1, w=1, k=1, stride=2,
                           variant="pSC9")
    cfg = ArrayConfig.for_model(q, rows=8, cols=8, groups=4, batch=batch)
    plan = build_layout(q, cfg, batch=batch).layers[0]
    assert (plan.fields["mix"], plan.fields["stride"]) == (2, 1), plan.mapping
    check(q, cfg, seed=23, batch=batch, ready_p=0.7, valid_p=0.8)


@pytest.mark.parametrize("batch", [1, 2])
def test_split_chain(batch):
    q = random_chain_model([dict(c_out=16, stride=2, variant="PSD2_P8"), dict(c_out=9, kind="fc"),
                            dict(c_out=6, kind="fc")], c_in=3, h=8, w=8, seed=52)
    cfg = ArrayConfig.for_model(q, rows=8, cols=4, groups=4, batch=batch)
    layout = build_layout(q, cfg, batch=batch)
    assert [p.fields["mix"] for p in layout.layers][1] == 2, [p.mapping for p in layout.layers]
    # In a batch of two both FCs take the frames in their columns.
    assert [p.columns for p in layout.layers] == [1, batch, batch]
    check(q, cfg, seed=52, batch=batch, ready_p=0.6, valid_p=0.7)


def _guard_case(act_depth=None, w=9):
    q = random_layer_model(seed=3, c_in=3, c_out=9, h=8, w=w, k=3, stride=1, relu=True,
                           variant="PSD2_P8")
    config = ArrayConfig.for_model(q, rows=4, cols=4)
    if act_depth is not None:
        config = config.replace(act_depth=act_depth)
    return q, config, build_layout(q, config)


def _guard_changes(case, layout, config):
    """Descriptor words of the first layer changed: the maps or weights moved to (``fits``) or
    past (the others) the end of their memory, or a map with as many rows as the memory has
    bytes. Worked from the fields' meaning (``hw.layout``), not from the engine."""
    from hw.descriptors import DESC_HEADER_WORDS, LAYER_FIELDS
    f = layout.layers[0].fields
    A, W = config.act_depth, config.weight_depth
    entries = layout.sections[Space.WEIGHTS].size // config.words_per_entry
    in_map, out_map = f["c_in"] * f["hw_in"], f["c_out"] * f["out_hw"]
    changes = {
        "input fits": dict(in_base=A - in_map),
        "output fits": dict(out_base=A - out_map),
        "weights fit": dict(weight_base=W - entries),
        "input past the end": dict(in_base=A - in_map // 2),
        "input a byte past the end": dict(in_base=A - in_map + 1, h_in=f["h_in"]),
        "output past the end": dict(out_base=A - out_map // 2),
        "output a byte past the end": dict(out_base=A - out_map + 1),
        "weights past the end": dict(weight_base=W - entries + 1),
        "rows past the memory": dict(h_out=A),
        # Pixels 2 bytes apart (out_w = 2 w_out): the last byte at out_base + 2 out_map - 2.
        "output at stride 2 fits": dict(out_w=2 * f["w_out"], out_hw=2 * f["out_hw"],
                                        out_base=A - 2 * out_map + 1),
        "output at stride 2 a byte past the end": dict(out_w=2 * f["w_out"], out_hw=2 * f["out_hw"],
                                                       out_base=A - 2 * out_map + 2),
    }[case]
    assert all(0 <= v for v in changes.values())
    return {DESC_HEADER_WORDS + LAYER_FIELDS.index(n): v for n, v in changes.items()}


@pytest.mark.parametrize("case", ["input fits", "output fits", "weights fit",
                                  "input past the end", "input a byte past the end",
                                  "output past the end", "output a byte past the end",
                                  "weights past the end", "rows past the memory",
                                  "output at stride 2 fits", "output at stride 2 a byte past the end"])
def test_address_guard(case):
    """A layer whose input, output or weights pass the end of their memory (each field in its
    range, so the image loads) is stopped by the address guard: ``fault``, no result byte, the
    core idle; the same maps and weights moved to end exactly at the memory's end run. After a
    fault the engine is usable: the good image gives the exact result and cycle count."""
    # At stride 2: room for the output's pixels 2 bytes apart, and rows of 8 on 4 columns, so
    # that the last byte is a lane's past the first (lane 3 of the last tile, at 2 x 3).
    q, config, layout = _guard_case(*((2048, 8) if "stride 2" in case else ()))
    faulty = _guard_changes(case, layout, config)
    frame = np.random.default_rng(4).integers(-128, 128, q.input_shape).astype(np.int8)
    got, counters, layout, lens = run_core(q, config, frame, faulty=faulty, max_cycles=20_000)
    if case.endswith("fit") or case.endswith("fits"):
        assert lens["fault_at"] is None, f"{case}: fault after {lens['fault_at']} cycles"
        return
    assert lens["fault_at"] is not None, f"{case}: the frame delivered a result"
    want = run_model(q, frame)[-1].reshape(-1)
    assert (layout.decode_output(got.tobytes()).reshape(-1) == want).all(), case
    assert counters["cycles"] == layout.expected_cycles, case
