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
"""

from amaranth import Module, Signal, Mux, signed
from amaranth.lib import wiring, data
from amaranth.lib.wiring import In, Out

from hw.quant import ACC_BITS

__all__ = ["SystolicArray", "ARRAY_LATENCY"]


def ARRAY_LATENCY(rows: int, cols: int) -> int:
    """Cycles from a tile's ``last`` step at the inputs to :attr:`out_first` of its drain."""
    return rows + cols + 4


class SystolicArray(wiring.Component):
    """Output-stationary ``rows x cols`` int8 MAC array with skewed injection and a drain chain.

    Parameters (keyword-only)
    -------------------------
    rows, cols : int
        Array size.
    groups : int
        Row-group injection points (1, 2 or 4; default 2 when ``rows >= 2``): with ``G`` groups
        row ``k * rows / G`` (``k = 1 .. G-1``) can take its activations from input ``a{k+1}``.

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
    """

    def __init__(self, *, rows: int, cols: int, groups: int | None = None):
        for name, v in (("rows", rows), ("cols", cols)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SystolicArray {name} must be a positive integer, not {v!r}")
        if groups is None:
            groups = 2 if rows >= 2 else 1
        if groups not in (1, 2, 4) or groups > rows:
            raise ValueError(f"SystolicArray groups must be 1, 2 or 4 and at most rows ({rows}), "
                             f"not {groups!r}")
        self._rows, self._cols, self._groups = rows, cols, groups
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

    def elaborate(self, platform):
        m = Module()
        R, C = self._rows, self._cols
        ctl = data.StructLayout({"valid": 1, "first": 1, "last": 1})

        def delayed(sig, n, name):
            for k in range(n):
                nxt = Signal.like(sig, name=f"{name}_d{k}")
                m.d.sync += nxt.eq(sig)
                sig = nxt
            return sig

        step = Signal(ctl)
        m.d.comb += [step.valid.eq(self.valid), step.first.eq(self.first), step.last.eq(self.last)]
        # Skewed injection: row i (weights and control) i cycles late, column j j cycles late.
        w_in = [delayed(self.w[i], i, f"wskew{i}") for i in range(R)]
        c_in = [delayed(step, i, f"cskew{i}") for i in range(R)]
        a_in = [delayed(self.a[j], j, f"askew{j}") for j in range(C)]
        G = self._groups
        # Group k's injection at row k * R / G: delayed by that row + j so that it meets its
        # skewed weights.
        inject = {}
        for k in range(1, G):
            h = k * R // G
            src = getattr(self, f"a{k + 1}")
            inject[h] = (k - 1, [delayed(src[j], h + j, f"a{k + 1}skew{j}") for j in range(C)])

        res = [[None] * C for _ in range(R)]
        cap = [[None] * C for _ in range(R)]
        for i in range(R):
            w_left, c_left = w_in[i], c_in[i]
            for j in range(C):
                if i == 0:
                    a_top = a_in[j]
                elif i in inject:
                    bit, a_k = inject[i]
                    a_top = Mux(self.split[bit], a_k[j], a_q[j])
                else:
                    a_top = a_q[j]
                w_q = Signal(signed(8), name=f"w_{i}_{j}")
                c_q = Signal(ctl, name=f"c_{i}_{j}")
                aq = Signal(signed(8), name=f"a_{i}_{j}")
                m.d.sync += [w_q.eq(w_left), c_q.eq(c_left), aq.eq(a_top)]
                # The multiplier's own input registers (copies of the systolic ones).
                wm = Signal(signed(8), name=f"wm_{i}_{j}")
                am = Signal(signed(8), name=f"am_{i}_{j}")
                c1 = Signal(ctl, name=f"c1_{i}_{j}")
                m.d.sync += [wm.eq(w_q), am.eq(aq), c1.eq(c_q)]
                prod = Signal(signed(16), name=f"p_{i}_{j}")
                c2 = Signal(ctl, name=f"c2_{i}_{j}")
                m.d.sync += [prod.eq(wm * am), c2.eq(c1)]
                acc = Signal(signed(ACC_BITS), name=f"acc_{i}_{j}")
                r = Signal(signed(ACC_BITS), name=f"res_{i}_{j}")
                cp = Signal(name=f"cap_{i}_{j}")
                total = Signal(signed(ACC_BITS), name=f"sum_{i}_{j}")
                m.d.comb += total.eq(Mux(c2.first, 0, acc) + prod)
                m.d.sync += cp.eq(c2.valid & c2.last)
                with m.If(c2.valid):
                    m.d.sync += acc.eq(total)
                    with m.If(c2.last):
                        m.d.sync += r.eq(total)
                res[i][j], cap[i][j] = r, cp
                w_left, c_left = w_q, c_q
                if j == 0:
                    a_row = []
                a_row.append(aq)
            a_q = a_row

        # Drain chains: column j loads when its bottom PE has captured, then shifts down.
        outs, valids = [], []
        for j in range(C):
            dr = [Signal(signed(ACC_BITS), name=f"dr_{i}_{j}") for i in range(R)]
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
            outs.append(delayed(dr[R - 1], C - 1 - j, f"deskew{j}"))
            if j == C - 1:
                valids = (dv[R - 1], df[R - 1])
        for j in range(C):
            m.d.sync += self.out_data[j].eq(outs[j])
        m.d.sync += [self.out_valid.eq(valids[0]), self.out_first.eq(valids[0] & valids[1])]
        return m
