"""ECP5 block RAMs with their own output register: a netlist pass between Yosys and nextpnr.

Every block-RAM read in the engine is an asynchronous port plus a register
(``gateware.pipeline.registered_read``), which Yosys maps to a DP16KD's synchronous read, and the
engine registers the data once more right after it (the "landing" register). On the ECP5 that
landing register is the weak spot of the whole chip: a DP16KD without its output register has a
clock-to-out of 5.83 ns (speed 6), which leaves 4.2 ns at 100 MHz to reach a fabric flip-flop,
and the placer does not always put the flip-flop beside its block (README, "Timing closure on
the ECP5": 4.46 ns of routing on a weight-buffer path in session 22). The DP16KD has an output
register of its own (``REGMODE_x = "OUTREG"``: clock-to-out 0.96 ns in nextpnr's timing model),
but Yosys' ``memory_libmap`` never uses it, so this pass does, on Yosys' JSON netlist: a read
port whose every used data bit drives exactly one plain flip-flop (same clock, always enabled,
no set/reset, power-up value 0) takes those flip-flops into the block RAM. The result has the same
cycle behaviour (the output register adds the cycle the flip-flop took), and the logic the RTL
simulations verify is untouched: only where the register sits changes.

The module has no dependencies beyond the standard library, because the ECP5 build copies it
into its tree (``build_top.sh`` runs ``python3 ecp5_outreg.py top.json`` after Yosys), which
then builds anywhere. ``python -m gateware.ecp5_outreg --help`` explains the command line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OutregReport", "absorb_output_registers", "absorb_file", "main"]

#: The block-RAM cell this pass rewrites and the flip-flop cell it absorbs (Yosys' ECP5 names).
BRAM_CELL = "DP16KD"
FF_CELL = "TRELLIS_FF"


@dataclass
class OutregReport:
    """What :func:`absorb_output_registers` did.

    Members
    -------
    ports : int
        Block-RAM read ports with at least one used data bit.
    absorbed : list of str
        ``"<cell> <side>"`` of each port that now uses its output register.
    registers : int
        Flip-flops taken into block RAMs (removed from the fabric).
    kept : dict
        ``"<cell> <side>"`` -> why that port kept its fabric register.
    """
    ports: int = 0
    absorbed: list = field(default_factory=list)
    registers: int = 0
    kept: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ports": self.ports, "absorbed": len(self.absorbed), "registers": self.registers,
                "kept": dict(self.kept)}

    def summary(self) -> str:
        return (f"ecp5_outreg: {len(self.absorbed)} of {self.ports} block-RAM read ports use their "
                f"output register ({self.registers} fabric flip-flops absorbed)")


def _param(cell: dict, name: str, default: str = "") -> str:
    # Yosys' JSON pads a string parameter that looks like a bit vector with one space.
    return str(cell.get("parameters", {}).get(name, default)).rstrip()


def _top_module(netlist: dict) -> dict:
    modules = netlist.get("modules", {})
    tops = [m for m in modules.values() if int(m.get("attributes", {}).get("top", "0") or "0", 2)]
    if len(tops) != 1:
        raise ValueError(f"expected one top module in the netlist, found {len(tops)}")
    return tops[0]


def _landing_registers(ram: dict, side: str, used: list, sinks: dict, cells: dict) -> tuple:
    """``(None, [(data pin, flip-flop name), ...])`` when port ``side`` of ``ram`` can take its
    data bits' flip-flops, else ``(why not, [])``."""
    ffs = []
    if _param(ram, f"REGMODE_{side}", "NOREG") != "NOREG":
        return f"REGMODE_{side} is already {_param(ram, f'REGMODE_{side}')}", []
    conn = ram["connections"]
    if conn.get(f"RST{side}") != ["0"]:
        return f"RST{side} is not tied low (the reset would move to the output register)", []
    if conn.get(f"OCE{side}") != ["1"]:
        return f"OCE{side} is not tied high", []
    if _param(ram, f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}":
        return f"the port's clock is inverted (CLK{side}MUX)", []
    for port, bit in used:
        s = sinks[bit]
        if len(s) != 1:
            return f"{port} drives {len(s)} loads", []
        name, pin = s[0]
        ff = cells.get(name)
        if ff is None or ff["type"] != FF_CELL or pin != "DI":
            what = ff["type"] if ff else "module port"
            return f"{port} drives {pin} of a {what}, not a flip-flop", []
        fc = ff["connections"]
        if fc.get("CLK") != conn.get(f"CLK{side}") or _param(ff, "CLKMUX", "CLK") != "CLK":
            return f"{port}'s flip-flop has another clock", []
        if not (_param(ff, "CEMUX", "1") == "1" or fc.get("CE") == ["1"]):
            return f"{port}'s flip-flop has a clock enable", []
        if not (_param(ff, "LSRMUX", "LSR") == "0" or fc.get("LSR", ["0"]) == ["0"]):
            return f"{port}'s flip-flop has a set/reset", []
        if _param(ff, "REGSET", "RESET") != "RESET":
            return f"{port}'s flip-flop powers up to 1", []
        ffs.append((port, name))
    return None, ffs


