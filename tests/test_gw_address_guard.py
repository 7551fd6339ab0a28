"""amaranth.sim tests of gateware.address_guard: each check at its boundaries, hand-worked, and
random steps against the rules written out in Python, with the latencies the sequencer relies on
(a read or weight entry outside: ``GUARD_LATENCY - 1`` cycles; an accumulator outside the window:
1 cycle)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.address_guard import AddressGuard, GUARD_LATENCY
from hw.array import ArrayConfig

A, W, AB, TERM, OUT = 200, 100, 8, 13, 16
CONFIG = ArrayConfig(rows=4, cols=4, groups=4, p_max=4, weight_depth=W, table_depth=16,
                     param_depth=16, act_depth=A, max_layers=2)
PORTS, C = 4, 4


def quiet(**kw):
    """One cycle's inputs: no step, nothing walking, every port feeding, all in range, no split
    (``jump`` 0)."""
    v = dict(step=0, stride2=0, addr=[0] * PORTS, ok=[0] * PORTS, split=C, jump=0,
             feeds=(1 << PORTS) - 1, entry=0, walking=0, in_terms=[0] * 4, out_terms=[0] * 2)
    v.update(kw)
    return v


def run(cycles):
    """Drive one dict of inputs a cycle (then quiet ones) and return ``bad`` of every cycle."""
    dut = AddressGuard(config=CONFIG, act_addr_bits=AB, term_bits=TERM, out_bits=OUT, entry_bits=8)
    got = []
    seq = list(cycles) + [quiet()] * (GUARD_LATENCY + 1)

    async def tb(ctx):
        for v in seq:
            for name in ("step", "stride2", "split", "jump", "feeds", "entry", "walking"):
                ctx.set(getattr(dut, name), v[name])
            for k in range(PORTS):
                ctx.set(dut.addr[k], v["addr"][k])
                ctx.set(dut.ok[k], v["ok"][k])
            for i in range(4):
                ctx.set(dut.in_terms[i], v["in_terms"][i])
            for i in range(2):
                ctx.set(dut.out_terms[i], v["out_terms"][i])
            got.append(ctx.get(dut.bad))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


def model(cycles):
    """``bad`` per cycle from the rules: a step whose feeding port reads an ok column's byte
    (``addr + j * s``, plus ``2 * C * jump`` for ``j >= split``) outside ``0 .. A - 1`` or whose
    entry is ``>= W``, ``GUARD_LATENCY - 1`` cycles later; an accumulator outside ``+-2**AB``
    (unsigned: ``>= 2**AB``) while walking, one cycle later."""
    seq = list(cycles) + [quiet()] * (GUARD_LATENCY + 1)
    step_bad, window_bad = [], []
    for v in seq:
        s = 2 if v["stride2"] else 1
        reads = [v["addr"][k] + j * s + (2 * C * v["jump"] if j >= v["split"] else 0)
                 for k in range(PORTS) if v["feeds"] >> k & 1
                 for j in range(C) if v["ok"][k] >> j & 1]
        step_bad.append(bool(v["step"]) and (any(not 0 <= a < A for a in reads) or v["entry"] >= W))
        window_bad.append(bool(v["walking"]) and (any(not -(1 << AB) <= t < (1 << AB) for t in v["in_terms"])
                                                  or any(t >= 1 << AB for t in v["out_terms"])))
    d = GUARD_LATENCY - 1
    return [(t >= d and step_bad[t - d]) or (t >= 1 and window_bad[t - 1]) for t in range(len(seq))]


def fires(v):
    """Whether the one-cycle input ``v`` makes ``bad`` rise, and at which cycle."""
    got = run([v])
    assert got == model([v]), (v, got)
    return [t for t, b in enumerate(got) if b]


@pytest.mark.parametrize("case,v,at", [
    ("lowest ok byte at 0", dict(addr=[0, 0, 0, 0], ok=[0b1111, 0, 0, 0]), []),
    ("lowest ok byte at -1", dict(addr=[-1, 0, 0, 0], ok=[0b0001, 0, 0, 0]), [3]),
    ("a column below 0 that is not ok", dict(addr=[-1, 0, 0, 0], ok=[0b1110, 0, 0, 0]), []),
    ("highest ok byte at A - 1", dict(addr=[A - 4, 0, 0, 0], ok=[0b1111, 0, 0, 0]), []),
    ("highest ok byte at A", dict(addr=[A - 3, 0, 0, 0], ok=[0b1000, 0, 0, 0]), [3]),
    ("a column past the end that is not ok", dict(addr=[A - 3, 0, 0, 0], ok=[0b0111, 0, 0, 0]), []),
    ("stride 2: column 3 at A", dict(addr=[A - 6, 0, 0, 0], ok=[0b1000, 0, 0, 0], stride2=1), [3]),
    ("stride 2: column 3 at A - 1", dict(addr=[A - 7, 0, 0, 0], ok=[0b1000, 0, 0, 0], stride2=1), []),
    ("port 3 past the end", dict(addr=[0, 0, 0, A], ok=[1, 0, 0, 1]), [3]),
    ("port 3 past the end, not feeding", dict(addr=[0, 0, 0, A], ok=[1, 0, 0, 1], feeds=0b0111), []),
    ("weight entry W - 1", dict(entry=W - 1), []),
    ("weight entry W", dict(entry=W), [3]),
])
def test_step_checks(case, v, at):
    """A single issued step at each check's boundary: the read of each port's lowest and highest
    ok column, at stride 1 and 2, ports that do not feed the array ignored, the weight entry."""
    assert fires(quiet(step=1, **v)) == at, case
    # Without the step valid, nothing is checked.
    assert fires(quiet(step=0, **v)) == [], case


@pytest.mark.parametrize("case,v,at", [
    ("channel term 2**AB - 1", dict(in_terms=[(1 << AB) - 1, 0, 0, 0]), []),
    ("channel term 2**AB", dict(in_terms=[1 << AB, 0, 0, 0]), [1]),
    ("row origin -2**AB", dict(in_terms=[0, 0, 0, -(1 << AB)]), []),
    ("row origin -2**AB - 1", dict(in_terms=[0, 0, 0, -(1 << AB) - 1]), [1]),
    ("pixel row 2**AB - 1", dict(out_terms=[0, (1 << AB) - 1]), []),
    ("block term 2**AB", dict(out_terms=[1 << AB, 0]), [1]),
])
def test_window(case, v, at):
    """The window check: signed input terms inside ``-2**AB .. 2**AB - 1``, unsigned output terms
    below ``2**AB``, only while the layer walks; one cycle after the accumulator."""
    assert fires(quiet(walking=1, **v)) == at, case
    assert fires(quiet(walking=0, **v)) == [], case


@pytest.mark.parametrize("seed", range(6))
def test_random_steps(seed):
    """200 random cycles (steps near both ends of the memory, random ok bits, feeding ports,
    strides, entries and window terms) against :func:`model`."""
    rng = np.random.default_rng(seed)
    cycles = []
    for _ in range(200):
        near = lambda: int(rng.choice([rng.integers(-8, 8), rng.integers(A - 10, A + 4)]))
        term = lambda: int(rng.choice([0, (1 << AB) - 1, 1 << AB, -(1 << AB), -(1 << AB) - 1]))
        cycles.append(quiet(step=int(rng.random() < 0.7), stride2=int(rng.random() < 0.3),
                            addr=[near() for _ in range(PORTS)],
                            ok=[int(rng.integers(0, 1 << C)) for _ in range(PORTS)],
                            feeds=int(rng.integers(1, 1 << PORTS)) | 1,
                            entry=int(rng.integers(W - 3, W + 3)), walking=int(rng.random() < 0.2),
                            in_terms=[term() if rng.random() < 0.1 else 0 for _ in range(4)],
                            out_terms=[abs(term()) if rng.random() < 0.1 else 0 for _ in range(2)]))
    want = model(cycles)
    assert 20 < sum(want) < len(want) - 20, f"seed {seed}: too few or too many faults to mean much"
    assert run(cycles) == want, f"seed {seed}"


@pytest.mark.parametrize("case,v,at", [
    ("split: highest ok column past the split at A - 1",
     dict(addr=[A - 12, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=2, jump=1), []),
    ("split: highest ok column past the split at A",
     dict(addr=[A - 11, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=2, jump=1), [3]),
    ("split, stride 2: column 3 at A - 1",
     dict(addr=[A - 15, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=2, jump=1, stride2=1), []),
    ("split, stride 2: column 3 at A",
     dict(addr=[A - 14, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=2, jump=1, stride2=1), [3]),
    ("the column at the split jumps: at A",
     dict(addr=[A - 10, 0, 0, 0], ok=[0b0100, 0, 0, 0], split=2, jump=1), [3]),
    ("the column before the split does not jump: at A - 9",
     dict(addr=[A - 10, 0, 0, 0], ok=[0b0010, 0, 0, 0], split=2, jump=5), []),
    ("a column past the end after the split that is not ok",
     dict(addr=[A - 11, 0, 0, 0], ok=[0b0111, 0, 0, 0], split=3, jump=1), []),
    ("lowest ok column past the split: jumped to 0",
     dict(addr=[-10, 0, 0, 0], ok=[0b1100, 0, 0, 0], split=2, jump=1), []),
    ("lowest ok column past the split: jumped to -1",
     dict(addr=[-11, 0, 0, 0], ok=[0b1100, 0, 0, 0], split=2, jump=1), [3]),
    ("lowest ok column before the split at -1, highest past it",
     dict(addr=[-1, 0, 0, 0], ok=[0b1001, 0, 0, 0], split=2, jump=1), [3]),
    ("lowest before the split, highest past it at A - 5",
     dict(addr=[0, 0, 0, 0], ok=[0b1001, 0, 0, 0], split=2, jump=24), []),
    ("lowest before the split, highest past it at A + 3",
     dict(addr=[0, 0, 0, 0], ok=[0b1001, 0, 0, 0], split=2, jump=25), [3]),
    ("split 0: every column jumps, column 0 to 0",
     dict(addr=[-8, 0, 0, 0], ok=[0b0001, 0, 0, 0], split=0, jump=1), []),
    ("split 0: every column jumps, column 0 to -1",
     dict(addr=[-9, 0, 0, 0], ok=[0b0001, 0, 0, 0], split=0, jump=1), [3]),
    ("split C: no column jumps",
     dict(addr=[A - 4, 0, 0, 0], ok=[0b1111, 0, 0, 0], split=C, jump=31), []),
    ("the widest jump: 8 * 31 = 248, to 0",
     dict(addr=[-248, 0, 0, 0], ok=[0b0001, 0, 0, 0], split=0, jump=31), []),
    ("the widest jump: to A - 1",
     dict(addr=[A - 1 - 3 - 248, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=0, jump=31), []),
    ("the widest jump: to A + 51",
     dict(addr=[0, 0, 0, 0], ok=[0b1000, 0, 0, 0], split=0, jump=31), [3]),
    ("port 2 past the end after the split",
     dict(addr=[0, 0, A - 11, 0], ok=[1, 0, 0b1000, 0], split=2, jump=1), [3]),
    ("port 2 past the end after the split, not feeding",
     dict(addr=[0, 0, A - 11, 0], ok=[1, 0, 0b1000, 0], split=2, jump=1, feeds=0b1011), []),
])
def test_split_checks(case, v, at):
    """Flat tiles: columns ``j >= split`` read ``2 * C * jump`` bytes further on, for the lowest
    ok column as for the highest, at stride 1 and 2, on every port that feeds; columns before the
    split and ones that are not ok do not jump or do not count."""
    assert fires(quiet(step=1, **v)) == at, case
    assert fires(quiet(step=0, **v)) == [], case


@pytest.mark.parametrize("seed", range(4))
def test_random_split_steps(seed):
    """200 random steps with random splits (0..C) and jumps (small, or up to the widest), their
    addresses near both ends of the memory with and without the jump taken off, against
    :func:`model`."""
    rng = np.random.default_rng(100 + seed)
    jump_max = (1 << (AB - (2 * C).bit_length() + 1)) - 1
    cycles = []
    for _ in range(200):
        split = int(rng.integers(0, C + 1))
        jump = int(rng.integers(0, 4)) if rng.random() < 0.7 else int(rng.integers(0, jump_max + 1))
        def near():
            base = int(rng.choice([rng.integers(-8, 8), rng.integers(A - 10, A + 4)]))
            return base - (2 * C * jump if rng.random() < 0.5 else 0)
        cycles.append(quiet(step=int(rng.random() < 0.8), stride2=int(rng.random() < 0.3),
                            addr=[near() for _ in range(PORTS)],
                            ok=[int(rng.integers(0, 1 << C)) for _ in range(PORTS)],
                            split=split, jump=jump,
                            feeds=int(rng.integers(1, 1 << PORTS)) | 1, entry=0))
    want = model(cycles)
    assert 20 < sum(want) < len(want) - 20, f"seed {seed}: too few or too many faults to mean much"
    assert run(cycles) == want, f"seed {seed}"


def test_parameters_validated():
    kw = dict(config=CONFIG, act_addr_bits=AB, term_bits=TERM, out_bits=OUT, entry_bits=8)
    with pytest.raises(TypeError, match="config must be an ArrayConfig"):
        AddressGuard(**{**kw, "config": None})
    with pytest.raises(ValueError, match=r"act_addr_bits \(7\) cannot address act_depth = 200"):
        AddressGuard(**{**kw, "act_addr_bits": 7})
    with pytest.raises(ValueError, match=r"term_bits \(12\) must be at least act_addr_bits \+ 5 = 13"):
        AddressGuard(**{**kw, "term_bits": 12})
    with pytest.raises(ValueError, match=r"entry_bits \(6\) must hold weight_depth = 100"):
        AddressGuard(**{**kw, "entry_bits": 6})
    with pytest.raises(ValueError, match="out_bits must be a positive integer, not 0"):
        AddressGuard(**{**kw, "out_bits": 0})
