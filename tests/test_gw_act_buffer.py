"""amaranth.sim tests of gateware.act_buffer: banked C-pixel reads at stride 1/2, zero padding,
C-byte write-back at stride 1/2 and 4-byte loader writes, against a flat numpy byte array."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.act_buffer import ActBuffer, READ_LATENCY, WRITE_LATENCY


async def _write_row(ctx, dut, n0, data, mask, *, stride2=False, split=None, gap=0):
    """One output-path write request (``wr_en`` left high), one cycle: lane ``j`` of ``data``
    where ``mask[j]``; lanes from ``split`` on (None: no split) ``gap`` bytes further."""
    ctx.set(dut.wr_en, 1)
    ctx.set(dut.wr_addr, n0)
    ctx.set(dut.wr_stride2, stride2)
    ctx.set(dut.wr_split, dut.cols if split is None else split)
    ctx.set(dut.wr_gap, gap)
    ctx.set(dut.wr_mask, sum(int(m) << j for j, m in enumerate(mask)))
    for j in range(dut.cols):
        ctx.set(dut.wr_data[j], int(data[j]))
    await ctx.tick()


@pytest.mark.parametrize("cols,seed", [(2, 0), (4, 1), (8, 2)])
def test_reads_writes_against_flat_memory(cols, seed):
    rng = np.random.default_rng(seed)
    depth = 16
    size = 2 * cols * depth
    flat = rng.integers(-128, 128, size=size).astype(np.int8)
    dut = ActBuffer(cols=cols, bank_depth=depth)
    reads = []
    for _ in range(40):
        s = int(rng.integers(1, 3))
        n0 = int(rng.integers(-3, size - s * (cols - 1)))
        ok = [bool(rng.integers(2)) and 0 <= n0 + j * s < size for j in range(cols)]
        reads.append((n0, s, ok))
    writes = []
    for _ in range(30):
        s = int(rng.integers(1, 3))
        n0 = int(rng.integers(0, size - s * (cols - 1)))
        writes.append((n0, s, rng.integers(-128, 128, size=cols), rng.integers(0, 2, size=cols)))
    got_reads, got_after = [], []

    async def read_all(out):
        for n0, s, ok in reads + [(0, 1, [False] * cols)] * READ_LATENCY:
            ctx_ = _ctx[0]
            ctx_.set(dut.rd_addr, n0)
            ctx_.set(dut.rd_stride2, s == 2)
            ctx_.set(dut.rd_ok, sum(1 << j for j, o in enumerate(ok) if o))
            await ctx_.tick()
            out.append([ctx_.get(dut.rd_data[j]) for j in range(cols)])

    _ctx = [None]

    async def tb(ctx):
        _ctx[0] = ctx
        words = flat.view(np.uint8).view("<u4")
        for a, w in enumerate(words):                     # loader: 4 bytes a word
            ctx.set(dut.ld_en, 1)
            ctx.set(dut.ld_addr, a)
            ctx.set(dut.ld_data, int(w))
            await ctx.tick()
        ctx.set(dut.ld_en, 0)
        for _ in range(WRITE_LATENCY):  # the last word reaches the banks
            await ctx.tick()
        await read_all(got_reads)
        for n0, s, d, mask in writes:                     # output path: C bytes, s apart
            await _write_row(ctx, dut, n0, d, mask, stride2=s == 2)
        ctx.set(dut.wr_en, 0)
        for _ in range(WRITE_LATENCY):
            await ctx.tick()
        await read_all(got_after)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()

    def expect(mem):
        return [[int(mem[n0 + j * s]) if ok[j] else 0 for j in range(cols)] for n0, s, ok in reads]

    assert got_reads[READ_LATENCY - 1:READ_LATENCY - 1 + len(reads)] == expect(flat), f"seed {seed}"
    after = flat.copy()
    for n0, s, d, mask in writes:
        for j in range(cols):
            if mask[j]:
                after[n0 + j * s] = d[j]
    assert got_after[READ_LATENCY - 1:READ_LATENCY - 1 + len(reads)] == expect(after), f"seed {seed}"


def test_rejects_one_column():
    with pytest.raises(ValueError, match="cols must be a power of two of at least 2, not 1"):
        ActBuffer(cols=1, bank_depth=4)


@pytest.mark.parametrize("ports", [2, 4])
def test_extra_ports_read_their_own_copy(ports):
    """Every read port (one per row group) reads its own copy of the banks, which every write
    (loader and write-back) updates; each port has its own address, stride and padding."""
    cols, depth = 4, 8
    size = 2 * cols * depth
    rng = np.random.default_rng(ports)
    flat = rng.integers(-128, 128, size=size).astype(np.int8)
    dut = ActBuffer(cols=cols, bank_depth=depth, ports=ports)
    names = [""] + [str(p) for p in range(2, ports + 1)]
    reads = [[(int(rng.integers(-2, size - 2 * cols)), int(rng.integers(1, 3)),
               int(rng.integers(0, 1 << cols))) for _ in names] for _ in range(30)]
    wr = (int(rng.integers(0, size - cols)), rng.integers(-128, 128, size=cols))
    got = []

    async def tb(ctx):
        for a, w in enumerate(flat.view(np.uint8).view("<u4")):
            ctx.set(dut.ld_en, 1)
            ctx.set(dut.ld_addr, a)
            ctx.set(dut.ld_data, int(w))
            await ctx.tick()
        ctx.set(dut.ld_en, 0)
        ctx.set(dut.wr_en, 1)
        ctx.set(dut.wr_addr, wr[0])
        ctx.set(dut.wr_mask, (1 << cols) - 1)
        for j in range(cols):
            ctx.set(dut.wr_data[j], int(wr[1][j]))
        await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for _ in range(WRITE_LATENCY):  # the write reaches the banks
            await ctx.tick()
        for req in reads + [reads[-1]] * READ_LATENCY:
            # One stride for every port (the sequencer's), so take port 0's.
            for n, (n0, _, ok) in zip(names, req):
                ctx.set(getattr(dut, f"rd{n}_addr"), n0)
                ctx.set(getattr(dut, f"rd{n}_ok"), ok)
            ctx.set(dut.rd_stride2, req[0][1] == 2)
            await ctx.tick()
            got.append([[ctx.get(getattr(dut, f"rd{n}_data")[j]) for j in range(cols)] for n in names])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    mem = flat.copy()
    mem[wr[0]:wr[0] + cols] = wr[1]
    s_of = [req[0][1] for req in reads]
    want = [[[int(mem[n0 + j * s]) if ok >> j & 1 and 0 <= n0 + j * s < size else 0
              for j in range(cols)] for n0, _, ok in req] for req, s in zip(reads, s_of)]
    # Column ok bits for out-of-range pixels would read another address: mask them out.
    for i, req in enumerate(reads):
        for p, (n0, _, ok) in enumerate(req):
            for j in range(cols):
                if not 0 <= n0 + j * s_of[i] < size:
                    got[READ_LATENCY - 1 + i][p][j] = want[i][p][j]
    assert got[READ_LATENCY - 1:READ_LATENCY - 1 + len(reads)] == want


def test_rejects_three_ports():
    with pytest.raises(ValueError, match="ports must be 1, 2 or 4, not 3"):
        ActBuffer(cols=2, bank_depth=4, ports=3)


def test_write_latency():
    """A read issued WRITE_LATENCY cycles after a write (or loader) request of the same bytes
    returns them."""
    cols, depth = 4, 4
    dut = ActBuffer(cols=cols, bank_depth=depth)
    new = [5, -6, 7, -8]
    got = []

    async def tb(ctx):
        ctx.set(dut.ld_en, 1)
        ctx.set(dut.ld_addr, 1)                           # bytes 4..7
        ctx.set(dut.ld_data, 0x0403_0201)
        await ctx.tick()
        ctx.set(dut.ld_en, 0)
        for _ in range(WRITE_LATENCY):
            await ctx.tick()
        ctx.set(dut.rd_addr, 4)
        ctx.set(dut.rd_ok, (1 << cols) - 1)
        await ctx.tick()
        ctx.set(dut.wr_en, 1)                             # bytes 4..7 again, while reading
        ctx.set(dut.wr_addr, 4)
        ctx.set(dut.wr_mask, (1 << cols) - 1)
        for j in range(cols):
            ctx.set(dut.wr_data[j], new[j])
        await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for _ in range(WRITE_LATENCY):
            await ctx.tick()
        await ctx.tick()                                  # the read of the written bytes
        for _ in range(READ_LATENCY):
            got.append([ctx.get(dut.rd_data[j]) for j in range(cols)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got[-1] == new


def _split_addrs(n0, s, split, jump, cols):
    """The bytes a split read's columns address: ``n0 + s * j``, plus ``jump * 2 * cols`` from
    column ``split`` on."""
    return [n0 + s * j + (jump * 2 * cols if j >= split else 0) for j in range(cols)]


def _split_lanes(n0, split, gap, cols):
    """The bytes a split write's lanes land on: ``n0 + j``, plus ``gap`` from lane ``split`` on."""
    return [n0 + j + (gap if j >= split else 0) for j in range(cols)]


