"""Banked on-chip activation memory: C pixels a cycle in, C pixels a cycle out.

All activation maps share one flat byte space (``hw.layout``: C, H, W order from a base address);
byte ``n`` lives in bank ``n mod 2C`` at bank address ``n div 2C``. The C columns of one step read
``n0 + j * s`` (stride ``s`` in {1, 2}): all inside the window ``[n0, n0 + 2C)``, so they always hit
C distinct banks; bank ``b`` reads address ``n0 div 2C + (b < n0 mod 2C)``. Zero padding is not
stored: a column whose pixel lies outside the input map reads as 0 (``ok`` bit low). The output
path writes C bytes (one filter row of a tile) a cycle, consecutive or 2 apart (a map whose pixels
two frames interleave), again C distinct banks, and the loader writes 4 consecutive bytes (one
INPUT word).

A tile of C pixels that runs from the end of one output row into the next (a *flat* tile) reads
and writes two runs. Reads: columns ``j >= split`` read ``jump`` bank rows (``2C * jump`` bytes)
further on, so they still hit the banks the unsplit read would, at another bank address (the
layout pads a map's rows so that the second output row's input starts a whole number of bank
rows on). Writes: lanes ``j >= split`` land ``gap < C`` bytes further on (the padding at the end
of a row): C lanes within ``2C - 1`` bytes, again C distinct banks.
"""

from amaranth import Array, Cat, Module, Signal, Mux, signed, unsigned
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .pipeline import registered_read

__all__ = ["ActBuffer", "READ_LATENCY", "WRITE_LATENCY", "flat_addr_bits"]

#: Cycles from a read request to :attr:`ActBuffer.rd_data`: each bank's address registered (the
#: add and the long routes to the ``2 * cols * ports`` block RAMs do not share the read's
#: cycle), the block-RAM read, a landing register right after it and a second one (ECP5's
#: DP16KD has a clock-to-out of almost 6 ns, which leaves 4 ns to reach a register at 100 MHz:
#: a register that also fed the ``cols`` column selects was placed among them, up to 4.2 ns of
#: routing away; the landing register feeds only the next one, which leaves the placer free to
#: put it by its block, though it does not always: README, ULX3S), then the column select and
#: zero padding.
READ_LATENCY = 5

#: Cycles from a write request (:attr:`ActBuffer.wr_en`, :attr:`ActBuffer.ld_en`) to its bytes
#: being in the banks: the lanes spread over a 2C-byte window by the lane rule (stride, split)
#: and registered, then rotated into the banks by the address and registered again (each
#: bank's enable, address and byte), so neither the lane choice nor the rotation shares a cycle
#: with the other or with the long routes to the ``2 * cols * ports`` block RAMs (the lane
#: rule and the rotation in one cycle were the ULX3S critical path, 87 MHz). It adds no cycles
#: to a layer: the sequencer waits for the last write-back request and then loads the next
#: descriptor (or the result's read) before it reads the activations again, far more than two
#: cycles.
WRITE_LATENCY = 2


def flat_addr_bits(*, cols: int, bank_depth: int) -> int:
    """Bits of a flat byte address into ``2 * cols`` banks of ``bank_depth`` bytes."""
    return max(1, (bank_depth * 2 * cols - 1).bit_length())


