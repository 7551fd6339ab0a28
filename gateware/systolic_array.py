"""The R x C output-stationary systolic MAC array.

Rows hold filters of one rotation class, columns hold output pixels. One *step* (one non-zero
position of the class's shared tap sequence) enters per cycle: ``w[i]`` is row ``i``'s weight,
``a[j]`` column ``j``'s activation, all aligned; the array skews them itself (row ``i`` delayed
``i`` cycles, column ``j`` delayed ``j``) so that weights move right and activations move down
through registers only, and PE ``(i, j)`` sees step ``t`` at cycle ``t + i + j``.

Each PE multiplies (its operands copied into their own registers, then a registered 8 x 8
product: the multiplier sits between two registers of its own, not on the systolic paths), then
accumulates into a 32-bit accumulator that
``first`` clears; ``last`` copies the final sum into a result register. When the bottom PE of a
column has captured, the column's results load into a drain chain that shifts down one row per
cycle; the columns are then deskewed so that :attr:`out_data` carries one filter row (all C
pixels) per cycle, rows ``R-1`` first. Draining takes R cycles and overlaps the next tile, so
consecutive ``last`` steps must be at least R cycles apart (the sequencer holds them).

Pair packing (:attr:`SystolicArray.pack_pairs`, the default except on Lattice parts): the PEs of
columns ``2p`` and ``2p + 1`` of a row share one multiplier. Column ``2p + 1``'s activations are
injected one cycle early, so that they reach the pair together with column ``2p``'s, and both
use the even PE's weight register (the odd PE would have seen the same weight a cycle later).
The pair multiplies ``w * (a_odd * 2**16 + a_even) + 2**15``: a 25 x 8 signed product, one
DSP48E1 (25 x 18) with the constant in its post-adder. Since ``|w * a| <= 2**14`` the biased low
half ``w * a_even + 2**15`` lies in ``[0, 2**16)``: it never borrows from the high half, so the
odd product is bits 16..31 as they are and the even one is bits 0..15 with bit 15 inverted
(minus the bias). The odd product gets one more register, so each PE accumulates at exactly the
cycle it does unpacked: accumulators, drain, deskew and :func:`ARRAY_LATENCY` are unchanged.
"""

from amaranth import Module, Signal, Mux, Cat, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from hw.quant import ACC_BITS
from .multiplier import RegisteredMultiplier
from .pipeline import delayed

__all__ = ["SystolicArray", "ARRAY_LATENCY"]


def ARRAY_LATENCY(rows: int, cols: int) -> int:
    """Cycles from a tile's ``last`` step at the inputs to :attr:`out_first` of its drain."""
    return rows + cols + 4


def _platform_packs_pairs(platform) -> bool:
    """Whether pair packing pays on ``platform``: not on Lattice parts, whose multipliers
    (ECP5 18 x 18, iCE40 16 x 16) would need two blocks for the 25-bit packed operand."""
    from amaranth.vendor import LatticePlatform, LatticeICE40Platform
    return not isinstance(platform, (LatticePlatform, LatticeICE40Platform))


