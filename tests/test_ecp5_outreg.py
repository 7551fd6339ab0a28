"""gateware.ecp5_outreg: DP16KD read ports take the flip-flop after them as their output register.

Hand-made netlists check each rule (what moves, what stays and why); a real Yosys run checks the
pass on the netlist Yosys writes for the engine's own read pattern (``registered_read`` plus a
landing register); ``test_build.py::test_ulx3s_small_engine_bitstream`` runs it in the whole
open flow, through nextpnr and ecppack.
"""

import copy
import json
import subprocess

import pytest

from gateware import ecp5_outreg
from gateware.ecp5_outreg import absorb_output_registers, main

CLK, OTHER_CLK = 2, 3


def _ff(di, q, *, clk=CLK, **params):
    p = {"CEMUX": "1 ", "CLKMUX": "CLK", "LSRMUX": "LSR", "REGSET": "RESET",
         "SRMODE": "LSR_OVER_CE", "GSR": "DISABLED"}
    p.update(params)
    conn = {"CLK": [clk], "LSR": ["0"], "DI": [di], "Q": [q]}
    return {"type": "TRELLIS_FF", "parameters": p,
            "port_directions": {"CLK": "input", "LSR": "input", "DI": "input", "Q": "output"},
            "connections": conn}


def _netlist():
    """A DP16KD whose port B reads three data bits: DOB0 and DOB1 each into a flip-flop whose
    outputs a LUT reads, DOB2 unused; port A only writes."""
    ram = {"type": "DP16KD",
           "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA",
                          "CLKBMUX": "CLKB", "DATA_WIDTH_B": "00000000000000000000000000001001"},
           "port_directions": {"CLKA": "input", "CLKB": "input", "OCEA": "input", "OCEB": "input",
                               "RSTA": "input", "RSTB": "input", "DIA0": "input",
                               "DOA0": "output", "DOB0": "output", "DOB1": "output",
                               "DOB2": "output"},
           "connections": {"CLKA": [CLK], "CLKB": [CLK], "OCEA": ["1"], "OCEB": ["1"],
                           "RSTA": ["0"], "RSTB": ["0"], "DIA0": [5], "DOA0": [9],
                           "DOB0": [10], "DOB1": [11], "DOB2": [12]}}
    lut = {"type": "LUT4", "parameters": {},
           "port_directions": {"A": "input", "B": "input", "Z": "output"},
           "connections": {"A": [20], "B": [21], "Z": [30]}}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": {"out": {"direction": "output", "bits": [30]}},
                                "cells": {"ram": ram, "ff0": _ff(10, 20), "ff1": _ff(11, 21),
                                          "lut": lut}}}}


def test_landing_registers_move_into_the_block_ram():
    net = _netlist()
    report = absorb_output_registers(net)
    cells = net["modules"]["top"]["cells"]
    assert set(cells) == {"ram", "lut"}
    ram = cells["ram"]
    # The block RAM now drives the nets the flip-flops drove; the unused bit is untouched.
    assert ram["connections"]["DOB0"] == [20] and ram["connections"]["DOB1"] == [21]
    assert ram["connections"]["DOB2"] == [12]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["parameters"]["REGMODE_A"] == "NOREG"  # port A reads nothing
    assert (report.ports, report.absorbed, report.registers, report.kept) == (1, ["ram B"], 2, {})
    assert report.as_dict() == {"ports": 1, "absorbed": 1, "registers": 2, "kept": {}}


def _edit(net, what):
    cells = net["modules"]["top"]["cells"]
    if what == "fan-out":
        cells["lut"]["connections"]["B"] = [10]
    elif what == "module port":
        net["modules"]["top"]["ports"]["probe"] = {"direction": "output", "bits": [11]}
    elif what == "clock":
        cells["ff1"]["connections"]["CLK"] = [OTHER_CLK]
    elif what == "inverted flip-flop clock":
        cells["ff1"]["parameters"]["CLKMUX"] = "INV"
    elif what == "inverted port clock":
        cells["ram"]["parameters"]["CLKBMUX"] = "INV"
    elif what == "enable":
        cells["ff1"]["parameters"]["CEMUX"] = "CE"
        cells["ff1"]["connections"]["CE"] = [40]
    elif what == "reset":
        cells["ff0"]["connections"]["LSR"] = [41]
    elif what == "power-up 1":
        cells["ff0"]["parameters"]["REGSET"] = "SET"
    elif what == "port reset":
        cells["ram"]["connections"]["RSTB"] = [41]
    elif what == "output enable":
        cells["ram"]["connections"]["OCEB"] = ["0"]
    elif what == "already registered":
        cells["ram"]["parameters"]["REGMODE_B"] = "OUTREG"
    elif what == "into a LUT":
        cells["lut"]["connections"]["A"] = [10]
        cells["ff0"]["connections"]["DI"] = [50]
    return net


