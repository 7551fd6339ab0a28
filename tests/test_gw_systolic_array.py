"""amaranth.sim tests of gateware.systolic_array: skewed injection, accumulate, drain order, and
pair packing (two PEs per multiplier) against the unpacked array and a plain Python reference."""

import itertools
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.systolic_array import SystolicArray, ARRAY_LATENCY, _platform_packs_pairs

PACK = pytest.mark.parametrize("pack_pairs", [True, False], ids=["packed", "unpacked"])


def run_steps(rows, cols, steps, *, groups=1, split=0, pack_pairs=None):
    """Present ``steps`` (dicts of valid, first, last, w [R], a [C] and a2.. [C]), one per cycle,
    then idle; collect (cycle, first, row data) of every drained row. Cycle ``n`` is the one
    after the ``n``-th clock edge, so step ``k`` is presented in cycle ``k``."""
    dut = SystolicArray(rows=rows, cols=cols, groups=groups, pack_pairs=pack_pairs)
    got = []

    async def tb(ctx):
        cyc = 0
        if groups >= 2:
            ctx.set(dut.split, split)

        async def tick():
            nonlocal cyc
            await ctx.tick()
            cyc += 1
            if ctx.get(dut.out_valid):
                got.append((cyc, ctx.get(dut.out_first), [ctx.get(dut.out_data[j]) for j in range(cols)]))

        for s in steps:
            for k in ("valid", "first", "last"):
                ctx.set(getattr(dut, k), int(s[k]))
            for i in range(rows):
                ctx.set(dut.w[i], int(s["w"][i]))
            for port in ["a"] + [f"a{k}" for k in range(2, groups + 1)]:
                for j in range(cols):
                    ctx.set(getattr(dut, port)[j], int(s[port][j]))
            await tick()
        ctx.set(dut.valid, 0)
        for _ in range(3 * (rows + cols) + 10):
            await tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


def tile_steps(tiles, gaps=None):
    """Steps of tiles (W [L, R], A [L, C]) back to back, ``gaps[n]`` idle cycles before tile n."""
    steps = []
    for n, (W, A) in enumerate(tiles):
        R, C = W.shape[1], A.shape[1]
        steps += [dict(valid=0, first=0, last=0, w=[0] * R, a=[0] * C)] * (gaps[n] if gaps else 0)
        steps += [dict(valid=1, first=k == 0, last=k == len(W) - 1, w=W[k], a=A[k])
                  for k in range(len(W))]
    return steps


