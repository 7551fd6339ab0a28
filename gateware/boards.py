"""The boards the engine is built for: platforms, parts, capacities and UART baud rates.

Every board is a :class:`Board` record in :data:`BOARDS`; :func:`get_board` looks one up by name
(``arty_a7``, ``arty_a7_100``, ``ulx3s_85f``, ``sim``) and :func:`uart_divisor` turns a baud rate
into the clock divisor of the engine's UART, refusing rates the clock cannot make accurately.

amaranth-boards names the Arty A7 parts ``xc7a35ticsg324-1L`` / ``xc7a100ticsg324-1L`` (the
industrial low-power grade of the first "Arty" board). Digilent's Arty A7 reference manual
documents ``XC7A35T-1CSG324C`` and ``XC7A100TCSG324-1``; a bitstream for the wrong part may not
load, and timing is analysed for the wrong speed grade. The platforms below fix the part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth_boards.arty_a7 import ArtyA7_35Platform as _ArtyA7_35, ArtyA7_100Platform as _ArtyA7_100
from amaranth_boards.ulx3s import ULX3S_85F_Platform as _ULX3S_85F

from . import ecp5_outreg
from .uart import MIN_DIVISOR

__all__ = [
    "ArtyA7_35Platform", "ArtyA7_100Platform", "ULX3S_85FPlatform",
    "Capacity", "Board", "BOARDS", "DEFAULT_BOARD", "UnknownBoardError", "BaudError",
    "get_board", "uart_divisor",
]


class _ArtyProgramMixin:
    """Program an Arty over its on-board FT2232 JTAG: openFPGALoader, else Vivado's hw manager."""

    def toolchain_program(self, products, name, **kwargs):
        loader = os.environ.get("OPENFPGALOADER", "openFPGALoader")
        vivado = os.environ.get("VIVADO", "vivado")
        with products.extract(f"{name}.bit") as bitstream:
            if shutil.which(loader):
                subprocess.run([loader, "-b", "arty", bitstream], check=True)
            elif shutil.which(vivado):
                script = (
                    "open_hw_manager; connect_hw_server; open_hw_target; "
                    "set dev [lindex [get_hw_devices xc7a*] 0]; current_hw_device $dev; "
                    f"set_property PROGRAM.FILE {{{bitstream}}} $dev; program_hw_devices $dev; "
                    "close_hw_manager; quit")
                tcl = f"{bitstream}.program.tcl"
                with open(tcl, "w") as f:
                    f.write(script.replace("; ", "\n") + "\n")
                subprocess.run([vivado, "-mode", "batch", "-source", tcl], check=True)
            else:
                raise FileNotFoundError(
                    "Programming needs openFPGALoader (Debian package 'openfpgaloader') or "
                    "Vivado on PATH")


class ArtyA7_35Platform(_ArtyProgramMixin, _ArtyA7_35):
    """Digilent Arty A7-35T with the part Digilent documents: XC7A35T-1CSG324C."""

    device = "xc7a35t"
    package = "csg324"
    speed = "1"


class ArtyA7_100Platform(_ArtyProgramMixin, _ArtyA7_100):
    """Digilent Arty A7-100T with the part Digilent documents: XC7A100TCSG324-1."""

    device = "xc7a100t"
    package = "csg324"
    speed = "1"


#: The open flow's step between Yosys and nextpnr: block RAMs take their landing registers
#: (:mod:`gateware.ecp5_outreg`, copied into the tree so that ``build_top.sh`` runs anywhere).
_ECP5_OUTREG_COMMAND = r"""
    {{invoke_tool("python3")}}
        ecp5_outreg.py
        --report ecp5_outreg.json
        {{name}}.json
"""