async def _load(ctx, dut, flat):
    """Loader: the flat byte array, 4 bytes a word, then WRITE_LATENCY cycles for the last."""
    for a, w in enumerate(np.asarray(flat, dtype=np.int8).view(np.uint8).view("<u4")):
        ctx.set(dut.ld_en, 1)
        ctx.set(dut.ld_addr, a)
        ctx.set(dut.ld_data, int(w))
        await ctx.tick()
    ctx.set(dut.ld_en, 0)
    for _ in range(WRITE_LATENCY):
        await ctx.tick()


@pytest.mark.parametrize("cols,ports,seed", [
    (2, 1, 10), (2, 2, 11), (2, 4, 12), (4, 1, 13), (4, 2, 14), (4, 4, 15),
    (8, 1, 16), (8, 2, 17), (8, 4, 18)])
def test_split_reads_writes_against_flat_memory(cols, ports, seed):
    """Flat tiles: random split reads (``rd_split`` 0..C, ``rd_jump`` 0..3, stride 1 and 2, one
    split and stride for every port, each port its own address and ok bits) and random split
    writes (``wr_split`` 0..C, ``wr_gap`` 0..C-1, random masks, stride 1), against a flat byte
    array."""
    rng = np.random.default_rng(seed)
    depth = 16
    size = 2 * cols * depth
    flat = rng.integers(-128, 128, size=size).astype(np.int8)
    dut = ActBuffer(cols=cols, bank_depth=depth, ports=ports)
    names = [""] + [str(p) for p in range(2, ports + 1)]
    reads = []     # (stride, split, jump, [(n0, ok bits) per port])
    for _ in range(40):
        s, split, jump = int(rng.integers(1, 3)), int(rng.integers(0, cols + 1)), int(rng.integers(0, 4))
        req = []
        for _ in names:
            hi = size - s * (cols - 1) - (jump * 2 * cols if split < cols else 0)
            n0 = int(rng.integers(-3, max(hi, 1)))
            addrs = _split_addrs(n0, s, split, jump, cols)
            req.append((n0, sum(1 << j for j in range(cols)
                                if rng.random() < 0.85 and 0 <= addrs[j] < size)))
        reads.append((s, split, jump, req))
    writes = []    # (n0, split, gap, data, mask)
    for _ in range(30):
        split, gap = int(rng.integers(0, cols + 1)), int(rng.integers(0, cols))
        n0 = int(rng.integers(0, size - (cols - 1) - gap))
        writes.append((n0, split, gap, rng.integers(-128, 128, size=cols), rng.integers(0, 2, size=cols)))
    got_before, got_after = [], []

    async def read_all(ctx, out):
        idle = (1, cols, 0, [(0, 0)] * len(names))
        for s, split, jump, req in reads + [idle] * READ_LATENCY:
            ctx.set(dut.rd_stride2, s == 2)
            ctx.set(dut.rd_split, split)
            ctx.set(dut.rd_jump, jump)
            for n, (n0, ok) in zip(names, req):
                ctx.set(getattr(dut, f"rd{n}_addr"), n0)
                ctx.set(getattr(dut, f"rd{n}_ok"), ok)
            await ctx.tick()
            out.append([[ctx.get(getattr(dut, f"rd{n}_data")[j]) for j in range(cols)] for n in names])

    async def tb(ctx):
        await _load(ctx, dut, flat)
        await read_all(ctx, got_before)
        for n0, split, gap, d, mask in writes:
            await _write_row(ctx, dut, n0, d, mask, split=split, gap=gap)
        ctx.set(dut.wr_en, 0)
        for _ in range(WRITE_LATENCY):
            await ctx.tick()
        await read_all(ctx, got_after)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()

    def expect(mem):
        return [[[int(mem[a]) if ok >> j & 1 else 0
                  for j, a in enumerate(_split_addrs(n0, s, split, jump, cols))]
                 for n0, ok in req] for s, split, jump, req in reads]

    assert got_before[READ_LATENCY - 1:READ_LATENCY - 1 + len(reads)] == expect(flat), f"seed {seed}"
    after = flat.copy()
    for n0, split, gap, d, mask in writes:
        for j, a in enumerate(_split_lanes(n0, split, gap, cols)):
            if mask[j]:
                after[a] = d[j]
    assert not np.array_equal(after, flat), f"seed {seed}: the writes changed nothing"
    assert got_after[READ_LATENCY - 1:READ_LATENCY - 1 + len(reads)] == expect(after), f"seed {seed}"