class SystolicArray(wiring.Component):
    """Output-stationary ``rows x cols`` int8 MAC array with skewed injection and a drain chain.

    Parameters (keyword-only)
    -------------------------
    rows, cols : int
        Array size.
    groups : int
        Row-group injection points (1, 2 or 4; default 2 when ``rows >= 2``): with ``G`` groups
        row ``k * rows / G`` (``k = 1 .. G-1``) can take its activations from input ``a{k+1}``.
    pack_pairs : bool or None
        Two PEs (columns ``2p``, ``2p + 1`` of a row) share one multiplier (see the module
        docstring); with an odd ``cols`` the last column has its own. None (default) decides
        from the platform at elaboration: False on Lattice platforms (ECP5's 18 x 18 multiplier
        cannot take the 25-bit packed operand), True otherwise, also with no platform
        (simulation, Verilog conversion). The outputs and their timing are the same either way.

    Members
    -------
    valid, first, last : In(1)
        The step at the inputs is real; it is the first / last step of a tile.
    w : In(data.ArrayLayout(signed(8), rows))
        Weights of the step, one per row.
    a : In(data.ArrayLayout(signed(8), cols))
        Activations of the step, one per column.
    a2 .. a{G}, split : In (groups >= 2)
        With bit ``k-1`` of ``split`` high the rows from ``k * rows / G`` take their activations
        from ``a{k+1}`` instead of from the row above: row groups computing the same filters for
        different pixel sets (``split`` must only change between tiles). With two groups this is
        ``a2`` at row ``rows / 2`` and a one-bit ``split``.
    out_valid : Out(1)
        :attr:`out_data` holds one row's results.
    out_first : Out(1)
        First drained row of a tile (row ``rows - 1``).
    out_data : Out(data.ArrayLayout(signed(ACC_BITS), cols))
        The accumulators of one row, column 0 first.
    rows, cols, groups : int
        The array size and row-group count (read-only).
    pack_pairs : bool or None
        The ``pack_pairs`` parameter (read-only; None: decided by the platform).
    """

    def __init__(self, *, rows: int, cols: int, groups: int | None = None,
                 pack_pairs: bool | None = None):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SystolicArray {name} must be a positive integer, not {v!r}")
        if groups is None:
            groups = 2 if rows >= 2 else 1
        if groups not in (1, 2, 4) or groups > rows:
            raise ValueError(f"SystolicArray groups must be 1, 2 or 4 and at most rows ({rows}), "
                             f"not {groups!r}")
        if pack_pairs is not None and not isinstance(pack_pairs, bool):
            raise TypeError(f"SystolicArray pack_pairs must be a bool or None, not {pack_pairs!r}")
        self._rows, self._cols, self._groups = rows, cols, groups
        self._pack_pairs = pack_pairs
        extra = {f"a{k + 1}": In(data.ArrayLayout(signed(8), cols)) for k in range(1, groups)}
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1),
            "w": In(data.ArrayLayout(signed(8), rows)),
            "a": In(data.ArrayLayout(signed(8), cols)),
            **(dict(extra, split=In(groups - 1)) if groups >= 2 else {}),
            "out_valid": Out(1), "out_first": Out(1),
            "out_data": Out(data.ArrayLayout(signed(ACC_BITS), cols)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def groups(self) -> int:
        return self._groups

    @property
    def pack_pairs(self) -> bool | None:
        return self._pack_pairs

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        ctl = data.StructLayout({"valid": 1, "first": 1, "last": 1})

        pack = self._pack_pairs
        if pack is None:
            pack = _platform_packs_pairs(platform)
        # Columns that borrow the multiplier of the column to their left.
        odd = [pack and j % 2 == 1 for j in range(C)]

        step = Signal(ctl)
        m.d.comb += [step.valid.eq(self.valid), step.first.eq(self.first), step.last.eq(self.last)]
        # Skewed injection: row i (weights and control) i cycles late, column j j cycles late
        # (an odd packed column one cycle less, to meet its pair's weight register).
        w_in = [delayed(m, self.w[i], i, f"wskew{i}", reset_less=True) for i in range(R)]
        c_in = [delayed(m, step, i, f"cskew{i}") for i in range(R)]
        a_in = [delayed(m, self.a[j], j - odd[j], f"askew{j}", reset_less=True) for j in range(C)]
        G = self._groups
        # Group k's injection at row k * R / G: delayed by that row + j so that it meets its
        # skewed weights.
        inject = {}
        for k in range(1, G):
            h = k * R // G
            src = getattr(self, f"a{k + 1}")
            inject[h] = (k - 1, [delayed(m, src[j], h + j - odd[j], f"a{k + 1}skew{j}",
                                         reset_less=True)
                                 for j in range(C)])

        res = [[None] * C for _ in range(R)]
        cap = [[None] * C for _ in range(R)]
        for i in range(R):
            # The systolic registers: PE (i, j) sees step t at cycle t + i + j (odd packed
            # columns: their activation at t + i + j - 1).
            w_row, c_row, a_row = [], [], []
            w_left, c_left = w_in[i], c_in[i]
            for j in range(C):
                if i == 0:
                    a_top = a_in[j]
                elif i in inject:
                    bit, a_k = inject[i]
                    a_top = Mux(self.split[bit], a_k[j], a_q[j])
                else:
                    a_top = a_q[j]
                w_q = Signal(signed(8), name=f"w_{i}_{j}", reset_less=True)
                c_q = Signal(ctl, name=f"c_{i}_{j}")
                aq = Signal(signed(8), name=f"a_{i}_{j}", reset_less=True)
                m.d.sync += [w_q.eq(w_left), c_q.eq(c_left), aq.eq(a_top)]
                w_row.append(w_q)
                c_row.append(c_q)
                a_row.append(aq)
                w_left, c_left = w_q, c_q
            a_q = a_row

            # The multipliers, each between its own input registers (copies of the systolic
            # ones) and its product register: prods[j] holds PE (i, j)'s product of step t at
            # cycle t + i + j + 3.
            prods = [None] * C
            for j in range(C):
                if odd[j]:
                    continue
                if j + 1 < C and odd[j + 1]:
                    wm = Signal(signed(8), name=f"wm_{i}_{j}", reset_less=True)
                    m.d.sync += wm.eq(w_row[j])
                    # Registering the packed sum keeps the adder out of the multiplier's path.
                    am = Signal(signed(25), name=f"am_{i}_{j}", reset_less=True)
                    m.d.sync += am.eq((a_row[j + 1] << 16) + a_row[j])
                    pp = Signal(signed(32), name=f"pp_{i}_{j}", reset_less=True)
                    m.d.sync += pp.eq(wm * am + (1 << 15))
                    prods[j] = Cat(pp[:15], ~pp[15]).as_signed()
                    # The odd PE accumulates one cycle later, as it would unpacked.
                    p_odd = Signal(signed(16), name=f"p_{i}_{j + 1}", reset_less=True)
                    m.d.sync += p_odd.eq(pp[16:32])
                    prods[j + 1] = p_odd
                else:
                    mul = RegisteredMultiplier(a_shape=signed(8), b_shape=signed(8))
                    m.submodules[f"mul_{i}_{j}"] = mul
                    m.d.comb += [mul.a.eq(w_row[j]), mul.b.eq(a_row[j])]
                    prods[j] = mul.p

            for j in range(C):
                c1 = Signal(ctl, name=f"c1_{i}_{j}")
                c2 = Signal(ctl, name=f"c2_{i}_{j}")
                m.d.sync += [c1.eq(c_row[j]), c2.eq(c1)]
                acc = Signal(signed(ACC_BITS), name=f"acc_{i}_{j}", reset_less=True)
                r = Signal(signed(ACC_BITS), name=f"res_{i}_{j}", reset_less=True)
                cp = Signal(name=f"cap_{i}_{j}")
                total = Signal(signed(ACC_BITS), name=f"sum_{i}_{j}")
                m.d.comb += total.eq(Mux(c2.first, 0, acc) + prods[j])
                m.d.sync += cp.eq(c2.valid & c2.last)
                with m.If(c2.valid):
                    m.d.sync += acc.eq(total)
                    with m.If(c2.last):
                        m.d.sync += r.eq(total)
                res[i][j], cap[i][j] = r, cp

        # Drain chains: column j loads when its bottom PE has captured, then shifts down.
        outs, valids = [], []
        for j in range(C):
            dr = [Signal(signed(ACC_BITS), name=f"dr_{i}_{j}", reset_less=True) for i in range(R)]
            dv = [Signal(name=f"dv_{i}_{j}") for i in range(R)]
            df = [Signal(name=f"df_{i}_{j}") for i in range(R)]
            with m.If(cap[R - 1][j]):
                for i in range(R):
                    m.d.sync += [dr[i].eq(res[i][j]), dv[i].eq(1), df[i].eq(i == R - 1)]
            with m.Else():
                for i in range(R):
                    if i == 0:
                        m.d.sync += [dv[0].eq(0), df[0].eq(0)]
                    else:
                        m.d.sync += [dr[i].eq(dr[i - 1]), dv[i].eq(dv[i - 1]), df[i].eq(df[i - 1])]
            # Deskew: column j is C-1-j cycles ahead of the last column.
            outs.append(delayed(m, dr[R - 1], C - 1 - j, f"deskew{j}", reset_less=True))
            if j == C - 1:
                valids = (dv[R - 1], df[R - 1])
        for j in range(C):
            m.d.sync += self.out_data[j].eq(outs[j])
        m.d.sync += [self.out_valid.eq(valids[0]), self.out_first.eq(valids[0] & valids[1])]
        return m