def absorb_output_registers(netlist: dict) -> OutregReport:
    """Move each eligible block-RAM landing register into its DP16KD, in place (module doc)."""
    top = _top_module(netlist)
    cells = top.get("cells", {})
    sinks = defaultdict(list)
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for pin, bits in cell.get("connections", {}).items():
            if dirs.get(pin) != "output":
                for bit in bits:
                    if not isinstance(bit, str):
                        sinks[bit].append((name, pin))
    for pname, port in top.get("ports", {}).items():
        if port.get("direction") != "input":
            for bit in port.get("bits", []):
                if not isinstance(bit, str):
                    sinks[bit].append((pname, "(module port)"))
    report = OutregReport()
    for name in sorted(cells):
        ram = cells.get(name)
        if ram is None or ram["type"] != BRAM_CELL:
            continue
        for side in "AB":
            used = [(pin, bits[0]) for pin, bits in sorted(ram["connections"].items())
                    if re.fullmatch(f"DO{side}[0-9]+", pin) and bits
                    and not isinstance(bits[0], str) and sinks.get(bits[0])]
            if not used:
                continue
            report.ports += 1
            why, ffs = _landing_registers(ram, side, used, sinks, cells)
            if why is not None:
                report.kept[f"{name} {side}"] = why
                continue
            for pin, ff_name in ffs:
                ram["connections"][pin] = list(cells[ff_name]["connections"]["Q"])
                del cells[ff_name]
            ram["parameters"][f"REGMODE_{side}"] = "OUTREG"
            report.absorbed.append(f"{name} {side}")
            report.registers += len(ffs)
    return report


def absorb_file(path, *, out=None) -> OutregReport:
    """:func:`absorb_output_registers` on a Yosys JSON file, written back to ``out`` (default:
    in place)."""
    path = Path(path)
    netlist = json.loads(path.read_text())
    report = absorb_output_registers(netlist)
    Path(out or path).write_text(json.dumps(netlist))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecp5_outreg",
        description="Move the flip-flop after each ECP5 DP16KD read port into the block RAM's own "
                    "output register (REGMODE OUTREG), in a Yosys JSON netlist, before nextpnr. "
                    "Ports whose data bits do not each drive one plain flip-flop are left as they "
                    "are, with the reason printed by --verbose.")
    parser.add_argument("netlist", help="Yosys write_json output (rewritten in place)")
    parser.add_argument("--out", help="write the result here instead")
    parser.add_argument("--report", help="also write what was done as JSON to this file")
    parser.add_argument("--verbose", action="store_true", help="list the ports left as they are")
    args = parser.parse_args(argv)
    try:
        report = absorb_file(args.netlist, out=args.out)
    except (OSError, ValueError) as exc:
        print(f"ecp5_outreg: {args.netlist}: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if args.report:
        Path(args.report).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if args.verbose:
        for port, why in report.kept.items():
            print(f"  kept {port}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
