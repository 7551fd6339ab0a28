"""Proofs (yowasp-sby + Yices) of the engine's stream handshakes and index bounds.

Every stream interface of every component obeys the valid/ready rules (see
:mod:`gateware.formal`): proved for all time by k-induction, for any input sequence, with the
component's input streams assumed to obey the same rules. Components are proved as they exist:
a module that is not in the tree yet is skipped with its name.
"""

import importlib

import pytest
from amaranth import Fragment, Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gateware.interfaces import CoreSignature
from gateware.formal import (free_inputs, free_outputs, internal_signal, prove, solver_missing,
                             stream_harness, stream_ports)

pytestmark = pytest.mark.formal

_MISSING = solver_missing()
needs_solver = pytest.mark.skipif(_MISSING is not None, reason=f"formal tools: {_MISSING}")


class _Skid(wiring.Component):
    """A one-entry register slice; ``bug`` loads a new beat even while the output is stalled."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, *, bug=False):
        self._bug = bug
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        take = ~self.o.valid | self.o.ready
        with m.If(take | self._bug):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        m.d.comb += self.i.ready.eq(take)
        return m


class _Flush(wiring.Component):
    """A register slice whose ``abort`` (or, with ``name``, another input) empties it."""

    def __init__(self, *, name="abort"):
        self._name = name
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)),
                          name: In(1)})

    def elaborate(self, platform):
        m = Module()
        take = ~self.o.valid | self.o.ready
        with m.If(take):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.If(getattr(self, self._name)):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.i.ready.eq(take)
        return m


def _component(module, factory):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not in the tree yet ({exc})")
    return factory(mod)


def _small_config():
    # The smallest engine ArrayConfig allows: memories stay tiny so BMC takes seconds.
    from hw.array import ArrayConfig
    return ArrayConfig(rows=2, cols=2, p_max=2, weight_depth=16, table_depth=16, param_depth=16,
                       act_depth=64, max_layers=2)


# (id, module, factory): the components that drive a stream (UartTx only takes one, whose rule
# is its producer's). Each proof takes seconds.
COMPONENTS = [
    ("uart_rx", "gateware.uart", lambda mod: mod.UartRx(divisor=4)),
    ("link", "gateware.link", lambda mod: mod.Link(timeout=8)),
    ("sequencer", "gateware.sequencer",
     lambda mod: mod.Sequencer(config=_small_config(), act_addr_bits=7)),
    ("core", "gateware.core", lambda mod: mod.Core(config=_small_config())),
    ("linked_engine", "gateware.top", lambda mod: mod.LinkedEngine(config=_small_config())),
]

#: The induction length of the stream proofs: the rules are inductive in the components' own
#: registers (each source loads a beat only while none is on offer), so a few cycles do. A
#: bounded check never reached a result beat of the core in the 12 cycles it could afford (the
#: sequencer's first comes at cycle 47: the descriptors, a tile, its drain, the readout's
#: latency). The sequencer's tile tags are an always-ready stream; declared as an ordinary one,
#: its proof fails (the tag is a one-cycle pulse).
INDUCTION_K = 4


class _Host(wiring.Component):
    """Drives a nested, flipped CoreSignature the way the link layer does."""

    core: In(CoreSignature())

    def elaborate(self, platform):
        return Module()


def test_stream_ports_direction():
    # The walker must see through flipped nested signatures (Link's `core` is In(CoreSignature)):
    # the host drives `core.load` and receives `core.result`.
    skid, host = _Skid(), _Host()
    skid._MustUse__silence = host._MustUse__silence = True  # inspected, never elaborated
    assert {p.path: p.source for p in stream_ports(skid)} == {"i": False, "o": True}
    assert {p.path: p.source for p in stream_ports(host)} == {"core.load": True,
                                                              "core.result": False}


@needs_solver
def test_harness_catches_a_broken_stream(tmp_path):
    # The property must be able to fail: a slice that overwrites a stalled beat is caught,
    # the correct one passes, and cover shows beats get through under the assumptions.
    good = prove(stream_harness(_Skid()), depth=6, work_dir=tmp_path / "good", cover=True)
    assert good.passed, good.log
    bad = prove(stream_harness(_Skid(bug=True)), depth=6, work_dir=tmp_path / "bad")
    assert not bad.passed and bad.status["bmc"] == "FAIL", bad.log


@needs_solver
def test_harness_releases_the_rules_on_abort(tmp_path):
    # A beat withdrawn by ``abort`` (the core's, as by a reset) is allowed; the same withdrawal
    # by any other input is caught.
    good = prove(stream_harness(_Flush()), depth=6, work_dir=tmp_path / "abort", cover=True)
    assert good.passed, good.log
    bad = prove(stream_harness(_Flush(name="flush")), depth=6, work_dir=tmp_path / "flush")
    assert not bad.passed and bad.status["bmc"] == "FAIL", bad.log


@needs_solver
def test_induction_catches_a_broken_stream(tmp_path):
    # The proof for all time fails where a stalled beat can be overwritten, and passes without.
    good = prove(stream_harness(_Skid(), cover=False), depth=INDUCTION_K, work_dir=tmp_path / "g",
                 unbounded=True)
    assert good.passed, good.log
    bad = prove(stream_harness(_Skid(bug=True), cover=False), depth=INDUCTION_K,
                work_dir=tmp_path / "b", unbounded=True)
    assert not bad.passed, bad.log


@needs_solver
@pytest.mark.parametrize("module,factory", [c[1:] for c in COMPONENTS],
                         ids=[c[0] for c in COMPONENTS])
def test_streams_obey_valid_ready(module, factory, tmp_path):
    """Every stream the component drives obeys the rules in every reachable state."""
    component = _component(module, factory)
    result = prove(stream_harness(component, cover=False), depth=INDUCTION_K, work_dir=tmp_path,
                   unbounded=True)
    assert result.passed, f"{module}: {result.status}\n{result.log}"


def _history(m, signal, cycles):
    """``[signal, signal 1 cycle ago, ..., signal `cycles` cycles ago]``: a shadow shift register
    in ``m``."""
    ago = [signal]
    for i in range(1, cycles + 1):
        reg = Signal(name=f"{signal.name}_ago{i}")
        m.d.sync += reg.eq(ago[-1])
        ago.append(reg)
    return ago


def _assert_spaced(m, ago, spacing):
    """Assert in ``m`` that the pulse whose history is ``ago`` (:func:`_history`) never comes
    within ``spacing - 1`` cycles of the last."""
    with m.If(ago[0]):
        m.d.comb += Assert(sum(ago[1:spacing]) == 0, "tags closer than max(rows, 2) cycles")


def _tag_fifo_harness(core):
    """``core`` with free inputs (:func:`free_inputs`: any value every cycle, the streams' rules
    not even assumed), with the bookkeeping of its tile-tag FIFO stated for k-induction: a
    shadow shift register of the pushes; every pop is the push exactly ``TAG_LATENCY`` cycles
    before; the FIFO's level is the number of pushes in those cycles (none lost, none read
    twice); pushes come at least ``max(rows, 2)`` cycles apart; and no push meets a full FIFO.
    Since the tag stream is always ready, the last is what makes dropping ``ready`` safe.
    Returns ``(module, TAG_LATENCY)``."""
    from gateware.core import TAG_LATENCY
    top = Module()
    top.submodules.h = frag = Fragment.get(free_inputs(core), None)
    # The FIFO's ports (the core's only FIFO): found by name, no port added for the proof.
    push, room = internal_signal(frag, "w_en"), internal_signal(frag, "w_rdy")
    pop, level = internal_signal(frag, "r_en"), internal_signal(frag, "level")
    latency = TAG_LATENCY(core.config.rows, core.config.cols)
    ago = _history(top, push, latency)
    top.d.comb += [Assert(pop == ago[latency], "a pop is not the push TAG_LATENCY cycles before"),
                   Assert(level == sum(ago[1:]), "the level is not the pushes in flight"),
                   Assert(~(push & ~room), "a tag is pushed into a full FIFO")]
    _assert_spaced(top, ago, max(core.config.rows, 2))
    return top, latency


@needs_solver
def test_tile_tags_fit_their_fifo(tmp_path):
    """The core's tile-tag FIFO never overflows, for all time (k-induction on a 2 x 2 engine,
    k = TAG_LATENCY + 4 so that the shadow pushes are the trace's own)."""
    from gateware.core import Core
    top, latency = _tag_fifo_harness(Core(config=_small_config()))
    result = prove(top, depth=latency + 4, work_dir=tmp_path / "fits", unbounded=True,
                   timeout=600)
    assert result.passed, f"{result.status}\n{result.log}"


