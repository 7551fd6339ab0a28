"""``python -m host``: pack a quantized model, and run test frames on a real or simulated board.

Subcommands::

    python -m host pack --model Q --out IMAGE [--array RxC] [--batch B] [--json]
    python -m host run  --model Q (--port DEV [--baud B] | --sim [--uart]) [--dataset D]
                        [--frames N] [--batch B] [--json]

Exit status: 0 on success, 1 when a run has mismatches, 2 on bad input (missing file, a model
that does not pack, a bad option), 3 when the board or the link fails (timeouts, refusals, a
simulated board that does not build).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from hw.layout import batch_arg

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Bad input: printed and exit status 2."""


_BATCH_HELP = ("frames the engine runs at once, in one INFER request (default 1): the B frames are "
               "laid out together, and layers with small maps run them as one tall map whose "
               "tiles hold pixels of consecutive frames, so the cycles per frame drop. The engine is the "
               "same for any B except its activation memory, which must hold all B frames: the "
               "image is packed for the engine sized for B frames (its config_id differs from "
               "batch 1's). Where the big early maps would need more block RAM for B frames, "
               "the first layers run depth-first, one frame at a time, so that only the later, "
               "smaller maps hold the whole batch (the schedule's title says so)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m host",
        description="Host side of psconv-accel: pack a quantized model into the engine image, "
                    "and stream test frames through a board (USB-UART or pseudo-terminal) or the "
                    "cocotb-simulated engine, checking every output bit-exact.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{pack,run}")

    pk = sub.add_parser("pack", help="pack a quantized model (.npz) into an engine image",
                        description="Check a quantized model against its sparsity patterns and pack "
                                    "it into the image the engine loads; report its size beside "
                                    "the Dense, CSR and CSR_P storage formulas, and how each layer "
                                    "runs on the array (row groups, flat tiles, mixed classes; "
                                    "tiles, exact cycles, utilization and its mapping's bound).",
                        epilog="Example: python -m host pack --model runs/FashionNet_PSD2_P8/model.q.npz "
                               "--out build/fashionnet.img")
    pk.add_argument("--model", required=True, help="quantized model file (hw.qmodel .npz)")
    pk.add_argument("--out", required=True, help="image file to write")
    pk.add_argument("--array", default="8x8", help="MAC array RxC the engine is built with (default "
                    "8x8), or auto: the 64-MAC shape that runs the model fastest (what "
                    "python -m gateware.build --model Q --array auto builds)")
    pk.add_argument("--batch", type=batch_arg, default=1, metavar="B", help=_BATCH_HELP)
    pk.add_argument("--json", action="store_true",
                    help='print the storage report and the per-layer schedule as JSON; "batch" is '
                         'B, "cycles_per_frame" the expected cycles of one frame (a run\'s / B) '
                         'and "cycles_per_run" those of a whole run of B frames, as are the '
                         'schedule\'s per-layer "cycles" and "macs"')

    rn = sub.add_parser("run", help="run test frames on a board and check them bit-exact",
                        description="Load the packed model once, stream N test frames, check each "
                                    "output against the PyTorch integer golden and the numpy "
                                    "reference, and report accuracy, mismatches, cycles per frame "
                                    "and frames per second (compute- and link-bound).",
                        epilog="Examples: python -m host run --model m.q.npz --port /dev/ttyUSB1 "
                               "--baud 1000000;  python -m host run --model m.q.npz --sim --frames 200")
    rn.add_argument("--model", required=True, help="quantized model file (hw.qmodel .npz)")
    where = rn.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device or pseudo-terminal path of the board")
    where.add_argument("--sim", action="store_true",
                       help="start the cocotb/Verilator-simulated engine and talk to it over a pty")
    rn.add_argument("--baud", type=int, default=None,
                    help="UART rate in bits per second (default 1000000; also the link-bound fps)")
    rn.add_argument("--uart", action="store_true",
                    help="with --sim: simulate the UART top (bit-level) instead of the byte-stream top")
    rn.add_argument("--divisor", type=int, default=8,
                    help="with --sim --uart: clock cycles per UART bit in simulation (default 8)")
    rn.add_argument("--array", default="8x8", help="MAC array RxC (default 8x8), or auto (as for pack)")
    rn.add_argument("--dataset", help="dataset of the test frames (default: the model's)")
    rn.add_argument("--data-dir", help="dataset directory (cifar10, tinyimagenet)")
    rn.add_argument("--frames", type=int, default=200, help="test frames to run (default 200)")
    rn.add_argument("--batch", type=batch_arg, default=1, metavar="B",
                    help=_BATCH_HELP + ". Frames go B at a time; a last partial group is padded "
                         "with zero frames whose results are discarded (accuracy and mismatches "
                         "count the real frames); cycles per frame are the engine's cycles "
                         "counter / B. --sim builds the engine sized for B frames; a --port "
                         "board must run that config (python -m host.simboard --batch B serves "
                         "one)")
    rn.add_argument("--offset", type=int, default=0, help="first test image (default 0)")
    rn.add_argument("--clock-mhz", type=float, default=100.0,
                    help="board clock for the fps figures (default 100)")
    rn.add_argument("--timeout", type=float, default=None,
                    help="seconds to wait for a response (default 2, or 60 with --sim)")
    rn.add_argument("--retries", type=int, default=3, help="re-sends of a failed request (default 3)")
    rn.add_argument("--build-dir", default="build/simboard",
                    help="with --sim: Verilator build directory (reused while the design is unchanged)")
    rn.add_argument("--json", action="store_true",
                    help='print {"frames", "accuracy", "mismatches", "cycles_per_frame", '
                         '"fps_compute", "fps_link", ..., "batch", "requests", "padded_frames"} '
                         'as JSON on stdout')
    rn.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _cmd_pack(args) -> int:
    from .pack import format_report, format_schedule, load_model, pack, parse_array, storage_report

    try:
        qmodel = load_model(args.model)
        packed = pack(qmodel, array=parse_array(args.array), batch=args.batch)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(packed.image)
    report = storage_report(packed)
    cycles = packed.layout.expected_cycles
    # cycles_per_frame stays one frame's; cycles_per_run and the schedule's rows are a whole run.
    report.update(model=qmodel.name, out=str(out), config_id=packed.config.config_id,
                  config=packed.config.as_dict(), batch=args.batch,
                  depth_first=packed.layout.depth_first, schedule=packed.layout.schedule(),
                  cycles_per_frame=cycles if args.batch == 1 else cycles / args.batch,
                  cycles_per_run=cycles)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{qmodel.name}: packed for {packed.config!r} (config_id {packed.config.config_id:#010x})")
        if args.batch > 1:
            print(f"batch: {args.batch} frames a run (input {packed.layout.input_len} bytes, "
                  f"result {packed.layout.output_len} bytes a request; the engine's activation "
                  f"memory holds {packed.config.act_depth} bytes)")
        print(f"wrote {out}")
        print(format_report(report))
        print(format_schedule(packed.layout))
    return 0


def _cmd_run(args) -> int:
    if args.frames < 1:
        raise UsageError(f"--frames must be a positive integer, not {args.frames}")
    if args.baud is not None and args.baud <= 0:
        raise UsageError(f"--baud must be a positive integer, not {args.baud}")
    if (args.uart or args.divisor != 8) and not args.sim:
        raise UsageError("--uart and --divisor apply to --sim only")
    if args.divisor < 4:
        raise UsageError(f"--divisor must be at least 4 clock cycles per bit, not {args.divisor}")
    from .runner import run

    try:
        result = run(model=args.model, port=args.port, sim=args.sim, baud=args.baud, uart=args.uart,
                     divisor=args.divisor, array=args.array, dataset=args.dataset,
                     data_dir=args.data_dir, frames=args.frames, offset=args.offset,
                     clock_mhz=args.clock_mhz, timeout=args.timeout, retries=args.retries,
                     build_dir=args.build_dir, progress=not args.no_progress, batch=args.batch)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.json:
        d = result.as_dict()
        keys = ("frames", "accuracy", "mismatches", "cycles_per_frame", "fps_compute", "fps_link")
        ordered = {k: d[k] for k in keys} | {k: v for k, v in d.items() if k not in keys}
        # JSON has no infinity: an unknown rate (no counters, no baud) is null.
        ordered = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                   for k, v in ordered.items()}
        print(json.dumps(ordered, indent=2))
    else:
        print(result.summary())
    return 1 if result.mismatches else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .protocol import ProtocolError
    from .simboard import SimBoardError
    from .transport import TransportError

    try:
        return {"pack": _cmd_pack, "run": _cmd_run}[args.command](args)
    except UsageError as e:
        print(f"python -m host {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ProtocolError, TransportError, SimBoardError) as e:
        print(f"python -m host {args.command}: link error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