@pytest.mark.parametrize("what, reason", [
    ("fan-out", "DOB0 drives 2 loads"),
    ("module port", "DOB1 drives 2 loads"),
    ("clock", "DOB1's flip-flop has another clock"),
    ("inverted flip-flop clock", "DOB1's flip-flop has another clock"),
    ("inverted port clock", "clock is inverted"),
    ("enable", "DOB1's flip-flop has a clock enable"),
    ("reset", "DOB0's flip-flop has a set/reset"),
    ("power-up 1", "DOB0's flip-flop powers up to 1"),
    ("port reset", "RSTB is not tied low"),
    ("output enable", "OCEB is not tied high"),
    ("already registered", "REGMODE_B is already OUTREG"),
    ("into a LUT", "DOB0 drives A of a LUT4, not a flip-flop"),
])
def test_a_port_that_does_not_qualify_keeps_its_register(what, reason):
    net = _edit(_netlist(), what)
    before = copy.deepcopy(net)
    report = absorb_output_registers(net)
    assert net == before, what
    assert report.ports == 1 and report.absorbed == [] and report.registers == 0
    assert reason in report.kept["ram B"], report.kept


def test_one_port_qualifying_does_not_depend_on_another():
    """Port A reads through a flip-flop with a reset (kept); port B still moves."""
    net = _netlist()
    cells = net["modules"]["top"]["cells"]
    cells["ram"]["connections"]["DOA0"] = [60]
    cells["ff2"] = _ff(60, 61)
    cells["ff2"]["connections"]["LSR"] = [41]
    report = absorb_output_registers(net)
    assert report.ports == 2 and report.absorbed == ["ram B"] and "ram A" in report.kept
    assert "ff2" in cells and cells["ram"]["parameters"]["REGMODE_A"] == "NOREG"


def test_no_top_module_is_an_error():
    with pytest.raises(ValueError, match="one top module"):
        absorb_output_registers({"modules": {"a": {"cells": {}}}})


def test_command_line(tmp_path, capsys):
    src, out, rep = tmp_path / "n.json", tmp_path / "o.json", tmp_path / "r.json"
    src.write_text(json.dumps(_edit(_netlist(), "reset")))
    assert main([str(src), "--out", str(out), "--report", str(rep), "--verbose"]) == 0
    text = capsys.readouterr().out
    assert "0 of 1 block-RAM read ports" in text and "kept ram B: DOB0's flip-flop" in text
    assert json.loads(rep.read_text())["kept"] == {"ram B": "DOB0's flip-flop has a set/reset"}
    assert main([str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_on_the_netlist_yosys_writes(tmp_path):
    """The engine's read pattern through Yosys synth_ecp5: a 2048 x 16 memory read by
    ``registered_read`` (Yosys merges that register into the DP16KD's read) and a landing
    register after it. Every used data bit's landing flip-flop moves into its block RAM."""
    from amaranth import Module, Signal, unsigned
    from amaranth.back import rtlil
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out
    from gateware.build import find_tool
    from gateware.pipeline import registered_read

    class Dut(wiring.Component):
        we: In(1)
        waddr: In(11)
        wdata: In(16)
        raddr: In(11)
        rdata: Out(16)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=unsigned(16), depth=2048, init=[],
                                            attrs={"no_rw_check": 1})
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(self.waddr), wp.data.eq(self.wdata), wp.en.eq(self.we)]
            rp, data = registered_read(m, mem, "mem")
            m.d.comb += rp.addr.eq(self.raddr)
            land = Signal(16, name="land", reset_less=True)
            m.d.sync += land.eq(data)
            m.d.sync += self.rdata.eq(land ^ 0x5A5A)
            return m

    dut = Dut()
    (tmp_path / "dut.il").write_text(rtlil.convert(dut, name="top"))
    run = subprocess.run([find_tool("YOSYS"), "-q", "-p",
                          "read_rtlil dut.il; synth_ecp5 -top top; write_json dut.json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    net = json.loads((tmp_path / "dut.json").read_text())
    cells = next(m for m in net["modules"].values()
                 if int(m.get("attributes", {}).get("top", "0"), 2))["cells"]
    rams = [c for c in cells.values() if c["type"] == "DP16KD"]
    ffs_before = sum(c["type"] == "TRELLIS_FF" for c in cells.values())
    assert rams, "the memory did not map to block RAM"
    report = absorb_output_registers(net)
    assert report.kept == {} and report.registers == 16, report
    assert report.ports == len(report.absorbed) >= 1
    assert sum(c["type"] == "TRELLIS_FF" for c in cells.values()) == ffs_before - 16
    assert all(any(c["parameters"][f"REGMODE_{s}"] == "OUTREG" for s in "AB") for c in rams)


def test_platform_runs_the_pass_between_yosys_and_nextpnr(tmp_path):
    from gateware import build as gb
    gb.build(board="ulx3s_85f", array="2x2", out=tmp_path, synth=False, progress=lambda line: None)
    steps = [line for line in (tmp_path / "build_top.sh").read_text().splitlines()
             if line.startswith('"$')]
    assert [s.split()[0] for s in steps] == ['"$YOSYS"', '"$PYTHON3"', '"$NEXTPNR_ECP5"',
                                              '"$ECPPACK"']
    assert steps[1].endswith("ecp5_outreg.py --report ecp5_outreg.json top.json")
    # The tree carries the pass itself, so the script runs without this package.
    assert (tmp_path / "ecp5_outreg.py").read_text() == open(ecp5_outreg.__file__).read()