@needs_solver
@pytest.mark.slow
def test_tile_tag_proof_catches_a_small_fifo(tmp_path, monkeypatch):
    # A FIFO of 3 entries: on the 2 x 2 engine up to 7 tags (one every 2 cycles for 13) wait.
    import gateware.core
    monkeypatch.setattr(gateware.core, "tag_fifo_depth", lambda rows, cols: 3)
    top, latency = _tag_fifo_harness(gateware.core.Core(config=_small_config()))
    result = prove(top, depth=latency + 4, work_dir=tmp_path / "small", unbounded=True,
                   timeout=600)
    assert not result.passed, result.log


# The tag FIFO at full size, by parts. The whole-core proof above stops at 2 x 2 (at 4 x 4 it ran
# past 25 minutes), so the same facts are proved at full size one part at a time, each with the
# rest free, and they compose:
#   the sequencer pushes a tag exactly with a tile's last step, at least max(R, 2) cycles apart;
#   the core's wiring: the FIFO's push is the tag, its pop the array's out_first, and the
#   array's last step is the sequencer's READ_LATENCY cycles late (sequencer and array free);
#   the array: out_first exactly ARRAY_LATENCY cycles after a last step;
# so every pop is its push TAG_LATENCY cycles late, and a FIFO of tag_fifo_depth entries with
# pushes so spaced and popped so late never fills.

