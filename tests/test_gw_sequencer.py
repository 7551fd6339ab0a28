"""amaranth.sim tests of gateware.sequencer: the issued step stream (weight entry, activation
address, padding flags, first/last) and tile tags against the loop nest written out in Python."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from bench.layers import random_layer_model
from gateware.sequencer import GUARD_LATENCY, Sequencer
from hw.array import ArrayConfig
from hw.layout import build_layout
from hw.descriptors import DESC_HEADER_WORDS, LAYER_FIELDS
from hw.memory_map import Space


def expected_steps(layout):
    """(w_addr, n0, ok bits, first, last) of every step, straight from the layer's definition."""
    cfg = layout.config
    R, C = cfg.rows, cfg.cols
    (plan,) = layout.layers
    f = plan.fields
    P, k, s, pad = f["period"], f["k"], f["stride"], f["k"] // 2
    G = f["groups"]
    gs = R // G
    # (An FC's split inputs, ``mix`` = 2, are plain row groups of a map of G rows: group g reads
    # row g, its chunk, and only group 0's output row exists.)
    fold, flat, mix = f["fold"], f["flat"], f["mix"] == 1
    # Output rows per tile; mixed groups compute the same pixels (group g: class r + g, reading
    # input channel (c - g) mod c_in at the walk's channel c).
    T = 2 if fold else 1 if mix else G
    NG = G if mix else T              # groups (ports) that read per tile
    one_port = bool(flat and mix and G == cfg.groups)
    pool = f["pool"]
    masks = layout.sections[Space.TABLES][f["table_base"]:f["table_base"] + P]
    steps, tags, entry = [], [], f["weight_base"]

    def tiles():
        """(oy, ox0, odd) of each tile; a pooled one-row-per-tile layer runs rows in pairs."""
        if flat:   # C consecutive pixels of each region, from (oy, ox)
            for n0 in range(0, f["flat_n"], C):
                yield n0 // f["w_out"], n0 % f["w_out"], 0
        elif pool and T == 1:
            for py in range(0, f["h_out"], 2):
                for ox0 in range(0, f["w_out"], C):
                    for dy in range(min(2, f["h_out"] - py)):
                        yield py + dy, ox0, dy
        else:
            for oy in range(0, f["h_out"], T):
                for ox0 in range(0, f["w_out"], C):
                    yield oy, ox0, 0

    # A batch runs frame by frame (``passes``, each from its own bases) or, tall, as one map of
    # all the frames' rows whose input rows are frame-local (padding at every frame's edges).
    passes = plan.passes
    tall = plan.tall
    base = {}

    def chan(c, g):
        return base["in"] + ((c - g) % f["c_in"] if mix else c) * f["hw_in"]

    def in_row(ot, ky):
        """Output row ``ot`` of the (tall) map, kernel row ``ky``: (frame-local input row, input
        row counted from the map's first)."""
        if tall:
            b, ol = divmod(ot, f["h_out"])
            y = ol * s + ky - pad
            return y, b * f["h_in"] + y
        y = ot * s + ky - pad
        return y, y

    for p, r in ((p, r) for p in range(passes) for r in range(0, P, G if mix else 1)):
        base["in"] = f["in_base"] + p * f["frame_in"]
        base["out"] = f["out_base"] + p * f["frame_out"]
        if r == 0:
            entry = f["weight_base"]
        n_r = plan.class_filters[r]
        for b in range(-(-n_r // gs)):
            for oy, ox0, odd in tiles():
                kk = 0
                for c in range(f["c_in"]):
                    taps = [t for t in range(9) if masks[(r + c) % P] >> t & 1]
                    for t in taps:
                        ky, kx = divmod(t, k)
                        rd = (None, 0)          # (rd_split, rd_jump): no split read
                        y = oy * s + ky - pad
                        x = [(ox0 + j) * s + kx - pad for j in range(C)]
                        dys = [0] * NG if mix else [g * s for g in range(T)]
                        oks = [sum(1 << j for j in range(C)
                                   if 0 <= y + dy < f["h_in"] and 0 <= x[j] < f["w_in"])
                               for dy in dys]
                        n0s = [chan(c, g) + (y + dy) * f["w_in"] + x[0] for g, dy in enumerate(dys)]
                        if flat:
                            # Per region g: port 2g the first k columns (row oy), port 2g + 1
                            # the rest (row oy + 1, column j at x of pixel ox + j - w_out).
                            # With a port a group (mixed, as many groups as ports): port g
                            # reads all C columns from the first row's address (stride 1,
                            # w_in = w_out: the pixels are consecutive bytes), ok bits of both.
                            kc = min(C, f["w_out"] - ox0)
                            lo = (1 << kc) - 1
                            oks, n0s = [], []
                            for g in range(G):
                                for dyr, dx, part in ((0, 0, lo), (1, f["w_out"], ~lo)):
                                    yy, ya = in_row(oy + (0 if mix else g * f["flat_h"]) + dyr, ky)
                                    xx = [(ox0 + j - dx) * s + kx - pad for j in range(C)]
                                    oks.append(sum(1 << j for j in range(C) if part >> j & 1
                                                   and 0 <= yy < f["h_in"] and 0 <= xx[j] < f["w_in"]))
                                    n0s.append(chan(c, g) + ya * f["w_in"] + xx[0])
                            if one_port:
                                # (One port reads both rows: the second row's columns jump
                                # whole bank rows on, s * (w_in - w_out) bytes: 0 at stride 1
                                # with w_in = w_out, a padded pitch at stride 2.)
                                jumps = {n0s[2 * g + 1] - n0s[2 * g] for g in range(G)}
                                assert jumps == {s * (f["w_in"] - f["w_out"])}
                                (jump,) = jumps
                                assert jump % (2 * C) == 0 and (s == 2 or jump == 0)
                                rd = (kc, jump // (2 * C)) if jump else (None, 0)
                                oks = [oks[2 * g] | oks[2 * g + 1] for g in range(G)]
                                n0s = n0s[::2]
                        elif fold:   # lower column half: row oy; upper half: row oy + 1
                            h = C // 2
                            oks = [oks[0] & ((1 << h) - 1), (oks[1] & ((1 << h) - 1)) << h]
                            n0s[1] -= h * s
                        steps.append((entry + kk, n0s, oks, kk == 0, False, rd))
                        kk += 1
                steps[-1] = steps[-1][:4] + (True,) + steps[-1][5:]
                top = r + (G - 1 if mix else 0) + P * (b * gs + gs - 1)
                n_cols = min(C, f["w_out"] - ox0)
                live = G if mix else min(T, f["h_out"] - oy)
                if flat:     # region G-1's tile; the columns whose pixel lies inside the region
                    region = 0 if mix else (G - 1) * f["flat_n"]
                    addr = base["out"] + top * f["out_hw"] + region + oy * f["w_out"] + ox0
                    n0 = oy * f["w_out"] + ox0
                    mask = sum(1 << j for j in range(C) if n0 + j < f["flat_n"])
                    live = G
                elif pool:     # pooled: the last pair's pooled row, floor(cols / 2) lanes
                    addr = (base["out"] + top * f["out_hw"] + (oy + G - 1) // 2 * f["out_w"]
                            + ox0 // 2)
                    mask = 0 if fold and live < 2 else (1 << n_cols // 2) - 1
                else:
                    addr = base["out"] + top * f["out_hw"] + (oy + (0 if mix else G - 1)) * f["out_w"] + ox0
                    mask = ((1 << n_cols) - 1) * (1 + (1 << C // 2) * (fold and oy + 1 < f["h_out"]))
                # (split: the tile's columns in its first output row; a flat or folded tile's
                # others are the next row's, which a writer of padded rows puts out_gap on.)
                tags.append((f["param_base"] + top, addr, min(gs, n_r - b * gs), mask, live, odd,
                             min(C, f["w_out"] - ox0)))
            entry += kk
    return steps, tags


@pytest.mark.parametrize("seed", range(12))
def test_step_stream(seed):
    rng = np.random.default_rng(seed)
    variant = str(rng.choice(["pSC9", "PS2_P6", "PSD2_P8", "PS4_P4"]))
    q = random_layer_model(seed=seed, c_in=int(rng.integers(1, 5)), c_out=int(rng.integers(1, 12)),
                           h=int(rng.integers(1, 6)), w=int(rng.integers(1, 9)),
                           stride=int(rng.integers(1, 3)), variant=variant)
    rows, cols = [(4, 4), (2, 2), (8, 4), (4, 8)][seed % 4]
    run_step_stream(q, rows, cols, seed)


@pytest.mark.parametrize("seed", range(20, 28))
def test_step_stream_pool(seed):
    """Pooled layers: tile order (rows in pairs with one group), pooled tag addresses and lanes."""
    rng = np.random.default_rng(seed)
    variant = str(rng.choice(["pSC9", "PS2_P6", "PSD2_P8", "PS4_P4"]))
    s = int(rng.integers(1, 3))
    q = random_layer_model(seed=seed, c_in=int(rng.integers(1, 5)), c_out=int(rng.integers(1, 12)),
                           h=int(rng.integers(2 * s, 8)), w=int(rng.integers(2 * s, 14)),
                           stride=s, variant=variant, pool=True)
    rows, cols = [(4, 4), (2, 2), (8, 4), (4, 8)][seed % 4]
    run_step_stream(q, rows, cols, seed)


def _ports(cfg, f):
    """Read ports (1 = rd2 ...) that feed the layer's groups 1 .. (fold: port 1, the second row;
    flat: 1 .. 2G - 1, ports 2g and 2g + 1 for region g; mixed flat with a port a group: g)."""
    GM = cfg.groups
    if f["fold"]:
        return [1]
    if f["flat"] and f["mix"] and f["groups"] == GM:   # a port a group
        return list(range(1, GM))
    if f["flat"]:
        return list(range(1, 2 * f["groups"]))
    return [g * GM // f["groups"] for g in range(1, f["groups"])]


async def _load_and_start(ctx, dut, layout, changes=None):
    """Write ``layout``'s descriptors and period tables into the sequencer ``dut`` (``changes``:
    ``{(space, addr): word}`` written instead), then pulse ``start``."""
    changes = changes or {}
    for space, addr, word in layout.load_words():
        space, addr = int(space), int(addr)
        word = changes.get((space, addr), int(word))
        ctx.set(dut.desc_we, space == Space.DESCRIPTORS)
        ctx.set(dut.table_we, space == Space.TABLES)
        ctx.set(dut.desc_addr, addr if space == Space.DESCRIPTORS else 0)
        ctx.set(dut.table_addr, addr if space == Space.TABLES else 0)
        ctx.set(dut.desc_data, word)
        ctx.set(dut.table_data, word & 0x1FF)
        await ctx.tick()
    ctx.set(dut.desc_we, 0)
    ctx.set(dut.table_we, 0)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


def run_step_stream(q, rows, cols, seed, groups=None, batch=1):
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=groups, batch=batch)
    layout = build_layout(q, cfg, batch=batch)
    want_steps, want_tags = expected_steps(layout)
    ports = _ports(cfg, layout.layers[0].fields)
    dut = Sequencer(config=cfg, act_addr_bits=max(1, (cfg.act_depth - 1).bit_length()))
    steps, tags, split_seen, ksum_seen, gap_seen = [], [], set(), set(), set()

    async def tb(ctx):
        await _load_and_start(ctx, dut, layout)
        pending = []
        for cyc in range(40000):
            # Tiles complete a fixed while after their tag (as the array's drain would).
            ctx.set(dut.tile_done, int(bool(pending) and pending[0] <= cyc))
            if pending and pending[0] <= cyc:
                pending.pop(0)
            ctx.set(dut.result.ready, 1)
            assert not ctx.get(dut.fault), f"seed {seed}: address guard fault at cycle {cyc}"
            if ctx.get(dut.step_valid):
                split_seen.add(ctx.get(dut.split) if cfg.groups >= 2 else 0)
                ksum_seen.add(ctx.get(dut.ksum))
                gap_seen.add(ctx.get(dut.out_gap))
                jump = ctx.get(dut.rd_jump)
                steps.append((ctx.get(dut.w_addr),
                              [ctx.get(dut.rd_addr)] + [ctx.get(getattr(dut, f"rd{k + 1}_addr")) for k in ports],
                              [ctx.get(dut.rd_ok)] + [ctx.get(getattr(dut, f"rd{k + 1}_ok")) for k in ports],
                              bool(ctx.get(dut.step_first)), bool(ctx.get(dut.step_last)),
                              (ctx.get(dut.rd_split) if jump else None, jump)))
            if ctx.get(dut.tag.valid):
                p = dut.tag.payload
                tags.append((ctx.get(p.channel), ctx.get(p.addr), ctx.get(p.rows), ctx.get(p.cols),
                             ctx.get(p.live), ctx.get(p.odd), ctx.get(p.split)))
                pending.append(cyc + 25)
            valid, last = ctx.get(dut.result.valid), ctx.get(dut.result.payload.last)
            await ctx.tick()
            if valid and last:
                break
        else:
            raise AssertionError(f"seed {seed}: the frame never finished")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    f = layout.layers[0].fields
    split = 0
    for g in range(1, f["groups"]) if not f["fold"] else []:
        split |= 1 << (g * cfg.groups // f["groups"] - 1)
    assert split_seen == {split}, f"seed {seed}: split {split_seen} vs {split}"
    assert ksum_seen == {int(f["mix"] == 2)}, f"seed {seed}: ksum {ksum_seen}"
    # A single layer's output is the result, never padded.
    assert gap_seen == {0}, f"seed {seed}: out_gap {gap_seen}"
    assert steps == want_steps, f"seed {seed}"
    # The top row may lie past the last filter; its channel is then only defined modulo the
    # field's width (rows below it count down from it with the same wrap-around). Its address is
    # exact, even past the activation memory: the core's write guard checks each row's.
    cb = 1 << max(1, (cfg.param_depth - 1).bit_length())
    assert tags == [(c % cb, *rest) for c, *rest in want_tags], f"seed {seed}"


@pytest.mark.parametrize("kw,rows,cols", [
    (dict(c_in=3, c_out=16, h=8, w=8, stride=2), 8, 8),          # folded (w_out = C/2), even h
    (dict(c_in=2, c_out=9, h=5, w=4, stride=1), 4, 8),           # folded, odd h_out
    (dict(c_in=2, c_out=5, h=5, w=11, stride=1), 4, 4),          # one group, 3 column tiles, odd
])
def test_step_stream_pool_shapes(kw, rows, cols):
    q = random_layer_model(seed=5, pool=True, **kw)
    run_step_stream(q, rows, cols, 5)


@pytest.mark.parametrize("seed", range(40, 48))
def test_step_stream_four_groups(seed):
    """Four row groups (classes of R/4 filters or fewer, and larger ones in several blocks),
    some layers pooled: every group reads its own port, rows oy .. oy+3 per tile."""
    rng = np.random.default_rng(seed)
    variant = str(rng.choice(["PSD2_P8", "PS4_P4", "PSD1_P16", "pSC9", "PS2_P6"]))
    s = int(rng.integers(1, 3))
    pool = bool(seed % 2)
    q = random_layer_model(seed=seed, c_in=int(rng.integers(1, 4)), c_out=int(rng.integers(1, 20)),
                           h=int(rng.integers(2 * s, 12)), w=int(rng.integers(2 * s, 10)),
                           stride=s, variant=variant, pool=pool)
    rows, cols = [(8, 4), (4, 4), (8, 2), (16, 4)][seed % 4]
    run_step_stream(q, rows, cols, seed, groups=4)


def _layer_where(seed, groups, field, shapes, draw, batch=1):
    """A seeded random layer (``draw(rng, rows, cols)``) whose fastest mapping (for ``batch``
    frames) sets descriptor ``field`` (or, a callable, makes ``field(plan)`` true), on one of the
    ``shapes`` (rows, cols) picked by the seed."""
    rng = np.random.default_rng(seed)
    rows, cols = shapes[seed % len(shapes)]
    want = field if callable(field) else (lambda plan: plan.fields[field])
    for _ in range(400):
        q = random_layer_model(seed=seed, **draw(rng, rows, cols))
        cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=groups, batch=batch)
        if want(build_layout(q, cfg, batch=batch).layers[0]):
            return q, rows, cols
    raise AssertionError(f"seed {seed}: no layer with {field} found")


def _flat_layer(seed, groups):
    """A seeded random layer whose fastest mapping is flat (tiles wrap across output rows)."""
    def draw(rng, rows, cols):
        s = int(rng.integers(1, 3))
        variant = str(rng.choice(["pSC9", "PS4_P4", "PSD2_P8", "PS2_P6"]))
        return dict(c_in=int(rng.integers(1, 4)), c_out=int(rng.integers(1, 3 * rows)),
                    h=int(rng.integers(1, 11)) * s, w=int(rng.integers(cols // 2, 2 * cols + 3)) * s,
                    stride=s, variant=variant)
    return _layer_where(seed, groups, "flat", [(4, 4), (8, 8), (4, 8), (2, 4)], draw)


@pytest.mark.parametrize("seed", range(60, 72))
def test_step_stream_flat(seed):
    """Flat tiles: C consecutive pixels of the flattened map per region, the first output row's
    through port 2g, the next row's through port 2g + 1, on two- and four-port engines (two
    flat regions only with four)."""
    groups = 2 if seed % 2 else 4
    q, rows, cols = _flat_layer(seed, groups)
    run_step_stream(q, rows, cols, seed, groups=groups)


def test_step_stream_flat_one_step_tiles():
    """Flat tiles of one step each (one input channel, one tap per class): the first tile ends in
    the first cycle of the walk, so its wrap decision must come from the layer's own sizes."""
    q = random_layer_model(seed=3, c_in=1, c_out=36, h=4, w=3, stride=1, variant="PS1_P9")
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, groups=2)
    plan = build_layout(q, cfg).layers[0]
    assert plan.fields["flat"] == 1 and set(plan.steps) == {1}
    run_step_stream(q, 4, 4, 3, groups=2)


def _mixed_layer(seed, groups):
    """A seeded random layer whose fastest mapping mixes classes across its row groups."""
    def draw(rng, rows, cols):
        s = int(rng.integers(1, 3))
        variant = str(rng.choice(["PS4_P4", "PSD2_P8", "PS3_P4", "PS2_P6", "PSD1_P16"]))
        P = int(variant.split("_P")[1])
        return dict(c_in=P * int(rng.integers(1, 3)), c_out=P * int(rng.integers(1, 3)),
                    h=int(rng.integers(1, 9)) * s, w=int(rng.integers(1, 2 * cols + 3)) * s,
                    stride=s, variant=variant)
    return _layer_where(seed, groups, "mix", [(8, 8), (4, 4), (8, 4), (16, 8)], draw)


@pytest.mark.parametrize("seed", range(80, 92))
def test_step_stream_mixed(seed):
    """Mixed classes: group g takes class r + g of the same pixels, reading its port g channel
    planes lower (wrapping at the first g channels), one output row per tile or flat tiles of
    the whole map; the tags name group G-1's top filter."""
    groups = 2 if seed % 3 == 0 else 4
    q, rows, cols = _mixed_layer(seed, groups)
    run_step_stream(q, rows, cols, seed, groups=groups)


#: Mixed layers with a known mapping: flat tiles of the whole map with two groups on four ports
#: (two a group, s 2), with a port a group (s 1: four groups on four ports, two on two; maps
#: 3, 9 and 10 wide, tiles crossing row ends), and one output row a tile with two groups.
MIXED_LAYERS = [
    (dict(c_in=8, c_out=16, h=10, w=10, stride=2, variant="PS3_P4", relu=False), 4, 4, 4, 2, 1),
    (dict(c_in=4, c_out=8, h=6, w=3, stride=1, variant="PS4_P4"), 4, 4, 4, 4, 1),
    (dict(c_in=4, c_out=8, h=6, w=3, stride=1, variant="PS4_P4"), 4, 4, 2, 2, 1),
    (dict(c_in=16, c_out=32, h=7, w=9, stride=1, variant="PSD1_P16"), 8, 8, 4, 4, 1),
    (dict(c_in=16, c_out=32, h=10, w=10, stride=1, variant="PSD2_P16"), 8, 8, 4, 4, 1),
    (dict(c_in=8, c_out=16, h=7, w=7, stride=1, variant="PSD2_P8"), 8, 8, 2, 2, 0),
]


@pytest.mark.parametrize("kw,rows,cols,GM,G,flat", MIXED_LAYERS)
def test_step_stream_mixed_shapes(kw, rows, cols, GM, G, flat):
    q = random_layer_model(seed=12, **kw)
    f = build_layout(q, ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)).layers[0].fields
    assert (f["mix"], f["groups"], f["flat"]) == (1, G, flat)
    run_step_stream(q, rows, cols, 12, groups=GM)


#: FCs (1x1 convs on a 1 x 1 map) whose K inputs the mapping splits over G groups: the walk
#: reads group g's chunk (row g of a map of G rows of K / G values) through port g * GM / G.
SPLIT_LAYERS = [
    (64, 10, 8, 8, 4, 4),      # 5 blocks of 2 filters x 16 steps
    (48, 5, 4, 4, 2, 2),       # 3 blocks of 2 x 24
    (96, 12, 8, 4, 4, 2),      # two groups on four ports (ports 0 and 2): 3 blocks of 4 x 48
    (40, 3, 4, 2, 4, 4),       # groups of one row: 3 blocks x 10 steps
]


@pytest.mark.parametrize("K,F,rows,cols,GM,G", SPLIT_LAYERS)
def test_step_stream_split_inputs(K, F, rows, cols, GM, G):
    q = random_layer_model(seed=14, c_in=K, c_out=F, h=1, w=1, k=1, variant="pSC9")
    f = build_layout(q, ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)).layers[0].fields
    assert (f["mix"], f["groups"], f["c_in"], f["h_in"], f["w_in"], f["hw_in"], f["h_out"]) == \
        (2, G, K // G, G, K // G, 1, 1)
    run_step_stream(q, rows, cols, 14, groups=GM)


def _batch_layer(seed, groups, batch, tall):
    """A seeded random layer that runs a batch tall (flat tiles over all the frames' rows) or,
    with ``tall=False``, frame by frame."""
    def draw(rng, rows, cols):
        s = int(rng.integers(1, 3))
        variant = str(rng.choice(["PS4_P4", "PSD2_P8", "PS2_P6", "PSD1_P16", "pSC9"]))
        P = int(variant.split("_P")[1]) if "_P" in variant else 1
        return dict(c_in=P * int(rng.integers(1, 3)), c_out=int(rng.integers(1, 3 * rows)),
                    h=int(rng.integers(2, 8)) * s, w=int(rng.integers(cols // 2, 2 * cols + 3)) * s,
                    stride=s, variant=variant, pool=bool(not tall and rng.random() < 0.4))
    return _layer_where(seed, groups, lambda plan: plan.tall == tall and (tall or plan.passes == batch),
                        [(8, 8), (4, 4), (8, 4), (4, 8)], draw, batch=batch)


@pytest.mark.parametrize("seed", range(100, 112))
def test_step_stream_batch(seed):
    """A batch of 2 or 3 frames. Tall: flat tiles run over all the frames' rows, a tile from a
    frame's last row takes its second row from the next frame's first, and rows are padded at
    every frame's edges. Frame by frame: the classes again from each frame's bases."""
    groups = 2 if seed % 3 == 0 else 4
    batch = 2 + seed % 2
    tall = seed % 4 < 2
    q, rows, cols = _batch_layer(seed, groups, batch, tall)
    run_step_stream(q, rows, cols, seed, groups=groups, batch=batch)


#: Tall batches with mixed classes (FashionNet's 7 x 7 conv3 shape: two classes a tile on flat
#: tiles over both frames) and smaller maps, each with frame crossings mid-tile.
BATCH_LAYERS = [
    (dict(c_in=16, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8"), 8, 8, 4, 2),
    (dict(c_in=8, c_out=8, h=5, w=6, stride=1, variant="PS4_P4"), 4, 4, 4, 3),
    (dict(c_in=4, c_out=8, h=4, w=4, stride=1, variant="PS3_P4"), 4, 4, 4, 2),
]


@pytest.mark.parametrize("kw,rows,cols,GM,batch", BATCH_LAYERS)
def test_step_stream_batch_mixed(kw, rows, cols, GM, batch):
    q = random_layer_model(seed=13, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM, batch=batch)
    plan = build_layout(q, cfg, batch=batch).layers[0]
    assert plan.tall and plan.fields["mix"] and plan.fields["flat"], plan.mapping
    run_step_stream(q, rows, cols, 13, groups=GM, batch=batch)


def _moved(layout, **fields):
    """``layout`` with its layer's descriptor fields changed (as a hand-made image would), and
    the descriptor words that change: ``(layout, {(space, addr): word})``."""
    (plan,) = layout.layers
    moved = replace(layout, layers=(replace(plan, fields={**plan.fields, **fields}),))
    words = {(int(Space.DESCRIPTORS), DESC_HEADER_WORDS + LAYER_FIELDS.index(n)): v
             for n, v in fields.items()}
    return moved, words


def _run_until_fault(dut, layout, changes, limit=20000):
    """Load ``layout`` with ``changes``, start, and run until ``fault``: the cycles at which each
    step issued (with its port-0 ok bits), the cycle ``fault`` rose (None: never) and whether a
    result byte came out."""
    issued, out = [], {"fault": None, "result": False}

    async def tb(ctx):
        await _load_and_start(ctx, dut, layout, changes)
        for cyc in range(limit):
            ctx.set(dut.result.ready, 1)
            ctx.set(dut.tile_done, 1)            # the output side keeps up
            if ctx.get(dut.fault):
                out["fault"] = cyc
                return
            if ctx.get(dut.step_valid):
                issued.append((cyc, ctx.get(dut.rd_ok)))
            out["result"] |= bool(ctx.get(dut.result.valid))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return issued, out["fault"], out["result"]


#: Layers whose read ports differ, and the port of the first read past the memory's end when
#: the input ends a byte past it: one group (port 0); two row groups (port 1, its own row); a
#: fold (port 1, merged into port 0's columns); flat tiles in two regions on four ports (port 3,
#: merged into port 2's).
GUARD_LAYERS = [
    (dict(c_in=3, c_out=4, h=6, w=7, stride=1, variant="PS4_P4"), 4, 4, 1, 0),
    (dict(c_in=4, c_out=8, h=8, w=4, stride=1, variant="PSD2_P8"), 4, 4, 2, 1),
    (dict(c_in=1, c_out=4, h=4, w=4, stride=2, variant="PS4_P4"), 4, 4, 2, 1),
    (dict(c_in=2, c_out=6, h=8, w=4, stride=2, variant="PS4_P4"), 4, 4, 4, 3),
]


@pytest.mark.parametrize("what", ["input", "weights"])
@pytest.mark.parametrize("kw,rows,cols,GM,port", GUARD_LAYERS)
def test_guard_latency(kw, rows, cols, GM, port, what):
    q = random_layer_model(seed=21, **kw)
    cfg = ArrayConfig.for_model(q, rows=rows, cols=cols, groups=GM)
    layout = build_layout(q, cfg)
    f = layout.layers[0].fields
    A, W = cfg.act_depth, cfg.weight_depth
    if what == "input":
        layout_m, changes = _moved(layout, in_base=A - f["c_in"] * f["hw_in"] + 1)
    else:
        entries = layout.sections[Space.WEIGHTS].size // cfg.words_per_entry
        layout_m, changes = _moved(layout, weight_base=W - entries + 1)
    want, _ = expected_steps(layout_m)
    s = f["stride"]

    def outside(step):
        entry, n0s, oks = step[:3]
        cols_ok = [[j for j in range(cols) if ok >> j & 1] for ok in oks]
        reads = [(n0 + js[0] * s, n0 + js[-1] * s) for n0, js in zip(n0s, cols_ok) if js]
        return entry >= W or any(lo < 0 or hi >= A for lo, hi in reads)

    first = next(i for i, step in enumerate(want) if outside(step))
    if what == "input":   # the case reads past the end first on the port it is meant to test
        ports = [0] + _ports(cfg, f)
        n0s, oks = want[first][1:3]
        assert [p for p, n0, ok in zip(ports, n0s, oks)
                if ok and n0 + (ok.bit_length() - 1) * s >= A] == [port], layout.layers[0].mapping
    dut = Sequencer(config=cfg, act_addr_bits=max(1, (cfg.act_depth - 1).bit_length()))
    issued, fault_at, result = _run_until_fault(dut, layout_m, changes)
    assert fault_at is not None, f"{kw} {what}: no fault"
    assert len(issued) > first, f"{kw} {what}: fault at cycle {fault_at}, after {len(issued)} steps"
    assert [ok for _, ok in issued[:first + 1]] == [oks[0] for _, _, oks, *_ in want[:first + 1]]
    assert fault_at - issued[first][0] == GUARD_LATENCY, (kw, what, first, issued[first], fault_at)
    assert not result


def test_guard_window():
    """The window check alone: a layer all of whose taps fall on padding (a 1 x 1 map, every
    period-table row tap 0 only) reads no byte, but a channel pitch of ``act_depth`` takes the
    walk's channel term past ``2 ** act_addr_bits`` at its third channel. The guard stops it
    (its documented conservative case: the term's sums would no longer be exact), with no read
    ok and no result."""
    q = random_layer_model(seed=22, c_in=3, c_out=4, h=1, w=1, stride=1, variant="PS4_P4")
    cfg = ArrayConfig.for_model(q, rows=4, cols=4, groups=1)
    layout = build_layout(q, cfg)
    f = layout.layers[0].fields
    _, changes = _moved(layout, hw_in=cfg.act_depth)
    changes.update({(int(Space.TABLES), f["table_base"] + i): 1 for i in range(f["period"])})
    dut = Sequencer(config=cfg, act_addr_bits=max(1, (cfg.act_depth - 1).bit_length()))
    issued, fault_at, result = _run_until_fault(dut, layout, changes)
    assert fault_at is not None and not result
    assert issued and all(ok == 0 for _, ok in issued)
    # The same layer with its pitch inside the window runs to its result without a fault.
    ok_changes = {k: v for k, v in changes.items() if k[0] == int(Space.TABLES)}
    dut = Sequencer(config=cfg, act_addr_bits=max(1, (cfg.act_depth - 1).bit_length()))
    _, fault_at, result = _run_until_fault(dut, layout, ok_changes)
    assert fault_at is None and result