def test_split_by_hand():
    """cols = 4 (8 banks), byte n = n. A read at 3, stride 2, split 2, jump 1 reads 3, 5 and then
    3 + 2 * 2 + 8 = 15, 17 (banks 3, 5 at bank address 0, banks 7, 1 at 1, 2); at 5, stride 1,
    split 1, jump 2 it reads 5, then 6 + 16 = 22, 23, 24. A write at 5, split 3, gap 2 lands on
    5, 6, 7 and 10 (bytes 8, 9 untouched: the row padding); one at 16, split 1, gap 3, mask 0b1010
    lands lane 1 on 20 and lane 3 on 22 only."""
    cols, depth = 4, 8
    dut = ActBuffer(cols=cols, bank_depth=depth)
    got = {}
    reads = {   # name: (addr, stride, split, jump)
        "s2": (3, 2, 2, 1), "s1": (5, 1, 1, 2),
        "at4": (4, 1, cols, 0), "at8": (8, 1, cols, 0), "at16": (16, 1, cols, 0), "at20": (20, 1, 0, 0),
    }

    async def read(ctx, name):
        addr, s, split, jump = reads[name]
        ctx.set(dut.rd_addr, addr)
        ctx.set(dut.rd_stride2, s == 2)
        ctx.set(dut.rd_split, split)
        ctx.set(dut.rd_jump, jump)
        ctx.set(dut.rd_ok, (1 << cols) - 1)
        for _ in range(READ_LATENCY):
            await ctx.tick()
        got[name] = [ctx.get(dut.rd_data[j]) for j in range(cols)]

    async def write(ctx, addr, split, gap, mask, d):
        await _write_row(ctx, dut, addr, d, [mask >> j & 1 for j in range(cols)], split=split, gap=gap)
        ctx.set(dut.wr_en, 0)
        for _ in range(WRITE_LATENCY):
            await ctx.tick()

    async def tb(ctx):
        await _load(ctx, dut, np.arange(2 * cols * depth))
        await read(ctx, "s2")
        await read(ctx, "s1")
        await write(ctx, 5, 3, 2, 0b1111, [-1, -2, -3, -4])
        await write(ctx, 16, 1, 3, 0b1010, [-5, -6, -7, -8])
        for name in ("at4", "at8", "at16", "at20"):
            await read(ctx, name)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got["s2"] == [3, 5, 15, 17]
    assert got["s1"] == [5, 22, 23, 24]
    assert got["at4"] == [4, -1, -2, -3]
    assert got["at8"] == [8, 9, -4, 11]
    assert got["at16"] == [16, 17, 18, 19]
    assert got["at20"] == [-6, 21, -8, 23]