def _full_size_config(groups):
    from hw.array import ArrayConfig
    return ArrayConfig(groups=groups)


def _full_size_sequencer(groups):
    """The sequencer of the default 8 x 8 engine with ``groups`` row groups."""
    Sequencer = _component("gateware.sequencer", lambda mod: mod.Sequencer)
    from gateware.act_buffer import flat_addr_bits
    config = _full_size_config(groups)
    return Sequencer(config=config, act_addr_bits=flat_addr_bits(cols=config.cols,
                                                                 bank_depth=config.bank_depth))


def _tag_spacing_harness(seq):
    """``seq`` with free inputs: a tile tag is never pushed within ``max(rows, 2) - 1`` cycles of
    the last (a shadow shift register of the pushes), and it is pushed exactly when the step
    outputs carry a tile's last step."""
    top = Module()
    top.submodules.h = free_inputs(seq)
    spacing = max(seq.config.rows, 2)
    _assert_spaced(top, _history(top, seq.tag.valid, spacing - 1), spacing)
    top.d.comb += Assert(seq.tag.valid == (seq.step_valid & seq.step_last),
                         "a tag is not pushed with its tile's last step")
    return top, spacing


@needs_solver
@pytest.mark.parametrize("groups", [2, 4])
def test_tile_tags_are_spaced_at_full_size(groups, tmp_path):
    """On the default 8 x 8 engine (two groups) and the four-group one, the sequencer pushes its
    tile tags at least ``rows`` cycles apart, each with its tile's last step, for all time
    (k = rows + 2)."""
    top, spacing = _tag_spacing_harness(_full_size_sequencer(groups))
    result = prove(top, depth=spacing + 2, work_dir=tmp_path, unbounded=True)
    assert result.passed, f"{result.status}\n{result.log}"