def reference(rows, cols, steps, *, groups=1, split=0):
    """(cycle, first, row data) of every drained row, from the array's specification: each tile
    (valid steps from ``first`` to ``last``) gives rows R-1 .. 0 of W.T @ A on consecutive
    cycles, the first ARRAY_LATENCY cycles after its ``last`` step. With row groups, the rows
    from ``k * R / G`` take ``a{k+1}`` when bit ``k-1`` of ``split`` is set."""
    src = []
    port = "a"
    for i in range(rows):
        k = i * groups // rows
        if i == k * rows // groups and k >= 1 and split >> (k - 1) & 1:
            port = f"a{k + 1}"
        src.append(port)
    want, acc = [], None
    for cyc, s in enumerate(steps):
        if not s["valid"]:
            continue
        if s["first"]:
            acc = [[0] * cols for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                acc[i][j] += int(s["w"][i]) * int(s[src[i]][j])
        if s["last"]:
            at = cyc + ARRAY_LATENCY(rows, cols)
            want += [(at + n, int(n == 0), acc[i]) for n, i in enumerate(reversed(range(rows)))]
    return want


@PACK
@pytest.mark.parametrize("rows,cols,seed", [(4, 4, 0), (8, 8, 1), (2, 8, 2), (8, 2, 3), (1, 2, 4)])
def test_matches_matmul(rows, cols, seed, pack_pairs):
    rng = np.random.default_rng(seed)
    tiles = [(rng.integers(-128, 128, (L, rows)), rng.integers(-128, 128, (L, cols)))
             for L in rng.integers(rows, rows + 12, size=5)]
    gaps = [int(g) for g in rng.integers(0, 4, size=5)]
    got = run_steps(rows, cols, tile_steps(tiles, gaps), pack_pairs=pack_pairs)
    want = []
    for W, A in tiles:
        acc = W.T.astype(np.int64) @ A.astype(np.int64)     # [R, C]
        want += [list(acc[i]) for i in reversed(range(rows))]
    assert [g[2] for g in got] == want, f"seed {seed}"
    assert [g[1] for g in got] == ([1] + [0] * (rows - 1)) * len(tiles), f"seed {seed}"


@PACK
def test_extremes_and_latency(pack_pairs):
    # -128 * -128 summed 300 times: the 32-bit accumulator must not wrap.
    R, C, L = 2, 2, 300
    W = np.full((L, R), -128)
    A = np.full((L, C), -128)
    got = run_steps(R, C, tile_steps([(W, A)]), pack_pairs=pack_pairs)
    assert [g[2] for g in got] == [[L * 16384] * C] * R
    # The first row is visible ARRAY_LATENCY cycles after the cycle the last step was presented.
    assert got[0][0] == (L - 1) + ARRAY_LATENCY(R, C)


EXTREMES = (-128, -1, 0, 1, 127)


def extreme_steps():
    """One-step tiles, one cycle apart (R = 2), over every (w, a_even, a_odd) of EXTREMES for
    the pair of columns 0 and 1; row 1 and the unpaired column 2 see rotations of them."""
    steps = []
    for n, (w, ae, ao) in enumerate(itertools.product(EXTREMES, repeat=3)):
        w1 = EXTREMES[(EXTREMES.index(w) + n) % len(EXTREMES)]
        steps.append(dict(valid=1, first=1, last=1, w=[w, w1], a=[ae, ao, EXTREMES[n % 5]]))
        steps.append(dict(valid=0, first=1, last=1, w=[127, -128], a=[-128, 127, -1]))
    return steps


def random_steps(rng, rows, cols, groups, n_tiles):
    """Random tiles (lengths 1 .. 2R, bubbles inside, idle gaps) with random operands, extremes
    favoured, and garbage on every input of an invalid cycle; ``last`` steps R cycles apart."""
    ports = ["a"] + [f"a{k}" for k in range(2, groups + 1)]

    def operands(n):
        v = rng.integers(-128, 128, n)
        return np.where(rng.random(n) < 0.3, rng.choice(EXTREMES, n), v)

    def step(valid, first, last):
        return dict(valid=valid, first=first, last=last, w=operands(rows),
                    **{p: operands(cols) for p in ports})

    steps, since_last = [], rows
    for _ in range(n_tiles):
        for _ in range(int(rng.integers(0, 3))):
            steps.append(step(0, int(rng.integers(2)), int(rng.integers(2))))
            since_last += 1
        L = int(rng.integers(1, 2 * rows + 1))
        for k in range(L):
            while rng.random() < 0.2:
                steps.append(step(0, int(rng.integers(2)), int(rng.integers(2))))
                since_last += 1
            if k == L - 1:
                while since_last < rows:
                    steps.append(step(0, 0, 0))
                    since_last += 1
            steps.append(step(1, k == 0, k == L - 1))
            since_last = 0 if k == L - 1 else since_last + 1
    return steps


CASES = [
    # name, rows, cols, groups, split
    ("extremes 2x3", 2, 3, 1, 0),
    ("random 1x2", 1, 2, 1, 0),
    ("random 3x5", 3, 5, 1, 0),
    ("random 4x4 two groups", 4, 4, 2, 0),
    ("random 4x6 two groups split", 4, 6, 2, 1),
    ("random 4x5 four groups split 0b101", 4, 5, 4, 0b101),
    ("random 4x4 four groups split 0b111", 4, 4, 4, 0b111),
    ("random 8x3 four groups split 0b010", 8, 3, 4, 0b010),
]


@pytest.mark.parametrize("name,rows,cols,groups,split", CASES, ids=[c[0] for c in CASES])
def test_packing_matches_reference(name, rows, cols, groups, split):
    """Packed and unpacked arrays give the reference's results on the reference's cycles."""
    seed = zlib.crc32(name.encode())
    if name.startswith("extremes"):
        steps = extreme_steps()
    else:
        steps = random_steps(np.random.default_rng(seed), rows, cols, groups, n_tiles=12)
    want = reference(rows, cols, steps, groups=groups, split=split)
    runs = {p: run_steps(rows, cols, steps, groups=groups, split=split, pack_pairs=p)
            for p in (True, False)}
    for p, got in runs.items():
        for n, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{name} (seed {seed}), pack_pairs={p}: drained row {n} (cycle, " \
                           f"first, data) is {g}, expected {w}"
        assert len(got) == len(want), f"{name} (seed {seed}), pack_pairs={p}: {len(got)} rows " \
                                      f"drained, expected {len(want)}"
    assert runs[True] == runs[False], f"{name} (seed {seed})"


def test_pack_pairs_default_follows_platform():
    from gateware.boards import get_board
    assert _platform_packs_pairs(None)
    assert _platform_packs_pairs(get_board("arty_a7").platform())
    assert not _platform_packs_pairs(get_board("ulx3s_85f").platform())
    assert SystolicArray(rows=2, cols=2).pack_pairs is None
    assert SystolicArray(rows=2, cols=2, pack_pairs=False).pack_pairs is False


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="rows must be a positive integer, not 0"):
        SystolicArray(rows=0, cols=2)
    with pytest.raises(TypeError, match="pack_pairs must be a bool or None, not 1"):
        SystolicArray(rows=2, cols=2, pack_pairs=1)
