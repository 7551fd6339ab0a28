"""The CSR_P image of one conv layer, as the engine stores it.

CSR_P (METHOD.md, "Storage formats") keeps one data vector per filter (row of the flattened weight
matrix) and, because rows repeat their supports with period P, the column indices of only P rows.
In the engine those column indices take their most compressed form, the :class:`hw.patterns.PeriodTable`
(P kernel supports, loaded into the circular index buffer), and each filter's data vector holds its
pattern weights in the order the weight streamer replays them::

    for c in 0 .. C_i - 1:
        for tap in table.support(f, c):      # ascending, taps row-major 0 .. k*k - 1
            emit weight[f, c, tap // k, tap % k]

Every pattern position is stored, zero-valued or not: the pattern is pre-defined, so the stream
order never depends on the trained values. Dense layers (3x3 dense, 1x1, FC) use the one-slot
table with every tap (:func:`dense_table`); an FC layer is a 1x1 conv on a 1x1 input.
"""

from __future__ import annotations

import numpy as np

from .patterns import PeriodTable
from .quant import WEIGHT_MIN, WEIGHT_MAX

__all__ = ["ConvCSRP", "dense_table"]


def dense_table(k: int) -> PeriodTable:
    """The one-slot period table of a dense ``k x k`` layer (every tap in the support)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Kernel size k must be a positive integer, not {k!r}")
    return PeriodTable(int(k), (tuple(range(k * k)),))


def _check_count(field, v, layer):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"Layer {layer!r}: {field} must be a positive integer, not {v!r}")
    return int(v)


class ConvCSRP:
    """One conv layer's weights in CSR_P form: a period table plus one data vector per filter.

    Build it with :meth:`from_dense` (or :meth:`from_qlayer`); the constructor takes the stored
    arrays directly and checks that they are consistent with the table.

    Parameters
    ----------
    table : PeriodTable
        The P kernel supports; filter ``f`` at input channel ``c`` uses slot ``(f + c) mod P``.
    c_out, c_in : int
        Filters and input channels.
    values : array_like of int
        All data vectors concatenated, filter 0 first (int8 range).
    layer : str
        Name used in error messages.

    Members
    -------
    table : PeriodTable
        The period table (the index buffer's contents).
    k : int
        Kernel size (``table.k``).
    period : int
        P.
    c_out, c_in : int
        Filters and input channels.
    values : numpy.ndarray
        int8, every filter's data vector concatenated (read-only view).
    row_ptr : numpy.ndarray
        int64 ``[c_out + 1]``: filter ``f``'s data vector is ``values[row_ptr[f]:row_ptr[f + 1]]``
        (the CSR index-pointer vector).
    nnz_per_filter : numpy.ndarray
        int64 ``[c_out]``, the length of each data vector.
    nnz : int
        Total stored weights.
    layer : str
        The layer name.
    """

    def __init__(self, *, table: PeriodTable, c_out: int, c_in: int, values, layer: str = "?"):
        if not isinstance(table, PeriodTable):
            raise ValueError(f"Layer {layer!r}: table must be a hw.patterns.PeriodTable, "
                             f"not {type(table).__name__}")
        self._layer = str(layer)
        self._table = table
        self._c_out = _check_count("c_out", c_out, layer)
        self._c_in = _check_count("c_in", c_in, layer)
        vals = np.asarray(values)
        if vals.dtype == bool or not np.issubdtype(vals.dtype, np.integer) or vals.ndim != 1:
            raise ValueError(f"Layer {layer!r}: values must be a 1-D integer array, not "
                             f"{vals.ndim}-D dtype {vals.dtype}")
        if vals.size and (vals.min() < WEIGHT_MIN or vals.max() > WEIGHT_MAX):
            bad = vals.min() if vals.min() < WEIGHT_MIN else vals.max()
            raise ValueError(f"Layer {layer!r}: weight {int(bad)} is outside the int8 range "
                             f"{WEIGHT_MIN}..{WEIGHT_MAX}")
        slot_nnz = np.array([len(t) for t in table.supports], dtype=np.int64)
        f = np.arange(self._c_out)[:, None]
        c = np.arange(self._c_in)[None, :]
        nnz = slot_nnz[(f + c) % table.period].sum(axis=1)
        if vals.size != nnz.sum():
            raise ValueError(f"Layer {layer!r}: {vals.size} values given but the period table "
                             f"(P = {table.period}) needs {int(nnz.sum())} for {self._c_out} filters "
                             f"x {self._c_in} input channels")
        self._values = vals.astype(np.int8)
        self._values.flags.writeable = False
        self._nnz = nnz
        self._nnz.flags.writeable = False
        self._row_ptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
        self._row_ptr.flags.writeable = False

    @classmethod
    def from_dense(cls, weight, table: PeriodTable, *, layer: str = "?") -> "ConvCSRP":
        """Encode a dense weight tensor ``[C_o, C_i, k, k]`` under ``table``.

        Raises ``ValueError`` when the shape does not fit the table, a weight is outside int8, or
        a weight outside the pattern is non-zero (naming layer, filter, channel, tap and value).
        """
        if not isinstance(table, PeriodTable):
            raise ValueError(f"Layer {layer!r}: table must be a hw.patterns.PeriodTable, "
                             f"not {type(table).__name__}")
        w = np.asarray(weight)
        if w.dtype == bool or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"Layer {layer!r}: weight must hold integers, not dtype {w.dtype}")
        k = table.k
        if w.ndim != 4 or w.shape[2:] != (k, k) or w.shape[0] < 1 or w.shape[1] < 1:
            raise ValueError(f"Layer {layer!r}: weight must have shape [c_out, c_in, {k}, {k}] "
                             f"for the table's k = {k}, not {list(w.shape)}")
        c_out, c_in = w.shape[:2]
        mask = table.mask(c_out, c_in)
        outside = (w != 0) & ~mask
        if outside.any():
            f, c, ky, kx = (int(i) for i in np.argwhere(outside)[0])
            raise ValueError(f"Layer {layer!r}: filter {f}, input channel {c}, tap {ky * k + kx} "
                             f"(row {ky}, column {kx}) holds {int(w[f, c, ky, kx])} but is outside "
                             f"the pattern (slot {table.slot(f, c)} support "
                             f"{list(table.support(f, c))}); pre-defined zeros must be zero")
        # Boolean indexing walks f, c, tap row-major: exactly the canonical CSR_P order.
        return cls(table=table, c_out=c_out, c_in=c_in, values=w[mask], layer=layer)

    @classmethod
    def from_qlayer(cls, qlayer) -> "ConvCSRP":
        """Encode a :class:`hw.qmodel.QLayer` (its ``period_table`` or, when None, :func:`dense_table`)."""
        k = qlayer.k
        if qlayer.period_table is None:
            table = dense_table(k)
        else:
            try:
                table = PeriodTable(k, tuple(tuple(int(t) for t in slot) for slot in qlayer.period_table))
            except (ValueError, TypeError) as e:
                raise ValueError(f"Layer {qlayer.name!r}: bad period_table: {e}") from None
        return cls.from_dense(qlayer.weight, table, layer=qlayer.name)

    @property
    def table(self) -> PeriodTable:
        return self._table

    @property
    def k(self) -> int:
        return self._table.k

    @property
    def period(self) -> int:
        return self._table.period

    @property
    def c_out(self) -> int:
        return self._c_out

    @property
    def c_in(self) -> int:
        return self._c_in

    @property
    def layer(self) -> str:
        return self._layer

    @property
    def values(self) -> np.ndarray:
        return self._values

    @property
    def row_ptr(self) -> np.ndarray:
        return self._row_ptr

    @property
    def nnz_per_filter(self) -> np.ndarray:
        return self._nnz

    @property
    def nnz(self) -> int:
        return int(self._row_ptr[-1])

    def _check_filter(self, f):
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < self._c_out:
            raise ValueError(f"Layer {self._layer!r}: filter must be in 0..{self._c_out - 1}, not {f!r}")
        return int(f)

    def data(self, f: int) -> np.ndarray:
        """Filter ``f``'s data vector (int8, read-only), in :meth:`taps` order."""
        f = self._check_filter(f)
        return self._values[self._row_ptr[f]:self._row_ptr[f + 1]]

    def taps(self, f: int) -> list:
        """Filter ``f``'s ``(c, tap)`` sequence: the input channel and tap of each data-vector entry."""
        f = self._check_filter(f)
        return [(c, t) for c in range(self._c_in) for t in self._table.support(f, c)]

    def tap_arrays(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`taps` as two int64 arrays ``(channels, taps)``; shared by filters ``f mod P``."""
        f = self._check_filter(f)
        # Filter f's row of the mask, walked row-major (c, then tap): the canonical order.
        slots = (f + np.arange(self._c_in)) % self.period
        c, t = np.nonzero(self._slot_masks()[slots])
        return c.astype(np.int64), t.astype(np.int64)

    def _slot_masks(self):
        m = np.zeros((self.period, self.k * self.k), dtype=bool)
        for s, taps in enumerate(self._table.supports):
            m[s, list(taps)] = True
        return m

    def to_dense(self) -> np.ndarray:
        """The int8 weight tensor ``[c_out, c_in, k, k]`` (zeros outside the pattern)."""
        mask = self._table.mask(self._c_out, self._c_in)
        w = np.zeros(mask.shape, dtype=np.int8)
        w[mask] = self._values
        return w

    def __repr__(self):
        return (f"ConvCSRP(layer={self._layer!r}, c_out={self._c_out}, c_in={self._c_in}, "
                f"k={self.k}, period={self.period}, nnz={self.nnz})")