@needs_solver
@pytest.mark.parametrize("groups", [2, 4])
def test_sequencer_keeps_the_index_buffer_contract(groups, tmp_path):
    """The index buffer's proof (``test_index_buffer_stays_in_its_period``) assumes that a
    restart never comes with a class move; on the 8 x 8 engine the sequencer, its inputs free,
    never drives both at once, for all time."""
    top = Module()
    top.submodules.h = frag = Fragment.get(free_inputs(_full_size_sequencer(groups)), None)
    restart, next_class = internal_signal(frag, "restart"), internal_signal(frag, "next_class")
    top.d.comb += Assert(~(restart & next_class), "a restart with a class move")
    result = prove(top, depth=2, work_dir=tmp_path, unbounded=True)
    assert result.passed, f"{result.status}\n{result.log}"


@pytest.fixture
def free_core_parts(monkeypatch):
    """The core's sequencer and systolic array replaced by :func:`free_outputs` stand-ins; the
    dict it returns names the ones a :class:`gateware.core.Core` then builds."""
    import gateware.core
    made = {}
    for name in ("Sequencer", "SystolicArray"):
        class Recorded(free_outputs(getattr(gateware.core, name))):
            def __init__(self, *args, _name=name, **kwargs):
                super().__init__(*args, **kwargs)
                made[_name] = self
        monkeypatch.setattr(gateware.core, name, Recorded)
    return made


def _core_wiring_harness(core, parts):
    """``core`` (its sequencer and array the free stand-ins in ``parts``) with free inputs: the
    tag FIFO pushes the sequencer's tag and pops with the array's ``out_first``, and the array's
    last step is the sequencer's ``READ_LATENCY`` cycles late."""
    from gateware.act_buffer import READ_LATENCY
    top = Module()
    top.submodules.h = frag = Fragment.get(free_inputs(core), None)
    seq, arr = parts["Sequencer"], parts["SystolicArray"]
    last = Signal()
    top.d.comb += last.eq(seq.step_valid & seq.step_last)
    ago = _history(top, last, READ_LATENCY)
    top.d.comb += [
        Assert(internal_signal(frag, "w_en") == seq.tag.valid, "the FIFO pushes not the tag"),
        Assert(internal_signal(frag, "r_en") == arr.out_first, "the FIFO pops not at out_first"),
        Assert((arr.valid & arr.last) == ago[READ_LATENCY],
               "the array's last step is not the sequencer's, READ_LATENCY cycles late")]
    return top, READ_LATENCY


@needs_solver
@pytest.mark.parametrize("groups", [2, 4])
def test_core_wires_tags_to_the_array(groups, free_core_parts, tmp_path):
    """The full-size core's wiring around its tag FIFO (:func:`_core_wiring_harness`) holds for
    all time, whatever the sequencer and the array do."""
    from gateware.core import Core
    top, latency = _core_wiring_harness(Core(config=_full_size_config(groups)), free_core_parts)
    result = prove(top, depth=latency + 2, work_dir=tmp_path, unbounded=True)
    assert result.passed, f"{result.status}\n{result.log}"


@needs_solver
def test_core_wiring_proof_catches_a_short_delay(free_core_parts, monkeypatch, tmp_path):
    # A core whose step control reaches the array one cycle early is refuted.
    import gateware.core
    monkeypatch.setattr(gateware.core, "READ_LATENCY", gateware.core.READ_LATENCY - 1)
    top, latency = _core_wiring_harness(gateware.core.Core(config=_full_size_config(2)),
                                        free_core_parts)
    result = prove(top, depth=latency + 2, work_dir=tmp_path, unbounded=True)
    assert not result.passed, result.log


def _drain_harness(array, latency):
    """``array`` with free inputs: :attr:`out_first` is high exactly ``latency`` cycles after a
    valid last step."""
    top = Module()
    top.submodules.h = free_inputs(array)
    last = Signal()
    top.d.comb += last.eq(array.valid & array.last)
    ago = _history(top, last, latency)
    top.d.comb += Assert(array.out_first == ago[latency], "out_first is not the last step, late")
    return top