class ULX3S_85FPlatform(_ULX3S_85F):
    """Radiona ULX3S with an LFE5U-85F (amaranth-boards' platform, unchanged part).

    The open-flow script gains one step after Yosys, :mod:`gateware.ecp5_outreg` (run by
    ``$PYTHON3``, default ``python3``): each DP16KD read port takes the flip-flop after it into its
    own output register, which moves the block RAM's 5.83 ns clock-to-out off the fabric."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_file("ecp5_outreg.py", Path(ecp5_outreg.__file__).read_text())

    @property
    def required_tools(self):
        tools = super().required_tools
        return [*tools, "python3"] if self.toolchain == "Trellis" else tools

    @property
    def command_templates(self):
        commands = super().command_templates
        if self.toolchain != "Trellis":
            return commands
        yosys, *rest = commands
        return [yosys, _ECP5_OUTREG_COMMAND, *rest]


@dataclass(frozen=True)
class Capacity:
    """What one FPGA offers, in the units Yosys reports after technology mapping.

    Members
    -------
    lut : int
        LUT6 (Xilinx 7-series) or LUT4 (ECP5) count.
    ff : int
        Flip-flops.
    dsp : int
        DSP48E1 slices (7-series) or 18x18 multipliers (ECP5 MULT18X18D).
    bram_tiles : int
        RAMB36E1 tiles (one holds two RAMB18E1) or ECP5 DP16KD blocks.
    bram_bits : int
        Block RAM bits in all tiles (data bits, parity included).
    """

    lut: int
    ff: int
    dsp: int
    bram_tiles: int
    bram_bits: int


@dataclass(frozen=True)
class Board:
    """One target the engine can be built for.

    Members
    -------
    name : str
        The ``--board`` name.
    description : str
        Human-readable board and part.
    family : str
        ``"xc7"`` (Vivado build tree + Yosys estimate), ``"ecp5"`` (open flow) or ``"sim"``.
    part : str
        The FPGA part string the toolchain is given ("" for ``sim``).
    clk_hz : int
        Frequency of the engine's clock domain.
    capacity : Capacity or None
        Resources of the part (None for ``sim``).
    default_baud : int
        Default UART baud rate: the fastest rate both the on-board USB-UART and ``clk_hz``
        make exactly.
    usb_uart : str
        The on-board USB-UART chip.
    platform : callable or None
        Factory of the amaranth-boards platform (None for ``sim``).
    """

    name: str
    description: str
    family: str
    part: str
    clk_hz: int
    capacity: Capacity | None
    default_baud: int
    usb_uart: str
    platform: Callable | None


# Capacities from the Xilinx 7-series product table (DS180) and the ECP5 family data sheet
# (FPGA-DS-02012): 35T 20,800 LUT / 41,600 FF / 90 DSP / 50 RAMB36 (1,800 Kb); 100T 63,400 LUT /
# 126,800 FF / 240 DSP / 135 RAMB36 (4,860 Kb); LFE5U-85F 83,640 LUT4 / 156 18x18 multipliers /
# 208 EBR (3,744 Kb).
_A35 = Capacity(lut=20_800, ff=41_600, dsp=90, bram_tiles=50, bram_bits=50 * 36_864)
_A100 = Capacity(lut=63_400, ff=126_800, dsp=240, bram_tiles=135, bram_bits=135 * 36_864)
_E85 = Capacity(lut=83_640, ff=83_640, dsp=156, bram_tiles=208, bram_bits=208 * 18_432)

# The FT2232H makes 12 MHz / n (n = 1, 1.5, 2, 2.5, 3, ...); 4 Mbaud = 12 MHz / 3 is exact there and
# 100 MHz / 25 is exact in the FPGA. 6 Mbaud would be 2 % off at 100 MHz (divisor 16.7), 12 Mbaud
# 4 % off. The ULX3S's FT231X tops out at 3 Mbaud (exact: 3 MHz / 1), 1 % off at 100 MHz.
BOARDS: dict[str, Board] = {
    "arty_a7": Board(
        name="arty_a7", description="Digilent Arty A7-35T (XC7A35T-1CSG324C)", family="xc7",
        part="xc7a35tcsg324-1", clk_hz=100_000_000, capacity=_A35, default_baud=4_000_000,
        usb_uart="FT2232HQ", platform=ArtyA7_35Platform),
    "arty_a7_100": Board(
        name="arty_a7_100", description="Digilent Arty A7-100T (XC7A100TCSG324-1)", family="xc7",
        part="xc7a100tcsg324-1", clk_hz=100_000_000, capacity=_A100, default_baud=4_000_000,
        usb_uart="FT2232HQ", platform=ArtyA7_100Platform),
    "ulx3s_85f": Board(
        name="ulx3s_85f", description="Radiona ULX3S (LFE5U-85F-6BG381C), 25 MHz x4 PLL",
        family="ecp5", part="LFE5U-85F-6BG381C", clk_hz=100_000_000, capacity=_E85,
        default_baud=3_000_000, usb_uart="FT231X", platform=ULX3S_85FPlatform),
    "sim": Board(
        name="sim", description="simulation top (Verilog only)", family="sim", part="",
        clk_hz=100_000_000, capacity=None, default_baud=4_000_000, usb_uart="(simulated)",
        platform=None),
}

DEFAULT_BOARD = "arty_a7"


class UnknownBoardError(ValueError):
    """The named board is not in :data:`BOARDS`."""


class BaudError(ValueError):
    """A baud rate the engine clock cannot make within the allowed error."""


def get_board(name: str) -> Board:
    """The :class:`Board` called ``name``; :class:`UnknownBoardError` listing the known ones."""
    if name not in BOARDS:
        raise UnknownBoardError(
            f"Unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[name]


def uart_divisor(*, clk_hz: int, baud: int, max_error: float = 0.02) -> tuple[int, float]:
    """Clock cycles per UART bit for ``baud`` and the relative rate error it leaves.

    Parameters
    ----------
    clk_hz : int
        The UART's clock.
    baud : int
        Wanted baud rate.
    max_error : float
        Largest accepted ``|clk_hz / divisor - baud| / baud``. A UART frame is 10 bits sampled in
        the middle of each: the sender's and receiver's errors together must stay below ~5 %, so
        each side gets at most about 2 %.

    Returns
    -------
    (int, float)
        The divisor (>= 4, so the receiver can find mid-bit) and the signed relative error.

    Raises
    ------
    BaudError
        The rate is not reachable within ``max_error`` (or needs a divisor below 4).
    """
    if not isinstance(clk_hz, int) or clk_hz <= 0:
        raise ValueError(f"Clock frequency must be a positive integer, not {clk_hz!r}")
    if not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    if not 0 < max_error < 0.05:
        raise ValueError(f"Maximum baud error must be in (0, 0.05), not {max_error!r}")
    divisor = max(1, round(clk_hz / baud))
    error = clk_hz / divisor / baud - 1
    if divisor < MIN_DIVISOR:
        raise BaudError(
            f"Baud rate {baud} is not reachable at {clk_hz / 1e6:g} MHz: it needs "
            f"{clk_hz / baud:.2f} clocks per bit, the UART needs at least {MIN_DIVISOR}")
    if abs(error) > max_error:
        nearby = ", ".join(f"{clk_hz / d:.0f} (divisor {d})"
                           for d in (divisor - 1, divisor, divisor + 1) if d >= MIN_DIVISOR)
        raise BaudError(
            f"Baud rate {baud} is not reachable at {clk_hz / 1e6:g} MHz within "
            f"{max_error:.0%}: the nearest divisor {divisor} gives {clk_hz / divisor:.0f} baud "
            f"({error:+.2%}); rates this clock makes nearby: {nearby}")
    return divisor, error