class ActBuffer(wiring.Component):
    """``2 * cols`` byte-wide banks of ``bank_depth`` bytes.

    Parameters (keyword-only)
    -------------------------
    cols : int
        Array columns C (a power of two, at least 2).
    bank_depth : int
        Bytes per bank.
    ports : int
        Read ports (1, 2 or 4, one per row group); each extra port is a full copy of the banks.

    Members
    -------
    rd_addr : In(signed(addr_bits + 2))
        ``n0``, the flat address of column 0 (may be negative when padded).
    rd_stride2 : In(1)
        Columns ``2`` bytes apart instead of 1.
    rd_ok : In(cols)
        Per column: the pixel exists (else the column reads 0).
    rd_data : Out(data.ArrayLayout(signed(8), cols))
        The request's bytes, :data:`READ_LATENCY` cycles later.
    rd_split, rd_jump : In
        Columns ``j >= rd_split`` of every port read ``rd_jump * 2 * cols`` bytes further on
        (``rd_jump = 0``: no split).
    rd2_addr, rd2_ok, rd2_data (and rd3_*, rd4_* with ``ports == 4``)
        Further read ports (same stride): each reads its own copy of the banks, which every
        write updates too (the activations of row groups 1, 2, 3).
    wr_en, wr_addr, wr_mask, wr_data, wr_stride2, wr_split, wr_gap : In
        Write ``wr_data[j]`` to ``wr_addr + j`` (``wr_stride2``: ``wr_addr + 2 * j``; lanes ``j
        >= wr_split``: ``wr_addr + j + wr_gap``, ``wr_gap < cols``, not with ``wr_stride2``) for
        each ``j`` with ``wr_mask`` bit ``j`` set, :data:`WRITE_LATENCY` cycles later (a read
        issued that many cycles after the request sees the new bytes).
    ld_en, ld_addr, ld_data : In
        Loader: write the 4 little-endian bytes of ``ld_data`` to ``4 * ld_addr .. + 3`` (also
        :data:`WRITE_LATENCY` cycles later).

    A read of a bank address written in the same cycle returns undefined data on hardware (the
    banks are marked ``no_rw_check``; simulation returns the old byte). Every read touches all
    ``2 * cols`` banks, but only the bytes of ``ok`` columns are used, and those never collide:
    a layer reads one ping-pong region and writes the other (``hw.layout``), and the loader
    writes only between frames.
    """

    def __init__(self, *, cols: int, bank_depth: int, ports: int = 1):
        if isinstance(cols, bool) or not isinstance(cols, int) or cols < 2 or cols & (cols - 1):
            raise ValueError(f"ActBuffer cols must be a power of two of at least 2, not {cols!r}")
        if isinstance(bank_depth, bool) or not isinstance(bank_depth, int) or bank_depth < 1:
            raise ValueError(f"ActBuffer bank_depth must be a positive integer, not {bank_depth!r}")
        if ports not in (1, 2, 4):
            raise ValueError(f"ActBuffer ports must be 1, 2 or 4, not {ports!r}")
        self._cols, self._depth, self._ports = cols, bank_depth, ports
        self._lb = (2 * cols).bit_length() - 1
        self._abits = flat_addr_bits(cols=cols, bank_depth=bank_depth)
        super().__init__({
            "rd_addr": In(signed(self._abits + 2)), "rd_stride2": In(1), "rd_ok": In(cols),
            "rd_data": Out(data.ArrayLayout(signed(8), cols)),
            "rd_split": In(range(cols + 1)), "rd_jump": In(self._abits - self._lb),
            "wr_en": In(1), "wr_addr": In(self._abits), "wr_mask": In(cols), "wr_stride2": In(1),
            "wr_split": In(range(cols + 1)), "wr_gap": In(range(cols)),
            "wr_data": In(data.ArrayLayout(signed(8), cols)),
            "ld_en": In(1), "ld_addr": In(max(1, self._abits - 2)), "ld_data": In(32),
            **{name: port for p in range(2, ports + 1) for name, port in (
                (f"rd{p}_addr", In(signed(self._abits + 2))), (f"rd{p}_ok", In(cols)),
                (f"rd{p}_data", Out(data.ArrayLayout(signed(8), cols))))},
        })

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def bank_depth(self) -> int:
        return self._depth

    @property
    def addr_bits(self) -> int:
        """Bits of a flat byte address."""
        return self._abits

    def elaborate(self, platform):
        m = Module()
        C, B, lb = self._cols, 2 * self._cols, self._lb

        # Write stage 1 (registered): the request's C lanes spread over the 2C-byte window
        # [n0, n0 + 2C): position p takes lane p (stride 2: lane p / 2 at even p; split: lane
        # p - gap from p >= split + gap on). It depends on the lane rule alone, not on n0, so
        # the lane choice and the address rotation (stage 2) do not share a cycle.
        win_en = Signal()
        win_addr = Signal.like(self.wr_addr)
        win_on = Signal(B)
        win_data = [Signal(8, name=f"wwin{p}", reset_less=True) for p in range(B)]
        m.d.sync += [win_en.eq(self.wr_en), win_addr.eq(self.wr_addr)]
        for p in range(B):
            first = Signal(name=f"wfirst{p}")
            m.d.comb += first.eq(p < self.wr_split)
            e = Signal(range(-C, B), name=f"wgap{p}")     # p - gap
            m.d.comb += e.eq(p - self.wr_gap)
            j = Signal(range(B), name=f"wlane{p}")
            on = Signal(name=f"won{p}")
            if p % 2 == 0:
                m.d.comb += j.eq(Mux(self.wr_stride2, p // 2, Mux(first, p, e)))
            else:
                m.d.comb += j.eq(Mux(first, p, e))
            m.d.comb += on.eq(Mux(self.wr_stride2, p % 2 == 0,
                                  first | ((e >= self.wr_split) & (e < C) & (e >= 0)))
                              & self.wr_mask.bit_select(j[:lb - 1], 1) & (j < C))
            lane = Signal(8, name=f"wbyte{p}")
            with m.Switch(j):
                for jj in range(C):
                    with m.Case(jj):
                        m.d.comb += lane.eq(self.wr_data[jj])
            m.d.sync += [win_on[p].eq(on), win_data[p].eq(lane)]
        # The loader's word, registered too (WRITE_LATENCY for both).
        ld_en = Signal()
        ld_n = Signal(self._abits + 1)
        ld_data = Signal.like(self.ld_data, reset_less=True)
        m.d.sync += [ld_en.eq(self.ld_en), ld_n.eq(self.ld_addr << 2), ld_data.eq(self.ld_data)]
        wr_lo = Signal(lb)
        wr_hi = Signal(self._abits)
        m.d.comb += [wr_lo.eq(win_addr[:lb]), wr_hi.eq(win_addr >> lb)]

        # Write stage 2 (registered): enables and data per bank, shared by every copy. Bank b is
        # d = (b - n0) mod 2C bytes into the window, at bank address n0 div 2C, plus one where
        # the window wraps past bank 2C - 1. The window (byte and enable per position) is
        # rotated by n0 mod 2C in 4-way steps, not chosen 2C ways per bank: each step's outputs
        # serve four of the next step's, so 2 x 2C 4-way choices a bit instead of 2C 2C-way ones
        # (with the read addresses below, 878 fewer LUTs in the ULX3S build).
        wr_hi1 = Signal(self._abits, name="wr_hi1")
        m.d.comb += wr_hi1.eq(wr_hi + 1)
        rotated = _rotate(m, [Cat(win_data[p], win_on[p]) for p in range(B)], wr_lo, "wrot")
        wen, waddr, wdata = [], [], []
        for b in range(B):
            # Loader: 4 consecutive bytes, at most one of which is bank b.
            k = Signal(lb, name=f"lbyte{b}")
            m.d.comb += k.eq(b - ld_n[:lb])
            en, a, v = Signal(name=f"wen{b}"), Signal(self._abits, name=f"wad{b}"), Signal(8, name=f"wd{b}")
            m.d.sync += en.eq(0)
            with m.If(win_en & rotated[b][8]):
                m.d.sync += [en.eq(1), a.eq(Mux(b < wr_lo, wr_hi1, wr_hi)), v.eq(rotated[b][:8])]
            with m.Elif(ld_en & (k < 4)):
                m.d.sync += [en.eq(1), a.eq(ld_n >> lb), v.eq(ld_data.word_select(k[:2], 8))]
            wen.append(en)
            waddr.append(a)
            wdata.append(v)

        self.banks = []   # port 0's banks, for simulation probes
        ports = [(self.rd_addr, self.rd_ok, self.rd_data)]
        for p in range(2, self._ports + 1):
            ports.append((getattr(self, f"rd{p}_addr"), getattr(self, f"rd{p}_ok"),
                          getattr(self, f"rd{p}_data")))
        for p, (rd_addr, rd_ok, rd_data) in enumerate(ports):
            rd_lo = Signal(lb, name=f"rd_lo{p}")
            rd_hi = Signal(signed(self._abits + 2), name=f"rd_hi{p}")
            m.d.comb += [rd_lo.eq(rd_addr[:lb]), rd_hi.eq(rd_addr >> lb)]
            # The four bank addresses a read can use, added once for all banks: the window's
            # row or the next, each with or without the jump (a compare and a three-operand add
            # per bank cost the 8 x 8 core 300 more Artix-7 LUTs).
            bank_bits = max(1, (self._depth - 1).bit_length())
            rows = [Signal(bank_bits, name=f"rrow{p}_{k}") for k in range(4)]
            m.d.comb += [rows[0].eq(rd_hi), rows[1].eq(rd_hi + 1),
                         rows[2].eq(rd_hi + self.rd_jump), rows[3].eq(rd_hi + self.rd_jump + 1)]
            bank_data = []
            for b in range(B):
                # ``no_rw_check``: a read and a write of the same address in one cycle return
                # undefined data, so Yosys maps the bank to a bare DP16KD port pair instead of
                # emulating read-old-data with a write register and a bypass LUT after the
                # block-RAM output (its slowest path). No used byte ever collides: see the class.
                mem = Memory(shape=unsigned(8), depth=self._depth, init=[],
                             attrs={"no_rw_check": 1})
                m.submodules[f"bank{p}_{b}"] = mem
                if p == 0:
                    self.banks.append(mem)
                rp, rdata = registered_read(m, mem, f"bank{p}_{b}")
                raddr = Signal.like(rp.addr, name=f"raddr{p}_{b}", reset_less=True)
                # Bank b serves column (b - n0) mod 2C (stride 2: half that); columns from
                # rd_split on read rd_jump bank rows further.
                dist = Signal(lb, name=f"rdist{p}_{b}")
                m.d.comb += dist.eq(b - rd_lo)
                second = Signal(name=f"rsecond{p}_{b}")
                m.d.comb += second.eq(Mux(self.rd_stride2, dist >> 1, dist) >= self.rd_split)
                m.d.sync += raddr.eq(Array(rows)[Cat(b < rd_lo, second)])
                m.d.comb += rp.addr.eq(raddr)
                bank_data.append(rdata)
                wp = mem.write_port()
                m.d.comb += [wp.en.eq(wen[b]), wp.addr.eq(waddr[b]), wp.data.eq(wdata[b])]
            self._select(m, p, rd_lo, rd_ok, rd_data, bank_data)
        return m

    def _select(self, m, p, rd_lo, rd_ok, rd_data, bank_data):
        C, B, lb = self._cols, 2 * self._cols, self._lb
        # Cycle 0 (with the banks' addresses): each column's bank, registered with the padding
        # flags; cycle 1 (with the read): carried on.
        sel0 = [Signal(lb, name=f"rsel0_{p}_{jj}") for jj in range(C)]
        ok0 = Signal(C, name=f"ok0_{p}")
        m.d.sync += [sel0[jj].eq(rd_lo + Mux(self.rd_stride2, 2 * jj, jj)) for jj in range(C)]
        m.d.sync += ok0.eq(rd_ok)
        sel1 = [Signal(lb, name=f"rsel1_{p}_{jj}") for jj in range(C)]
        ok1 = Signal(C, name=f"ok1_{p}")
        m.d.sync += [sel1[jj].eq(sel0[jj]) for jj in range(C)] + [ok1.eq(ok0)]
        # Cycle 2: the banks' outputs land in a register each (one load: placed by the block);
        # cycle 3: registered again for the column selects; the select and flags follow.
        land = [Signal(8, name=f"rland_{p}_{b}", reset_less=True) for b in range(B)]
        m.d.sync += [land[b].eq(bank_data[b]) for b in range(B)]
        data2 = [Signal(8, name=f"rdata2_{p}_{b}", reset_less=True) for b in range(B)]
        m.d.sync += [data2[b].eq(land[b]) for b in range(B)]
        sel15 = [Signal(lb, name=f"rsel15_{p}_{jj}") for jj in range(C)]
        ok15 = Signal(C, name=f"ok15_{p}")
        m.d.sync += [sel15[jj].eq(sel1[jj]) for jj in range(C)] + [ok15.eq(ok1)]
        sel2 = [Signal(lb, name=f"rsel2_{p}_{jj}") for jj in range(C)]
        ok2 = Signal(C, name=f"ok2_{p}")
        m.d.sync += [sel2[jj].eq(sel15[jj]) for jj in range(C)] + [ok2.eq(ok15)]
        # Cycle 4: pick each column's bank, zero the padding.
        for jj in range(C):
            byte = Signal(8, name=f"rbyte{p}_{jj}", reset_less=True)
            with m.Switch(sel2[jj]):
                for b in range(B):
                    with m.Case(b):
                        m.d.comb += byte.eq(data2[b])
            m.d.sync += rd_data[jj].eq(Mux(ok2[jj], byte, 0))


def _rotate(m, values, amount, name: str) -> list:
    """``out[i] = values[(i - amount) mod n]`` (``n = len(values)``, a power of two) through
    4-way choices on two bits of ``amount`` at a time: each step's outputs feed four of the
    next step's, so fewer multiplexers than an ``n``-way choice per output."""
    n = len(values)
    for lo in range(0, (n - 1).bit_length(), 2):
        bits = amount[lo:lo + 2]
        step = 1 << lo
        nxt = []
        for i in range(n):
            out = Signal(len(values[i]), name=f"{name}{lo // 2}_{i}")
            with m.Switch(bits):
                for k in range(1 << len(bits)):
                    with m.Case(k):
                        m.d.comb += out.eq(values[(i - k * step) % n])
            nxt.append(out)
        values = nxt
    return values