@needs_solver
@pytest.mark.parametrize("rows,cols,groups", [(8, 8, 2), (8, 8, 4), (16, 4, 4), (4, 16, 4)])
def test_array_drains_array_latency_after_the_last_step(rows, cols, groups, tmp_path):
    """A tile's first drained row comes exactly ``ARRAY_LATENCY`` cycles after its last step,
    for all time, whatever the inputs; one cycle off is refuted."""
    from gateware.systolic_array import SystolicArray, ARRAY_LATENCY
    latency = ARRAY_LATENCY(rows, cols)
    good = prove(_drain_harness(SystolicArray(rows=rows, cols=cols, groups=groups), latency),
                 depth=latency + 2, work_dir=tmp_path / "good", unbounded=True)
    assert good.passed, f"{good.status}\n{good.log}"
    bad = prove(_drain_harness(SystolicArray(rows=rows, cols=cols, groups=groups), latency - 1),
                depth=latency + 2, work_dir=tmp_path / "bad", unbounded=True)
    assert not bad.passed, bad.log


def _tag_fifo_model(rows, cols, depth):
    """The core's tag FIFO (a ``SyncFIFOBuffered`` of ``depth`` entries) on its own: pushes free
    but at least ``max(rows, 2)`` cycles apart (assumed: the sequencer's proof), each popped
    exactly ``TAG_LATENCY`` cycles later (the other two proofs). Asserted: no push meets a full
    FIFO, no pop an empty one, and the level is the pushes in flight. Returns ``(module,
    TAG_LATENCY)``."""
    from amaranth.lib.fifo import SyncFIFOBuffered
    from gateware.core import TAG_LATENCY
    latency, spacing = TAG_LATENCY(rows, cols), max(rows, 2)
    m = Module()
    m.submodules.fifo = fifo = SyncFIFOBuffered(width=1, depth=depth)
    push = Signal()
    m.d.comb += push.eq(AnySeq(1))
    ago = _history(m, push, latency)
    with m.If(push):
        m.d.comb += Assume(sum(ago[1:spacing]) == 0)
    m.d.comb += [fifo.w_en.eq(push), fifo.w_data.eq(AnySeq(1)), fifo.r_en.eq(ago[latency]),
                 Assert(~(push & ~fifo.w_rdy), "a tag is pushed into a full FIFO"),
                 Assert(~(fifo.r_en & ~fifo.r_rdy), "a tag is popped from an empty FIFO"),
                 Assert(fifo.level == sum(ago[1:]), "the level is not the pushes in flight")]
    return m, latency


#: Engine shapes of the tag FIFO proof, each with its need worked by hand: TAG_LATENCY = 5 (the
#: activation read) + rows + cols + 4 (the array) cycles ``D``, tags at least ``s = max(rows, 2)``
#: apart, so ``floor(D / s) + 1`` entries: 8 x 8: 25 // 8 + 1 = 4; 16 x 4: 29 // 16 + 1 = 2;
#: 4 x 16: 29 // 4 + 1 = 8; 2 x 2: 13 // 2 + 1 = 7; 1 x 2: 12 // 2 + 1 = 7. The default, the
#: auto shapes of 64 MACs and the 2 x 2 of the whole-core proof (a second or two each; the FIFO
#: model's induction needs k past TAG_LATENCY, which grows with rows + cols).
_TAG_FIFO_SHAPES = [(8, 8, 4), (16, 4, 2), (4, 16, 8), (2, 2, 7), (1, 2, 7)]


