"""The loader's check of the layer descriptors: each word in its field's range as it is written.

A LOAD_IMAGE whose CRC is good may still carry a layer the engine cannot run: a field wider than
its 24-bit register, a ``k`` of 2, a period past ``p_max``, a table window past the table memory.
The sequencer would run it anyway, cutting the field or falling outside its cases. This
component watches the descriptor write port and keeps one sticky flag: every layer word written
since the last ``unload`` lies inside :func:`hw.descriptors.layer_limits` and the pairs of
:data:`hw.descriptors.LAYER_FIELD_PAIRS` (``rem < period``, ``table_base + period <= table_depth``,
``param_base + c_out <= param_depth``) and ``q * period + rem == c_out``
(:func:`hw.descriptors.split_matches`). The sequencer adds it, and :attr:`words` (the section's
extent, which must hold a whole descriptor per layer), to its ``model_ok``; the link layer then
refuses the image with BAD_MODEL (:func:`hw.descriptors.check_descriptors` is the same check in Python).

The limits are constants of the configuration: a small table by field index (a LUT ROM), one
compare against the data; the one product, ``q * period``, has a factor of at most ``p_max``'s
bits and is built from shifts and adds. A pair compares with the earlier field of the same
descriptor, kept in a register when it is written: the link writes a section's words in address
order, and the check assumes that order.
"""

from amaranth import Module, Signal, Array, Const, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.descriptors import (LAYER_FIELDS, LAYER_FIELD_PAIRS, DESC_HEADER_WORDS, DESC_LAYER_WORDS,
                            ENUM_LIMIT, layer_limits)

__all__ = ["DescriptorCheck", "CHECK_LATENCY"]

#: Cycles from a write to :attr:`DescriptorCheck.ok` and :attr:`DescriptorCheck.words`: the
#: write's register, the verdict's, then the flags'.
CHECK_LATENCY = 3


