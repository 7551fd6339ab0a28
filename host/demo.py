"""``make demo``: the main job end to end, on the simulated engine.

1. train FashionNet with a PSD variant on Fashion-MNIST (a few epochs; cached in ``runs/``),
2. quantize it to int8 (BN folded, per-channel weights, requantization multipliers),
3. pack it into the engine image (pattern checks, size next to the storage formulas),
4. generate the Arty A7-35T build tree and its Yosys utilization (cached while the Verilog is unchanged),
5. run test frames through the Verilator-simulated engine over the serial protocol, two frames
   a request (``--batch``), checking every output bit-exact against the PyTorch integer golden
   and ``hw.reference``,

then print one summary. ``python -m host.demo --help`` lists the knobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

__all__ = ["main", "dense_cycles"]


def _stage(title):
    print(f"\n== {title}", flush=True)
    return time.monotonic()


def dense_cycles(qmodel, config, *, batch: int = 1) -> float:
    """Engine cycles a frame of the same network with every sparse layer dense (pSC9), run the
    same way (``batch`` frames a run), from the exact cycle model of ``hw.layout`` (the RTL tests
    assert the engine matches it cycle for cycle)."""
    import copy
    import numpy as np
    from hw.array import ArrayConfig
    from hw.layout import build_layout

    dense = copy.deepcopy(qmodel)
    for layer in dense.layers:
        if layer.period_table is not None:
            layer.period_table = None
            layer.variant = "pSC9"
            # Weights outside the old pattern are zero: a dense layer may hold them.
            layer.weight = np.asarray(layer.weight)
    # Same array; memories sized for the dense weights (cycles do not depend on depths).
    dense_config = ArrayConfig.for_model(dense, rows=config.rows, cols=config.cols,
                                         groups=config.groups, batch=batch)
    cycles = build_layout(dense, dense_config, batch=batch).expected_cycles
    return cycles if batch == 1 else cycles / batch


def _verilog_digest(tree: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(tree.rglob("*.v")):
        h.update(p.read_bytes())
    return h.hexdigest()


def _board(q_path, out: Path, synth: bool, batch: int = 1):
    """Arty A7 tree (always regenerated) and utilization (re-synthesized when the Verilog changed)
    of the engine sized for runs of ``batch`` frames."""
    from gateware.build import build

    cache = out / "utilization.cache.json"
    tree = build(board="arty_a7", model=q_path, out=out, synth=False, progress=lambda m: None,
                 batch=batch)
    digest = _verilog_digest(out)
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("digest") == digest:
            print("utilization: cached (Verilog unchanged)")
            return tree, cached["utilization"]
    if not synth:
        return tree, None
    result = build(board="arty_a7", model=q_path, out=out, synth=True, progress=print, batch=batch)
    cache.write_text(json.dumps({"digest": digest, "utilization": result.utilization}))
    return result, result.utilization


def parse_args(argv=None):
    from hw.layout import batch_arg
    p = argparse.ArgumentParser(prog="python -m host.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="FashionNet_PSD2_P8",
                   help="network and variant to train (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads for training (default: %(default)s; on a shared 2-core "
                        "machine one thread trained fastest)")
    p.add_argument("--frames", type=int, default=200,
                   help="test frames through the simulated engine (default: %(default)s)")
    p.add_argument("--batch", type=batch_arg, default=2, metavar="B",
                   help="frames a run (default: %(default)s): the engine sized for B frames, its "
                        "small late maps taking them all at once and, where the early maps would "
                        "need more block RAM, its first layers depth-first (python -m host pack "
                        "--help); FashionNet in batches of two takes the Arty A7-35T's block RAM "
                        "of one frame and fewer cycles a frame. 1: one frame a request")
    p.add_argument("--runs", default="runs/demo", help="cache directory (default: %(default)s)")
    p.add_argument("--build", default="build/demo", help="build directory (default: %(default)s)")
    p.add_argument("--no-synth", action="store_true",
                   help="skip Yosys synthesis (no utilization figures) when nothing is cached")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.frames < 1:
        p.error("--epochs and --frames must be positive integers")
    from hw.networks import parse_model
    from hw.variants import VariantNameError
    try:
        network, variant = parse_model(args.model)
    except (VariantNameError, ValueError) as e:
        p.error(f"--model {args.model}: {e}")
    if not (variant.is_periodic or variant.is_dense):
        p.error(f"--model {args.model}: the engine runs periodic (PS, PSD) or dense variants, not "
                f"{variant.name}")
    args.dataset = network.dataset
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    times = {}

    t = _stage(f"1/5 train {args.model} on {args.dataset} ({args.epochs} epochs, cached)")
    from models.prepare import prepare
    run_dir = Path(args.runs) / args.model
    q_path = prepare(args.model, epochs=args.epochs, out=str(run_dir), threads=args.threads)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    times["train+quantize"] = time.monotonic() - t

    t = _stage("2/5 int8 accuracy of the quantized model (PyTorch integer golden, full test set)")
    from hw.qmodel import QModel
    from models.quantize import evaluate_int8
    from models.data import load_dataset, make_loader
    qmodel = QModel.load(q_path)
    test_loader = make_loader(load_dataset(qmodel.dataset, "test"), batch_size=500, shuffle=False)
    acc_int8 = evaluate_int8(qmodel, test_loader, qmodel.dataset)
    print(f"float {metrics['accuracy_top1']:.2f}%  int8 {acc_int8:.2f}%")
    times["int8 eval"] = time.monotonic() - t

    t = _stage("3/5 pack the engine image")
    from host.pack import pack, storage_report, format_report, format_schedule
    packed = pack(qmodel, batch=args.batch)
    storage = storage_report(packed)
    print(format_report(storage))
    print(format_schedule(packed.layout))
    dense = dense_cycles(qmodel, packed.config, batch=args.batch)
    times["pack"] = time.monotonic() - t

    t = _stage("4/5 Arty A7-35T build tree and Yosys utilization")
    _, util = _board(q_path, Path(args.build) / "arty_a7", synth=not args.no_synth,
                     batch=args.batch)
    times["board"] = time.monotonic() - t

    t = _stage(f"5/5 {args.frames} frames through the simulated engine (Verilator)")
    from gateware.boards import get_board
    from host.runner import run
    # The link-bound figure is for the Arty's USB-UART at its default baud; the simulated
    # board's pty moves bytes as fast as the simulator takes them.
    result = run(model=qmodel, sim=True, frames=args.frames, baud=get_board("arty_a7").default_baud,
                 build_dir=str(Path(args.build) / "simboard"), batch=args.batch)
    times["simulate"] = time.monotonic() - t
    total = time.monotonic() - t_start

    summary = {
        "model": args.model,
        "accuracy_float": metrics["accuracy_top1"],
        "accuracy_int8": acc_int8,
        "accuracy_hardware": result.accuracy,
        "frames": result.frames,
        "batch": args.batch,
        "depth_first": packed.layout.depth_first,
        "mismatches": result.mismatches,
        "cycles_per_frame": result.cycles_per_frame,
        "dense_cycles_per_frame": dense,
        "speedup_vs_dense": dense / result.cycles_per_frame,
        "fps_compute_100MHz": result.fps_compute,
        "fps_link": result.fps_link,
        "storage": storage,
        "utilization": util,
        "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(total, 1)},
    }
    print("\n== summary")
    print(f"model              {args.model} ({metrics.get('epoch', '?')} epochs)")
    print(f"accuracy           float {summary['accuracy_float']:.2f}%   int8 {acc_int8:.2f}%   "
          f"hardware {result.accuracy:.2f}% on {result.frames} frames "
          f"(golden {result.golden_accuracy:.2f}% on the same frames)")
    print(f"mismatches         {result.mismatches} (RTL vs PyTorch integer golden and hw.reference)")
    how = (f" (batches of {args.batch}" + (f", first {packed.layout.depth_first} layers "
                                           f"depth-first" if packed.layout.depth_first else "")
           + ")") if args.batch > 1 else ""
    print(f"cycles / frame     {result.cycles_per_frame:.0f} sparse vs {dense:.0f} dense{how}: "
          f"speedup {summary['speedup_vs_dense']:.2f}x  "
          f"({result.fps_compute:.0f} fps at 100 MHz, {result.fps_link:.0f} fps link-bound at "
          f"{result.baud / 1e6:g} Mbaud)")
    print(f"weight storage     {_storage_line(storage)}")
    if util:
        print(f"Arty A7-35T        LUT {util['LUT']}  FF {util['FF']}  DSP48E1 {util['DSP48E1']}  "
              f"RAMB36E1 {util['RAMB36E1']}  RAMB18E1 {util['RAMB18E1']}  fits: {util['fits']}")
    else:
        print("Arty A7-35T        utilization not synthesized (--no-synth)")
    print(f"wall time          {total / 60:.1f} min  " +
          "  ".join(f"{k} {v:.0f}s" for k, v in times.items()))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0 if result.mismatches == 0 else 1


def _storage_line(storage) -> str:
    f = storage["formulas"]
    return (f"engine image {storage['weight_section_bits']} bits (weights + period tables); "
            f"formulas: dense {f['Dense']:.0f}, CSR {f['CSR']:.0f}, CSR_P {f['CSR_P']:.0f} bits "
            f"(CSR_P/dense {f['CSR_P'] / f['Dense']:.3f}, image/dense "
            f"{storage['weight_section_bits'] / f['Dense']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