@needs_solver
@pytest.mark.parametrize("rows,cols,need", _TAG_FIFO_SHAPES)
def test_tag_fifo_depth_suffices(rows, cols, need, tmp_path):
    """``tag_fifo_depth`` entries take every tag, for all time; and the need is exactly the
    hand-worked one (at a push, the pushes of the ``TAG_LATENCY`` cycles before it are still in
    the FIFO, the oldest popped only in the push's own cycle, which a ``SyncFIFOBuffered``'s
    ``w_rdy`` does not count): that many pass, one fewer is refuted."""
    from gateware.core import tag_fifo_depth, tag_fifo_need
    assert tag_fifo_need(rows, cols) == need
    assert tag_fifo_depth(rows, cols) >= need
    for depth, passes in ((tag_fifo_depth(rows, cols), True), (need, True), (need - 1, False)):
        if depth < 1:
            continue
        top, latency = _tag_fifo_model(rows, cols, depth)
        result = prove(top, depth=latency + 4, work_dir=tmp_path / f"d{depth}", unbounded=True)
        assert result.passed == passes, f"depth {depth}: {result.status}\n{result.log}"


def _index_buffer_contract(m, ib, cls):
    """Drive ``ib``'s inputs freely under the sequencer's side of the contract: a constant window
    inside the table, tables written before the layer starts, no start in the first cycle (the
    start reads' addresses are registered sums of base and period), walks only after a start and
    a restart, class moves and restarts only at classes (``cls``) inside the period. Returns
    ``(base, period, flags)``, the harness's own registers: ``started`` (a start ever),
    ``just_started`` (a start last cycle), ``warm`` (past the first cycle) and ``walking`` (a
    restart since the last start)."""
    base, period = AnyConst(len(ib.base)), AnyConst(len(ib.period))
    m.d.comb += [ib.base.eq(base), ib.period.eq(period)]
    for port in (ib.we, ib.waddr, ib.wdata, ib.start, ib.next_class, ib.restart, ib.advance):
        m.d.comb += port.eq(AnySeq(len(port)))
    started, walking, just_started, warm = Signal(), Signal(), Signal(), Signal()
    with m.If(ib.start):
        m.d.sync += [started.eq(1), walking.eq(0)]
    with m.If(ib.restart & ~ib.start):
        m.d.sync += walking.eq(1)
    m.d.sync += [just_started.eq(ib.start), warm.eq(1)]
    m.d.comb += [Assume(warm | ~ib.start),
                 Assume(period >= 1), Assume(period <= ib.p_max),
                 Assume(base + period <= ib.table_depth),
                 Assume(~(ib.we & (started | ib.start))),
                 Assume(started | ~(ib.next_class | ib.restart | ib.advance)),
                 Assume(~(ib.start | just_started) | ~(ib.next_class | ib.restart | ib.advance)),
                 Assume(~(ib.next_class | ib.restart) | (cls < period)),
                 Assume(~(ib.restart & ib.next_class)),
                 Assume(walking | ~ib.advance)]
    return base, period, dict(started=started, just_started=just_started, warm=warm,
                              walking=walking)


def _index_buffer_harness(ib):
    """IndexBuffer with a constant layer window and free writes, starts, class moves, restarts
    and advances under the sequencer's contract.

    Asserts that the slot stays inside the window's P slots and that, once a walk has started,
    ``mask`` / ``next_mask`` are the table entries at ``base + slot`` and
    ``base + (slot + 1) mod P``, checked against a shadow copy of one arbitrary table address
    (the lowest-tap split of each mask is combinational logic, checked in amaranth.sim)."""
    m = Module()
    m.submodules.ib = ib
    cls = Signal(range(ib.p_max + 2))     # the class the walk is at, counted here
    with m.If(ib.start):
        m.d.sync += cls.eq(0)
    with m.Elif(ib.next_class):
        m.d.sync += cls.eq(cls + 1)
    base, period, flags = _index_buffer_contract(m, ib, cls)

    watched = AnyConst(len(ib.waddr))
    # Zeroed like the memory, and like it not cleared by reset.
    shadow = Signal(len(ib.wdata), reset_less=True)
    with m.If(ib.we & (ib.waddr == watched)):
        m.d.sync += shadow.eq(ib.wdata)
    nxt = Signal(len(ib.slot) + 1)
    # (slot + 1) mod P without a divider (the solver times out on `%`); slot < P is asserted.
    m.d.comb += nxt.eq(Mux(ib.slot + 1 == period, 0, ib.slot + 1))
    m.d.comb += Assert(ib.slot < period, "slot left the period window")
    with m.If(flags["walking"]):
        with m.If(base + ib.slot == watched):
            m.d.comb += Assert(ib.mask == shadow, "mask is not the table entry at base + slot")
        with m.If(base + nxt == watched):
            m.d.comb += Assert(ib.next_mask == shadow, "next_mask is not the entry of the next slot")
    return m