class DescriptorCheck(wiring.Component):
    """Sticky range check of the layer words written to the descriptor memory.

    Parameters (keyword-only)
    -------------------------
    config : hw.array.ArrayConfig
        The engine's configuration (its depths give the ranges).

    Members
    -------
    we, addr, data : In
        The descriptor memory's write port (words in address order).
    unload : In(1)
        A new image begins: forget what was written.
    ok : Out(1)
        Every layer word written since ``unload`` is in range (:data:`CHECK_LATENCY` cycles
        after the write: the write is registered, then checked).
    words : Out
        The extent of what was written since ``unload``: the highest address plus one
        (:data:`CHECK_LATENCY` cycles after the write).
    """

    def __init__(self, *, config):
        from hw.array import ArrayConfig
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"DescriptorCheck config must be an ArrayConfig, not {config!r}")
        self._cfg = config
        depth = DESC_HEADER_WORDS + DESC_LAYER_WORDS * config.max_layers
        super().__init__({
            "we": In(1), "addr": In(range(depth)), "data": In(32), "unload": In(1),
            "ok": Out(1), "words": Out(range(depth + 1)),
        })

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        # The write, registered before it is checked: the field's limit lookup, its compare
        # and the flag's enable behind the load word's address register were the ULX3S
        # critical path (98.5 MHz at eecf446). An unload drops a write of its own cycle, as
        # before.
        we, addr, data = Signal(), Signal.like(self.addr), Signal.like(self.data)
        m.d.sync += [we.eq(self.we & ~self.unload), addr.eq(self.addr), data.eq(self.data)]
        # A layer word's field is the low bits of its address.
        fbits = (DESC_LAYER_WORDS - 1).bit_length()
        assert DESC_LAYER_WORDS == len(LAYER_FIELDS) == 1 << fbits
        assert DESC_HEADER_WORDS % DESC_LAYER_WORDS == 0
        lim = layer_limits(cfg)
        assert all(v.lo in (0, 1) for v in lim.values())
        field = addr[:fbits]
        range_ok = Signal(init=1)         # every layer word in its range (and the pairs)

        # Per field: its largest value, whether 0 is refused, and for a choice field the allowed
        # values below ENUM_LIMIT (all of them for a span, whose ``hi`` then decides).
        hi_bits = max(v.hi for v in lim.values()).bit_length()
        his = Array(Const(v.hi, hi_bits) for v in lim.values())
        no_zero = Array(Const(v.lo > 0, 1) for v in lim.values())
        allowed = Array(Const(sum(1 << x for x in (v.values or range(ENUM_LIMIT))), ENUM_LIMIT)
                        for v in lim.values())

        # The pairs: the earlier field's value, kept when it is written, bounds the later one.
        depths = cfg.as_dict()
        pair_hi = {}
        for name, (other, mem) in LAYER_FIELD_PAIRS.items():
            kept = Signal(hi_bits + 1, name=f"{name}_hi")
            with m.If(we & (field == LAYER_FIELDS.index(other))):
                # ``other`` is itself checked; out of its range the image is refused anyway.
                m.d.sync += kept.eq(depths[mem] - data if mem else data - 1)
            pair_hi[LAYER_FIELDS.index(name)] = kept

        # q and rem split c_out by period (``hw.descriptors.split_matches``): c_out and period kept
        # when written, q * period registered when q is written (a small product: period has
        # at most p_max's bits, and a q past its range is refused anyway), and the verdict on
        # rem's write kept in a flag of its own, so that its add and compare do not sit behind
        # the field decode in front of the range flag (an ULX3S critical path, 91.9 MHz).
        f_c_out, f_period, f_q, f_rem = (LAYER_FIELDS.index(n) for n in ("c_out", "period", "q", "rem"))
        assert f_c_out < f_period < f_q < f_rem
        c_out_kept = Signal(lim["c_out"].hi.bit_length(), name="c_out_kept")
        period_kept = Signal(cfg.p_max.bit_length(), name="period_kept")
        q_low = data[:len(c_out_kept) + 1]
        qp = Signal(len(q_low) + len(period_kept), name="q_period")
        q_fits = Signal(name="q_fits")
        with m.If(we & (field == f_c_out)):
            m.d.sync += c_out_kept.eq(data)
        with m.If(we & (field == f_period)):
            m.d.sync += period_kept.eq(data)
        # The product as shifted copies of q added in a balanced tree, in LUTs and carry chains:
        # as a multiplier block it sat a long route away from the data register (the ULX3S
        # critical path at 99.8 MHz, session 13).
        terms = [Mux(period_kept[b], q_low << b, 0) for b in range(len(period_kept))]
        while len(terms) > 1:
            terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) & ~1:]
        with m.If(we & (field == f_q)):
            m.d.sync += [qp.eq(terms[0]), q_fits.eq(data[len(q_low):] == 0)]
        split_ok = Signal(init=1)
        m.d.comb += self.ok.eq(range_ok & split_ok)

        hi = Signal(hi_bits + 1)
        m.d.comb += hi.eq(his[field])
        for index, kept in pair_hi.items():
            with m.If(field == index):
                # A negative ``kept`` (its top bit) refuses every value.
                m.d.comb += hi.eq(kept)
        small = data < ENUM_LIMIT
        value_bit = allowed[field].bit_select(data[:(ENUM_LIMIT - 1).bit_length()], 1)
        bad = Signal()
        m.d.comb += bad.eq((data > hi[:hi_bits]) | hi[hi_bits]
                           | (no_zero[field] & (data == 0)) | (small & ~value_bit))

        layer_word = addr >= DESC_HEADER_WORDS
        rem_low = data[:len(period_kept)]
        split_bad = Signal()
        m.d.comb += split_bad.eq(~q_fits | (qp + rem_low != c_out_kept)
                                 | (data[len(rem_low):] != 0))
        # The verdict registered before the flags: the limit lookup, the 32-bit compare and the
        # flag's enable in one cycle were the ULX3S critical path on the build's seed at
        # 904388a (103.1 MHz) and the sequencer's alone. An unload drops what is in flight.
        v_we, v_end = Signal(), Signal.like(self.words)
        v_range_bad, v_split_bad = Signal(), Signal()
        m.d.sync += [v_we.eq(we & ~self.unload), v_end.eq(addr + 1),
                     v_range_bad.eq(layer_word & bad),
                     v_split_bad.eq(layer_word & (field == f_rem) & split_bad)]
        with m.If(self.unload):
            m.d.sync += [range_ok.eq(1), split_ok.eq(1), self.words.eq(0)]
        with m.Elif(v_we):
            with m.If(v_range_bad):
                m.d.sync += range_ok.eq(0)
            with m.If(v_split_bad):
                m.d.sync += split_ok.eq(0)
            with m.If(v_end > self.words):
                m.d.sync += self.words.eq(v_end)
        return m
