"""RTL tests of the engine core on Icarus and Verilator: random layers (some with 2x2 max-pool),
pooled layers of every row pairing, and whole small networks,
bit-exact against hw.reference AND models.golden (PyTorch), with random valid/ready back-pressure.

Each test is one cocotb run (``sim_tests/core_tb.py``) of many cases on one cached build; a failure
names the case and the seed (and re-runs with waveforms, see gateware.simulate).
"""

import numpy as np
import pytest

from bench.layers import random_layer_model, random_chain_model
from bench.rtl import Case, run_rtl
from hw.reference import run_model

from conftest import SIM_CONFIG, SMALL_CONFIG

#: Variants with P in {1, 2, 4, 6, 8, 9, 16}: dense, PS and PSD.
VARIANTS = ("pSC9", "PSD4_P2", "PS4_P4", "PS2_P6", "PSD2_P8", "PS1_P9", "PSD1_P16", "PSD4_P8")


def golden(qmodel, frame):
    """Last-layer output of models.golden (PyTorch) and hw.reference; they must agree."""
    import torch
    from models.golden import run_model_int
    g = run_model_int(qmodel, torch.as_tensor(frame.astype(np.int64)))[-1].numpy().reshape(-1)
    r = run_model(qmodel, frame)[-1].reshape(-1)
    assert np.array_equal(g, r), f"{qmodel.name}: models.golden and hw.reference disagree"
    return r