@needs_solver
@pytest.mark.parametrize("table_depth,p_max", [(6, 3), (8, 4)])
def test_index_buffer_stays_in_its_period(table_depth, p_max, tmp_path):
    IndexBuffer = _component("gateware.index_buffer", lambda mod: mod.IndexBuffer)
    ib = IndexBuffer(table_depth=table_depth, p_max=p_max)
    # p_max + 5 steps: a first cycle without start, start, restart, then every slot of the
    # largest period and a wrap.
    result = prove(_index_buffer_harness(ib), depth=p_max + 5, work_dir=tmp_path)
    assert result.passed, f"{result.status}\n{result.log}"


def test_internal_signal_finds_one_register():
    """``internal_signal`` returns the register a component assigns by that name, and refuses a
    name that is not assigned (or is ambiguous) instead of guessing."""
    from gateware.index_buffer import IndexBuffer
    frag = Fragment.get(IndexBuffer(table_depth=8, p_max=4), None)
    sig = internal_signal(frag, "walk_ahead")
    assert sig.name == "walk_ahead" and len(sig) == 3
    with pytest.raises(LookupError, match="0 signals named 'no_such_register'"):
        internal_signal(frag, "no_such_register")


def _index_buffer_window_harness(ib):
    """IndexBuffer under the sequencer's contract (:func:`_index_buffer_contract`), with
    invariants for k-induction: the slot inside the period, the class slot at most the period,
    the window's last address registered, and the two addresses the walk reads the table at
    (``cls_ahead`` on a class move, ``walk_ahead`` on an advance) inside ``base .. base +
    period - 1`` once a layer has started (resp. a walk has). Table contents are not involved,
    so the proof holds for all time at the engine's own sizes."""
    m = Module()
    m.submodules.ib = frag = Fragment.get(ib, None)
    cls_slot, last = internal_signal(frag, "cls_slot"), internal_signal(frag, "last")
    reads = {"cls_ahead": internal_signal(frag, "cls_ahead"),
             "walk_ahead": internal_signal(frag, "walk_ahead")}
    base, period, flags = _index_buffer_contract(m, ib, cls_slot)

    def inside(addr):
        return (addr >= base) & (addr < base + period)

    m.d.comb += [Assert(ib.slot < period, "slot left the period window"),
                 Assert(cls_slot <= period, "class slot past the period")]
    with m.If(flags["warm"]):
        m.d.comb += Assert(last == base + period - 1, "window end not registered")
    with m.If(flags["started"] & ~flags["just_started"]):   # (a start's reads land a cycle on)
        m.d.comb += Assert(inside(reads["cls_ahead"]), "class read address left the window")
    with m.If(flags["walking"]):
        m.d.comb += Assert(inside(reads["walk_ahead"]), "walk read address left the window")
    return m


@needs_solver
@pytest.mark.parametrize("table_depth,p_max", [(6, 3), (128, 16)])
def test_index_buffer_window_unbounded(table_depth, p_max, tmp_path):
    """The index buffer never reads its table outside the layer's ``P`` slots, for all time (k-
    induction), at the default engine's sizes (128 entries, ``P`` up to 16) and a small odd one.
    The base case runs ``p_max + 5`` cycles, so a buffer that fails to wrap fails it there."""
    IndexBuffer = _component("gateware.index_buffer", lambda mod: mod.IndexBuffer)
    ib = IndexBuffer(table_depth=table_depth, p_max=p_max)
    result = prove(_index_buffer_window_harness(ib), depth=p_max + 5, work_dir=tmp_path,
                   unbounded=True)
    assert result.passed, f"{result.status}\n{result.log}"