def _conv_out(n, k, stride):
    return (n + 2 * (k // 2) - k) // stride + 1


def random_case(seed, *, max_c=12, max_hw=10, pool_p=0.3, periodic_p=0.0):
    """One random layer: shape, k, stride, variant, ReLU, 2x2 max-pool (with probability
    ``pool_p`` where the conv output is at least 2 x 2) all drawn from ``seed``; with probability
    ``periodic_p`` a periodic conv's channels are rounded up to whole periods (so that its row
    groups may take mixed classes)."""
    rng = np.random.default_rng(seed)
    k = int(rng.choice([1, 3, 3, 3]))
    kw = dict(c_in=int(rng.integers(1, max_c + 1)), c_out=int(rng.integers(1, 2 * max_c + 1)),
              h=int(rng.integers(1, max_hw + 1)), w=int(rng.integers(1, max_hw + 3)), k=k,
              stride=int(rng.integers(1, 3)), relu=bool(rng.integers(2)),
              variant=str(rng.choice(VARIANTS)) if k == 3 else "pSC9")
    if rng.random() < 0.15:
        kw.update(kind="fc", c_in=int(rng.integers(1, 300)), h=1, w=1, k=1, stride=1)
    pool = rng.random() < pool_p
    if kw.get("kind") != "fc" and min(_conv_out(kw[d], kw["k"], kw["stride"]) for d in "hw") >= 2:
        kw["pool"] = bool(pool)
    if periodic_p and kw.get("kind") != "fc" and "_P" in kw["variant"] and rng.random() < periodic_p:
        P = int(kw["variant"].split("_P")[1])
        kw.update(c_in=-(-kw["c_in"] // P) * P, c_out=-(-kw["c_out"] // P) * P)
    q = random_layer_model(seed=seed, **kw)
    frame = rng.integers(-128, 128, q.input_shape).astype(np.int8)
    return Case(f"layer seed={seed} {kw}", q, frame, golden(q, frame))


def sweep_seed(default):
    """The sweeps' first seed: ``default``, or with the ``SWEEP_SEED`` environment variable set
    to ``n`` (``make sweep SWEEP_SEED=n``), ``default + 100000 * n``: sweep ``n`` draws seeds no
    other sweep draws (a failure names its seed)."""
    import os
    text = os.environ.get("SWEEP_SEED", "0")
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"SWEEP_SEED must be a non-negative integer, not {text!r}") from None
    if n < 0:
        raise ValueError(f"SWEEP_SEED must be a non-negative integer, not {n}")
    return default + 100_000 * n


def _check(results):
    bad = [r["case"] for r in results if not r["bit_exact"]]
    assert not bad, f"not bit-exact: {bad}"


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_random_layers(sim):
    seeds = range(100, 112) if sim == "icarus" else range(200, 240)
    cases = [random_case(s) for s in seeds]
    _check(run_rtl(SIM_CONFIG, cases, sim=sim, seed=7, valid_p=0.8, ready_p=0.6))


#: Pooled layers on the 8 x 8 array (``groups = 2``): every way a tile's rows pair up. One group
#: (classes of more than 4 filters: rows oy and oy + 1 in consecutive tiles, several column
#: tiles), two groups (both rows in one tile), folded (w_out = C/2); stride 1 and 2, odd and even
#: sizes (floored), with and without ReLU.
POOL_LAYERS = (
    dict(c_in=2, c_out=6, h=6, w=19, stride=1, relu=True),                    # one group, 3 col tiles
    dict(c_in=3, c_out=5, h=7, w=9, stride=1, relu=False),                    # one group, odd
    dict(c_in=2, c_out=7, h=11, w=21, stride=2, relu=False),                  # one group, s2, odd
    dict(c_in=3, c_out=16, h=7, w=11, stride=1, variant="PSD2_P8", relu=True),  # two groups, odd
    dict(c_in=2, c_out=12, h=10, w=14, stride=2, variant="PS4_P4", relu=False),  # two groups, s2
    dict(c_in=3, c_out=16, h=8, w=8, stride=2, relu=True),                    # folded, even
    dict(c_in=2, c_out=9, h=5, w=4, stride=1, relu=False),                    # folded, odd h
    dict(c_in=2, c_out=4, h=9, w=9, stride=1, k=1, relu=True),                # 1x1, two groups, odd
)


def _pool_cases(n_random):
    cases = []
    for i, kw in enumerate(POOL_LAYERS):
        q = random_layer_model(seed=500 + i, pool=True, **kw)
        frame = np.random.default_rng(500 + i).integers(-128, 128, q.input_shape).astype(np.int8)
        cases.append(Case(f"pool layer seed={500 + i} {kw}", q, frame, golden(q, frame)))
    chain = random_chain_model([dict(c_out=6, pool=True), dict(c_out=8, stride=2, variant="PSD2_P8", pool=True),
                                dict(c_out=5, k=1), dict(c_out=4, kind="fc")], c_in=2, h=13, w=15, seed=12)
    frame = np.random.default_rng(12).integers(-128, 128, chain.input_shape).astype(np.int8)
    cases.append(Case("chain conv+pool/conv s2+pool/1x1/fc seed=12", chain, frame, golden(chain, frame)))
    seed = 600
    while n_random:
        c = random_case(seed, pool_p=1.0, max_c=8, max_hw=12)
        if c.qmodel.layers[0].pool:
            cases.append(c)
            n_random -= 1
        seed += 1
    return cases


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_pool_layers(sim):
    """2x2 max-pool layers, bit-exact vs models.golden and hw.reference, cycles and MACs vs
    hw.layout, random back-pressure."""
    cases = _pool_cases(4 if sim == "icarus" else 24)
    _check(run_rtl(SIM_CONFIG, cases, sim=sim, seed=13, valid_p=0.8, ready_p=0.6))


@pytest.mark.icarus
def test_random_layers_small_array():
    cases = [random_case(s, max_c=6, max_hw=7) for s in range(300, 308)]
    _check(run_rtl(SMALL_CONFIG, cases, sim="icarus", seed=8, valid_p=0.5, ready_p=0.5))


def _networks():
    from host.synthetic import random_qmodel
    nets = []
    for name, seed in (("DigitsNet_PSD2_P8", 1), ("DigitsNet", 2), ("FashionNet_PSD2_P8", 3),
                       ("FashionNet_PS4_P4", 4), ("FashionPoolNet_PSD2_P8", 5)):
        q = random_qmodel(name, seed=seed)
        frame = np.random.default_rng(seed).integers(-128, 128, q.input_shape).astype(np.int8)
        nets.append(Case(f"{name} random seed={seed}", q, frame, golden(q, frame)))
    chain = random_chain_model([dict(c_out=6), dict(c_out=12, stride=2, variant="PS2_P6"),
                                dict(c_out=9, k=1, stride=2), dict(c_out=16, variant="PSD1_P8"),
                                dict(c_out=7, kind="fc"), dict(c_out=5, kind="fc")],
                               c_in=3, h=9, w=11, seed=11)
    frame = np.random.default_rng(11).integers(-128, 128, chain.input_shape).astype(np.int8)
    nets.append(Case("chain conv/1x1/fc seed=11", chain, frame, golden(chain, frame)))
    return nets


@pytest.mark.verilator
def test_networks_verilator():
    _check(run_rtl(SIM_CONFIG, _networks(), sim="verilator", seed=9, valid_p=0.7, ready_p=0.7))


@pytest.mark.verilator
def test_auto_shape_verilator():
    """``--array auto``: DigitsNet_PS4_P4 (classes of 4 filters, 8 x 8 and 4 x 4 maps) and a
    7 x 7 layer with classes of 16 both run fastest on a 16 x 4 array by the cycle model; that
    engine, generated for them, runs them bit-exact with the cycles the model predicts.
    (DigitsNet_PSD2_P8 ran fastest there too until its 4 x 4 stride-1 conv3 ran flat on four
    groups with a port each, and DigitsNet_PSD1_P8 until its FC split its inputs over four
    groups: now 994 cycles on 8 x 8 against 1,091 on 16 x 4; DigitsNet_PS4_P4: 1,081 on 16 x 4
    against 1,115 on 8 x 8.)"""
    from hw.array import ArrayConfig, config_for_model
    from host.synthetic import random_qmodel
    dn = random_qmodel("DigitsNet_PS4_P4", seed=5)
    conv3 = random_layer_model(seed=2, c_in=16, c_out=64, h=14, w=14, stride=2, variant="PS4_P4")
    assert ArrayConfig.shape_for_model(dn) == ArrayConfig.shape_for_model(conv3) == (16, 4)
    config = config_for_model(dn, "auto").replace(
        act_depth=8192, weight_depth=4096, table_depth=64, param_depth=128, p_max=8)
    cases = []
    for name, q in (("DigitsNet_PS4_P4", dn), ("conv3 PS4_P4 16 -> 64", conv3)):
        config.check_model(q)
        frame = np.random.default_rng(5).integers(-128, 128, q.input_shape).astype(np.int8)
        cases.append(Case(f"{name} on 16x4", q, frame, golden(q, frame)))
    _check(run_rtl(config, cases, sim="verilator", seed=12, valid_p=0.8, ready_p=0.7))


@pytest.mark.icarus
def test_networks_icarus():
    nets = [c for c in _networks() if not c.name.startswith("Fashion")]
    _check(run_rtl(SIM_CONFIG, nets, sim="icarus", seed=10, valid_p=0.7, ready_p=0.7))


#: The same engine with four row groups (four copies of the activation banks): layers whose
#: rotation classes hold R/4 = 2 filters fill the 8 rows.
SIM_CONFIG4 = SIM_CONFIG.replace(groups=4)


def small_class_case(seed):
    """A random layer whose classes hold few filters (P = 4, 8, 16; C_o up to 2P), stride 1 or
    2, 2x2 max-pool in about 40 % of the poolable ones."""
    rng = np.random.default_rng(seed)
    variant = str(rng.choice(["PSD2_P8", "PSD1_P16", "PS4_P4", "PSD4_P8", "PSD1_P8"]))
    P = int(variant.split("_P")[1])
    s = int(rng.integers(1, 3))
    kw = dict(c_in=int(rng.integers(1, 9)), c_out=int(rng.integers(1, 2 * P + 1)),
              h=int(rng.integers(1, 15)), w=int(rng.integers(1, 14)), stride=s,
              relu=bool(rng.integers(2)), variant=variant)
    if min(_conv_out(kw[d], 3, s) for d in "hw") >= 2:
        kw["pool"] = bool(rng.random() < 0.4)
    q = random_layer_model(seed=seed, **kw)
    frame = rng.integers(-128, 128, q.input_shape).astype(np.int8)
    return Case(f"small-class layer seed={seed} {kw}", q, frame, golden(q, frame))


def _four_group_cases(n_small, n_mixed, seed0):
    from host.synthetic import random_qmodel
    cases = [small_class_case(seed0 + i) for i in range(n_small)]
    cases += [random_case(seed0 + 500 + i) for i in range(n_mixed)]
    q = random_qmodel("DigitsNet_PSD2_P8", seed=5)
    frame = np.random.default_rng(5).integers(-128, 128, q.input_shape).astype(np.int8)
    cases.append(Case("DigitsNet_PSD2_P8 random seed=5", q, frame, golden(q, frame)))
    chain = random_chain_model([dict(c_out=16, variant="PSD2_P8", pool=True),
                                dict(c_out=16, stride=2, variant="PSD1_P16"),
                                dict(c_out=8, k=1), dict(c_out=5, kind="fc")], c_in=2, h=17, w=15, seed=14)
    frame = np.random.default_rng(14).integers(-128, 128, chain.input_shape).astype(np.int8)
    cases.append(Case("chain 4 groups conv+pool/conv s2/1x1/fc seed=14", chain, frame, golden(chain, frame)))
    return cases


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_four_groups(sim):
    """Four row groups: small classes, stride 1/2, pooled tiles of 4 rows (two pairs), layers
    that pick 2 or 1 groups or the fold on the same engine, DigitsNet_PSD2_P8, a chain; random
    back-pressure; bit-exact vs models.golden and hw.reference, cycles and MACs vs hw.layout."""
    from hw.layout import build_layout
    cases = _four_group_cases(8, 4, 700) if sim == "icarus" else _four_group_cases(40, 20, 800)
    used = {build_layout(c.qmodel, SIM_CONFIG4).layers[0].fields["groups"] for c in cases}
    assert used == {1, 2, 4}, used
    _check(run_rtl(SIM_CONFIG4, cases, sim=sim, seed=15, valid_p=0.8, ready_p=0.6))


def _cases_where(config, field, fixed, seed_fixed, n_random, seed0, draw, *, optional=()):
    """Cases of one layer each whose mapping on ``config`` sets descriptor ``field``: the
    ``fixed`` shapes (seeds ``seed_fixed + i``; each must map so, except those in ``optional``),
    then ``n_random`` drawn by ``draw(rng)`` from seeds ``seed0, seed0 + 1, ...``, kept where
    the layout sets ``field``."""
    from hw.layout import build_layout

    def case(kw, seed, rng):
        q = random_layer_model(seed=seed, **kw)
        if not build_layout(q, config).layers[0].fields[field]:
            return None
        frame = rng.integers(-128, 128, q.input_shape).astype(np.int8)
        return Case(f"{field} layer seed={seed} {kw}", q, frame, golden(q, frame))

    cases = []
    for i, kw in enumerate(fixed):
        c = case(kw, seed_fixed + i, np.random.default_rng(seed_fixed + i))
        assert c is not None or i in optional, (field, kw)
        cases += [c] if c else []
    seed = seed0
    while n_random:
        rng = np.random.default_rng(seed)
        c = case(draw(rng), seed, rng)
        if c:
            cases.append(c)
            n_random -= 1
        seed += 1
    return cases


def _run_engine_cases(cases_fn, sim, groups, *, icarus, verilator, seed):
    """``cases_fn(config, n_random, seed0, big=)`` on the two- or four-group engine, bit-exact
    with random back-pressure: Icarus gets the small fixed cases and ``icarus = (n_random,
    seed0)``, Verilator all of them and ``verilator``."""
    config = SIM_CONFIG if groups == 2 else SIM_CONFIG4
    n, seed0 = icarus if sim == "icarus" else verilator
    cases = cases_fn(config, n, seed0, big=sim != "icarus")
    _check(run_rtl(config, cases, sim=sim, seed=seed, valid_p=0.8, ready_p=0.6))


def flat_cases(config, n_random, seed0, *, big=True):
    """Layers whose fastest mapping on ``config`` is flat (tiles wrapping across output rows):
    FashionNet's conv2 shape (classes of 8 filters; of 4, which need two flat regions, so four
    ports; only with ``big``), maps C - 1 and C + 2 wide, then ``n_random`` random ones."""
    fixed = [dict(c_in=4, c_out=32, h=28, w=28, stride=2, variant="PS4_P4"),
             dict(c_in=3, c_out=32, h=28, w=28, stride=2, variant="PSD4_P8", relu=False),
             dict(c_in=5, c_out=64, h=8, w=7, stride=1, variant="PSD1_P8"),
             dict(c_in=2, c_out=8, h=9, w=10, stride=1)][0 if big else 2:]

    def draw(rng):
        s = int(rng.integers(1, 3))
        return dict(c_in=int(rng.integers(1, 7)), c_out=int(rng.integers(1, 33)),
                    h=int(rng.integers(2, 16)) * s, w=int(rng.integers(4, 20)) * s, stride=s,
                    relu=bool(rng.integers(2)), variant=str(rng.choice(VARIANTS)))
    # Two regions need four ports: the PSD4_P8 shape runs unflat on a two-port engine.
    optional = (1,) if big and config.groups == 2 else ()
    return _cases_where(config, "flat", fixed, 900, n_random, seed0, draw, optional=optional)


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
@pytest.mark.parametrize("groups", [2, 4])
def test_flat_layers(sim, groups):
    """Flat tiles (one region with two read ports, two regions with four), stride 1 and 2,
    random back-pressure; bit-exact vs models.golden and hw.reference, cycles and MACs vs
    hw.layout."""
    _run_engine_cases(flat_cases, sim, groups, icarus=(2, 1100 + groups),
                      verilator=(16, 1200 + 100 * groups), seed=16)


def mixed_cases(config, n_random, seed0, *, big=True):
    """Layers whose fastest mapping on ``config`` mixes classes across its row groups: FashionNet's
    conv3 shape (classes of 4 filters on 7 x 7 maps), with ``big`` its conv2 shape (flat tiles of
    the whole map where four ports allow) and its conv2 PSD2_P16 shape (at stride 1, and at
    stride 2 on rows padded 28 -> 30: flat with a port a group, classes of 2), a 5 x 9 map (flat
    with a port a group), then ``n_random`` random ones with periods dividing the channels
    (those at stride 2 on even widths often on padded rows)."""
    fixed = [dict(c_in=8, c_out=32, h=28, w=28, stride=2, variant="PSD2_P8"),
             dict(c_in=16, c_out=32, h=14, w=14, stride=1, variant="PSD2_P16"),
             dict(c_in=16, c_out=32, h=28, w=28, stride=2, variant="PSD2_P16"),
             dict(c_in=16, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8", relu=False),
             dict(c_in=8, c_out=16, h=5, w=9, stride=1, variant="PSD2_P8")][0 if big else 3:]

    def draw(rng):
        s = int(rng.integers(1, 3))
        variant = str(rng.choice(["PS4_P4", "PS3_P4", "PSD2_P8", "PSD1_P8", "PSD2_P16", "PS2_P6"]))
        P = int(variant.split("_P")[1])
        return dict(c_in=P * int(rng.integers(1, 3)), c_out=P * int(rng.integers(1, 4)),
                    h=int(rng.integers(1, 12)) * s, w=int(rng.integers(1, 20)) * s, stride=s,
                    relu=bool(rng.integers(2)), variant=variant)
    return _cases_where(config, "mix", fixed, 950, n_random, seed0, draw)


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
@pytest.mark.parametrize("groups", [2, 4])
def test_mixed_layers(sim, groups):
    """Mixed classes (group g: class r + g of the same pixels, g channel planes lower, wrapping
    at the first g channels), one output row a tile or flat, random back-pressure; bit-exact vs
    models.golden and hw.reference, cycles and MACs vs hw.layout."""
    _run_engine_cases(mixed_cases, sim, groups, icarus=(1, 1300 + groups),
                      verilator=(12, 1400 + 100 * groups), seed=17)


def split_cases(config, n_random, seed0, *, big=True):
    """FCs whose fastest mapping on ``config`` splits their inputs over the row groups (``mix`` =
    2: the groups' partial sums added on column 0): FashionNet's FC (1024 -> 10; with ``big``),
    DigitsNet's (256 -> 10), one with groups of a filter's chunk short of the rows (48 -> 3),
    then ``n_random`` random ones."""
    fixed = [dict(c_in=1024, c_out=10), dict(c_in=256, c_out=10, relu=False),
             dict(c_in=48, c_out=3)][0 if big else 1:]

    def draw(rng):
        return dict(c_in=4 * int(rng.integers(2, 150)), c_out=int(rng.integers(1, 30)),
                    relu=bool(rng.integers(2)))
    fc = lambda kw: dict(kw, kind="fc", h=1, w=1, k=1, stride=1, variant="pSC9")
    return _cases_where(config, "mix", [fc(kw) for kw in fixed], 980, n_random, seed0,
                        lambda rng: fc(draw(rng)))


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
@pytest.mark.parametrize("groups", [2, 4])
def test_split_inputs(sim, groups):
    """FCs with their inputs split over the row groups (group g: chunk g, read as row g of a map
    of G rows), random back-pressure; bit-exact vs models.golden and hw.reference, cycles and
    MACs vs hw.layout."""
    _run_engine_cases(split_cases, sim, groups, icarus=(1, 1500 + groups),
                      verilator=(8, 1600 + 100 * groups), seed=18)


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("batch", range(10))
def test_sweep(batch):
    """The randomized sweep: 10 x 100 = 1000 random layers (``make sweep``); odd batches on the
    four-group engine (four groups, two flat regions, mixed classes on flat tiles); a third of
    the periodic convs with whole periods of channels, so that many map mixed; batches 2, 5 and
    8 run each layer on two frames at once (tall or frame by frame). ``SWEEP_SEED`` moves the
    seeds."""
    base = sweep_seed(10_000) + 100 * batch
    seeds = range(base, base + 100)
    cases = [random_case(s, periodic_p=0.35) for s in seeds]
    config = SIM_CONFIG4 if batch % 2 else SIM_CONFIG
    if batch % 3 == 2:
        rng = np.random.default_rng(batch)
        cases = [batch_case(c.name, c.qmodel, config, 2, rng) for c in cases]
    _check(run_rtl(config, cases, sim="verilator", seed=batch, valid_p=0.8, ready_p=0.7))


def random_chain_case(seed, config, batch=1):
    """A random network of 2 to 6 layers that fits ``config`` with ``batch`` frames, all drawn
    from ``seed``: convs (3x3 of any variant or 1x1, stride 1 or 2, 2x2 max-pool where the map
    allows; a third of the periodic ones round their filters up to whole periods, so that some
    layers take mixed classes) and FCs (which flatten the map before them; after one, only FCs and 1x1 convs). Each layer
    boundary is a descriptor prefetch, a ping-pong swap and, in a batch, a change between tall
    and frame-after-frame maps wherever an FC reads or writes one. ``None`` when the chain does
    not fit ``config`` (its memories or layer count)."""
    from hw.layout import build_layout, depth_first_choices
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 9)), int(rng.integers(2, 17)), int(rng.integers(2, 17))
    specs, shape, flat = [], (c, h, w), False
    for i in range(int(rng.integers(2, 7))):
        c_out = int(rng.integers(1, 25))
        if i > 0 and rng.random() < (0.6 if flat else 0.2):
            specs.append(dict(c_out=c_out, kind="fc"))
            shape, flat = (c_out, 1, 1), True
            continue
        k = 1 if flat else int(rng.choice([1, 3, 3, 3]))
        stride = int(rng.integers(1, 3)) if min(shape[1:]) >= 2 else 1
        variant = str(rng.choice(VARIANTS)) if k == 3 else "pSC9"
        if "_P" in variant and rng.random() < 0.35:
            P = int(variant.split("_P")[1])
            c_out = -(-c_out // P) * P
        ho, wo = (_conv_out(n, k, stride) for n in shape[1:])
        pool = min(ho, wo) >= 2 and rng.random() < 0.25
        specs.append(dict(c_out=c_out, k=k, stride=stride, variant=variant, pool=pool))
        shape = (c_out, ho // 2, wo // 2) if pool else (c_out, ho, wo)
    q = random_chain_model(specs, c_in=c, h=h, w=w, seed=seed)
    if not config.fits(q, batch=batch):
        return None
    # (Only the fit check may refuse: any other refusal of a chain that fits is a bug to see.)
    build_layout(q, config, batch=batch)
    name = f"chain seed={seed} c_in={c} {h}x{w} {specs}"
    if batch > 1:
        # Half the batches run a random depth-first prefix that fits (drawn apart, so that the
        # chains and frames stay those of the seed), the rest as build_layout picks.
        pick = np.random.default_rng([seed, 1])
        fits = [k for k in depth_first_choices(len(specs), batch)
                if config.fits(q, batch=batch, depth_first=k)]
        depth_first = int(pick.choice(fits)) if pick.random() < 0.5 else None
        return batch_case(name, q, config, batch, rng, depth_first=depth_first)
    frame = rng.integers(-128, 128, q.input_shape).astype(np.int8)
    return Case(name, q, frame, golden(q, frame))


def chain_cases(config, n, seed0, batch=1):
    """``n`` random chains (:func:`random_chain_case`) from seed ``seed0`` on, skipping those
    that do not fit ``config`` (asserted to be few)."""
    cases, seed = [], seed0
    while len(cases) < n:
        c = random_chain_case(seed, config, batch)
        if c is not None:
            cases.append(c)
        seed += 1
    assert seed - seed0 <= 2 * n, f"only {n} of {seed - seed0} random chains fit {config!r}"
    return cases


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_random_chains(sim):
    """A few random networks each ``make test`` (the network sweep's generator,
    :func:`random_chain_case`): 3 (Icarus) / 24 (Verilator) chains on the four-group engine,
    a third of them as batches of two frames; bit-exact, exact cycles and MACs."""
    n = 3 if sim == "icarus" else 24
    cases = chain_cases(SIM_CONFIG4, n - n // 3, 3000) + chain_cases(SIM_CONFIG4, n // 3, 3500, batch=2)
    _check(run_rtl(SIM_CONFIG4, cases, sim=sim, seed=21, valid_p=0.8, ready_p=0.7))


#: The network sweep's runs: (engine, frames a run). The 8 x 8 engines with two and four row
#: groups, then the shapes ``--array auto`` generates for 64 MACs (16 x 4: groups of 8 rows on
#: 4 columns; 4 x 16 with four groups of one row), each with the same memories.
CHAIN_RUNS = ((SIM_CONFIG, 1), (SIM_CONFIG, 1), (SIM_CONFIG, 2),
              (SIM_CONFIG.replace(groups=4), 1), (SIM_CONFIG.replace(groups=4), 1),
              (SIM_CONFIG.replace(groups=4), 2),
              (SIM_CONFIG.replace(rows=16, cols=4), 1), (SIM_CONFIG.replace(rows=4, cols=16, groups=4), 3))


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("run", range(len(CHAIN_RUNS)))
def test_chain_sweep(run):
    """The network sweep (``make sweep``): 8 x 40 = 320 random chains of 2 to 6 layers
    (:func:`random_chain_case`) on the engines of :data:`CHAIN_RUNS`, one, two or three frames
    at once. Bit-exact against models.golden and hw.reference; every layer's cycles and MACs
    against hw.layout. ``SWEEP_SEED`` moves the seeds."""
    config, batch = CHAIN_RUNS[run]
    cases = chain_cases(config, 40, sweep_seed(30_000) + 1000 * run, batch=batch)
    _check(run_rtl(config, cases, sim="verilator", seed=run, valid_p=0.8, ready_p=0.7))


def random_config(seed):
    """A random engine (``rows`` 2-16, ``cols`` 2-16, 1, 2 or 4 row groups, memories of sizes
    that are not powers of two) and a batch size (1-3), all drawn from ``seed``."""
    from hw.array import ArrayConfig
    rng = np.random.default_rng(seed)
    rows, cols = (int(rng.choice([2, 4, 8, 16])) for _ in range(2))
    groups = int(rng.choice([g for g in (1, 2, 4) if g <= rows]))
    act = int(rng.integers(8000, 24000)) // (2 * cols) * (2 * cols)
    config = ArrayConfig(rows=rows, cols=cols, groups=groups, p_max=16, act_depth=act,
                         weight_depth=int(rng.integers(6000, 16000)),
                         table_depth=int(rng.integers(100, 256)),
                         param_depth=int(rng.integers(200, 512)), max_layers=8)
    return config, int(rng.choice([1, 1, 2, 3]))


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("run", range(4))
def test_config_sweep(run):
    """The engine sweep (``make sweep``): 4 random engines (:func:`random_config`: array shape,
    row groups, odd memory sizes, 1-3 frames a run), a Verilator build each, 25 random chains
    on each; bit-exact, exact cycles and MACs. ``SWEEP_SEED`` draws other engines."""
    seed = sweep_seed(70_000) + 1000 * run
    config, batch = random_config(seed)
    cases = chain_cases(config, 25, seed + 1, batch=batch)
    _check(run_rtl(config, cases, sim="verilator", seed=run, valid_p=0.8, ready_p=0.7))


def batch_case(name, qmodel, config, batch, rng, *, depth_first=None):
    """``batch`` random frames of ``qmodel`` as one case (its first ``depth_first`` layers frame
    by frame; None: as ``build_layout`` picks); the expected bytes are each frame's
    models.golden (= hw.reference) output, in the engine's order for that batch."""
    from hw.layout import build_layout
    frames = rng.integers(-128, 128, (batch, *qmodel.input_shape)).astype(np.int8)
    want = np.stack([golden(qmodel, f) for f in frames])
    layout = build_layout(qmodel, config, batch=batch, depth_first=depth_first)
    extra = f" depth_first={layout.depth_first}" if layout.depth_first else ""
    return Case(f"{name} batch={batch}{extra}", qmodel, frames, layout.encode_output(want),
                batch=batch, depth_first=depth_first)


def batch_cases(config, n_random, seed0, *, big=True):
    """With ``big``, FashionNet's conv3 shapes two frames tall (mixed classes on flat tiles
    crossing from one frame into the next; PSD2_P8 from a stride-2 conv, two ports a group, and
    PSD2_P16 at stride 1, four groups with a port each); a chain (tall, frame by frame, pooled,
    FCs), a 1x1 conv on a tall 1 x 1 map (split inputs whose chunks interleave the frames),
    those chains with depth-first prefixes (with ``big``, DigitsNet_PSD2_P8 too), then random
    layers of 2 or 3 frames (a third of them with whole periods of channels)."""
    rng = np.random.default_rng(seed0)
    conv3 = random_layer_model(seed=seed0, c_in=16, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    conv3_p16 = random_layer_model(seed=seed0, c_in=16, c_out=32, h=7, w=7, stride=1, variant="PSD2_P16")
    chain = random_chain_model([dict(c_out=16, variant="PS4_P4"), dict(c_out=16, stride=2, variant="PSD2_P8"),
                                dict(c_out=8, stride=2, variant="PS4_P4", pool=True),
                                dict(c_out=6, kind="fc"), dict(c_out=5, kind="fc")],
                               c_in=4, h=8, w=6, seed=seed0)
    # A 1x1 conv on a tall 1 x 1 map, its inputs split (rows K / G * B bytes apart), then an FC.
    to_one = random_chain_model([dict(c_out=64, stride=2), dict(c_out=10, k=1), dict(c_out=5, kind="fc")],
                                c_in=2, h=2, w=2, seed=seed0)
    from host.synthetic import random_qmodel
    digits = random_qmodel("DigitsNet_PSD2_P8", seed=seed0)
    cases = [batch_case("conv3 PSD2_P8 tall", conv3, config, 2, rng),
             batch_case("conv3 PSD2_P16 tall, a port a group", conv3_p16, config, 2, rng)] if big else []
    cases += [batch_case("chain conv/conv s2/conv+pool/fc/fc", chain, config, 2, rng),
             batch_case("chain conv s2 to 1 x 1/1x1 conv/fc", to_one, config, 2, rng),
             # Depth-first prefixes: into a tall map, into an FC's interleaved map, the
             # whole network (the result written frame by frame), and a network's first two.
             batch_case("chain, first 2 depth-first", chain, config, 2, rng, depth_first=2),
             batch_case("chain, first 3 depth-first", chain, config, 2, rng, depth_first=3),
             batch_case("chain to 1 x 1, all depth-first", to_one, config, 2, rng, depth_first=3)]
    if big:
        cases.append(batch_case("DigitsNet_PSD2_P8", digits, config, 2, rng, depth_first=2))
    for i in range(n_random):
        q = random_case(seed0 + 1 + i, periodic_p=0.35).qmodel
        cases.append(batch_case(f"layer seed={seed0 + 1 + i}", q, config, 2 + i % 2, rng))
    return cases


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_batches(sim):
    """Batches of 2 and 3 frames on the four-group engine: layers tall (frame-local padding,
    flat tiles crossing frames) and frame by frame (each pass from its frame's bases, an FC's
    input frame after frame in batches of 3, in batches of two interleaved by the layer before,
    pooled or not, pixels 2 bytes apart, for an FC that takes both frames in its columns),
    random back-pressure; bit-exact vs models.golden and
    hw.reference per frame, cycles and MACs vs hw.layout. Icarus runs the small fixed cases and
    4 random ones, Verilator all of them and 40."""
    from hw.layout import build_layout
    cases = batch_cases(SIM_CONFIG4, 4 if sim == "icarus" else 40, 1700, big=sim != "icarus")
    plans = [p for c in cases for p in build_layout(c.qmodel, SIM_CONFIG4, batch=c.batch).layers]
    assert sum(p.tall for p in plans) >= 2 and sum(p.passes > 1 for p in plans) >= 2
    assert sum(p.columns > 1 for p in plans) >= 2
    _check(run_rtl(SIM_CONFIG4, cases, sim=sim, seed=19, valid_p=0.8, ready_p=0.6))
