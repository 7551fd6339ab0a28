"""Benchmark of the sparse systolic engine's RTL: cycles, utilization and speedup per layer.

``python -m bench.engine [--json]`` runs a fixed suite of layer shapes and variants through the
engine's Verilog in Verilator (one build, all cases in one cocotb run) and reports per case the
engine's own ``cycles`` and ``macs`` counters, utilization ``macs / (R * C * cycles)``, the cycles of
the dense (pSC9) version of the same layer on the same array, the speedup over dense, the ideal
speedup (dense MACs / sparse MACs) and whether the RTL output matched hw.reference bit for bit.
Each row also carries ``nnz_per_filter`` (non-zeros per filter row; for a network the smallest
of its layers), ``in_target`` (the utilization target >= 0.90 applies: at least 64 of them),
``tile_bound``: the best utilization the layer's mapping allows (``hw.layout.tile_bound``: the
tiles' cycles alone, no per-layer overhead), which separates shape quantization from engine
overhead, and ``row_bound``: the best any mapping on the engine allows, its row groups being
filled by whole rotation classes (``hw.layout.row_bound``). ``--speed`` also measures simulated
cycles per second on Verilator and Icarus, on the default engine (``ArrayConfig()``) and on the
benchmarked one.
``--batch B`` runs every case (and its dense baseline) as one run of B frames
(``hw.layout.build_layout(batch=B)``: small maps fill the columns with several frames' pixels);
counters, utilization and speedup are then the batch's, ``cycles_per_frame`` its cycles / B.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from hw.array import ArrayConfig
from hw.layout import batch_arg

__all__ = ["SUITE", "VARIANTS", "NETWORKS", "BENCH_CONFIG", "TARGET_UTILIZATION",
           "TARGET_SPEEDUP_OF_IDEAL", "run_suite", "run_networks", "run_auto_shapes", "bench_config",
           "target_summary", "main"]

#: The engine benchmarked: the default 8 x 8 array with memories for every suite layer and four
#: row groups (each layer runs the 1, 2 or 4 groups, or the fold, its cycle model finds fastest;
#: ``--groups 2`` benchmarks the default config's two).
BENCH_CONFIG = ArrayConfig(rows=8, cols=8, p_max=16, weight_depth=16384, table_depth=256,
                           param_depth=512, act_depth=40960, max_layers=8, groups=4)

def bench_config(*, groups: int = BENCH_CONFIG.groups, batch: int = 1) -> ArrayConfig:
    """:data:`BENCH_CONFIG` with ``groups`` row groups and activation memory for ``batch`` frames
    of every suite layer and network."""
    return BENCH_CONFIG.replace(groups=groups, act_depth=BENCH_CONFIG.act_depth * batch)


def _frames(q, seed, batch):
    shape = tuple(q.input_shape) if batch == 1 else (batch, *q.input_shape)
    return np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8)


#: (case, c_in, c_out, h, w, stride): FashionNet's sparse convs and two wider layers.
SUITE = (
    ("fashionnet.conv2", 16, 32, 28, 28, 2),
    ("fashionnet.conv3", 32, 32, 14, 14, 2),
    ("fashionnet.conv4", 32, 64, 7, 7, 2),
    ("wide_64x64_16x16", 64, 64, 16, 16, 1),
    ("wide_32x128_8x8", 32, 128, 8, 8, 1),
)
VARIANTS = ("PS4_P4", "PS2_P6", "PS1_P9", "PSD4_P8", "PSD2_P8", "PSD1_P8", "PSD2_P16")


def _cases(suite, variants, seed, batch=1):
    from bench.layers import random_layer_model
    from bench.rtl import Case
    cases = []
    for i, (name, c_in, c_out, h, w, stride) in enumerate(suite):
        for v in ("pSC9",) + tuple(variants):
            q = random_layer_model(seed=seed + i, c_in=c_in, c_out=c_out, h=h, w=w, stride=stride,
                                   variant=v)
            cases.append((name, v, Case(f"{name} {v}", q, _frames(q, seed + i, batch), batch=batch)))
    return cases


def run_suite(*, suite=SUITE, variants=VARIANTS, config=BENCH_CONFIG, sim="verilator", seed=0,
              progress=None, batch=1) -> tuple[list, dict]:
    """Run the suite (each case ``batch`` frames a run); return (rows with the issue's JSON
    keys plus ``batch`` and ``cycles_per_frame``, run info with simulation speed)."""
    from bench.rtl import run_rtl
    cases = _cases(suite, variants, seed, batch)
    if progress:
        progress(f"running {len(cases)} layers on {sim} ({config.rows}x{config.cols} array) ...")
    t0 = time.perf_counter()
    results = run_rtl(config, [c for _, _, c in cases], sim=sim, seed=seed, strict=False)
    wall = time.perf_counter() - t0
    dense = {name: r["counters"]["cycles"] for (name, v, _), r in zip(cases, results) if v == "pSC9"}
    dense_macs = {name: r["layout"].layers[0].dense_macs for (name, v, _), r in zip(cases, results)
                  if v == "pSC9"}
    rows = []
    for (name, v, _), r in zip(cases, results):
        if v == "pSC9":
            continue
        cyc, macs = r["counters"]["cycles"], r["counters"]["macs"]
        rows.append({
            "case": name, "variant": v, "cycles": cyc, "macs": macs,
            "utilization": round(macs / (config.rows * config.cols * cyc), 4),
            "dense_cycles": dense[name], "speedup": round(dense[name] / cyc, 3),
            "ideal_speedup": round(dense_macs[name] / macs, 3), "bit_exact": bool(r["bit_exact"]),
            "batch": batch, "cycles_per_frame": round(cyc / batch, 1),
            **_bounds(r["layout"].layers, config),
        })
    sim_cycles = sum(r["counters"]["cycles"] for r in results)
    compute_wall = sum(r["compute_wall_s"] for r in results)
    info = {"sim": sim, "cases": len(results), "wall_s": round(wall, 1),
            "sim_cycles": sim_cycles, "compute_cycles_per_s": round(sim_cycles / max(compute_wall, 1e-9)),
            "dense_all_bit_exact": all(r["bit_exact"] for r in results)}
    return rows, info


def run_auto_shapes(rows, *, suite=SUITE, variants=VARIANTS, config=BENCH_CONFIG, sim="verilator",
                    seed=0, progress=None, batch=1) -> None:
    """Add to each layer row how the layer runs on the array shape ``--array auto`` generates
    for it (:meth:`hw.array.ArrayConfig.shape_for_model`: the same ``rows * cols`` MACs, the
    fewest model cycles): ``auto_shape`` ("16x4"), ``auto_cycles``, ``auto_utilization``,
    ``auto_bit_exact``, ``auto_mapping``. Layers whose shape is ``config``'s copy their row; the
    others run on one engine per shape (``config``'s depths and groups)."""
    from hw.array import ArrayConfig
    from bench.rtl import run_rtl
    pes = config.rows * config.cols
    by_case = {(r["case"], r["variant"]): r for r in rows}
    todo = {}
    for name, v, case in _cases(suite, variants, seed, batch):
        row = by_case.get((name, v))
        if row is None:
            continue
        shape = ArrayConfig.shape_for_model(case.qmodel, macs=pes, batch=batch)
        if shape == (config.rows, config.cols):
            row.update(auto_shape=f"{shape[0]}x{shape[1]}", auto_cycles=row["cycles"],
                       auto_utilization=row["utilization"], auto_bit_exact=row["bit_exact"],
                       auto_mapping=row["mapping"])
        else:
            todo.setdefault(shape, []).append((row, case))
    for (r, c), items in sorted(todo.items()):
        shaped = config.replace(rows=r, cols=c)
        if progress:
            progress(f"running {len(items)} layers on {sim} ({r}x{c} array) ...")
        results = run_rtl(shaped, [case for _, case in items], sim=sim, seed=seed, strict=False)
        for (row, _), res in zip(items, results):
            cyc = res["counters"]["cycles"]
            row.update(auto_shape=f"{r}x{c}", auto_cycles=cyc,
                       auto_utilization=round(res["counters"]["macs"] / (pes * cyc), 4),
                       auto_bit_exact=bool(res["bit_exact"]),
                       auto_mapping=res["layout"].layers[0].mapping)


#: The issue's utilization target applies to layers with at least this many non-zeros per filter.
TARGET_NNZ_PER_FILTER = 64


def _bounds(plans, config) -> dict:
    """``nnz_per_filter`` (non-zeros per filter row, averaged over a layer's filters; for several
    layers the smallest), ``in_target`` (whether the utilization target applies),
    ``tile_bound``: the utilization the mapping allows at best (:func:`hw.layout.tile_bound`, over
    several layers their MACs over the sum of their tile slots), ``row_bound``: the utilization
    any mapping on this engine allows at best, its rows being filled by rotation classes
    (:func:`hw.layout.row_bound`, combined over layers the same way) and ``mapping``: how a single
    layer runs (``hw.layout.LayerPlan.mapping``; a network: "per layer", which
    ``python -m host pack`` lists)."""
    from hw.layout import row_bound, tile_bound
    R, C = config.rows, config.cols
    # (A batch's plan counts all its frames' MACs and output pixels alike.)
    nnz = [p.macs / (p.fields["c_out"] * p.fields["h_out"] * p.fields["w_out"] * p.fields["frames"])
           for p in plans]
    slots = sum(p.macs / tile_bound(p, rows=R, cols=C) for p in plans)
    row_slots = sum(p.macs / row_bound(p.class_filters, rows=R, groups=config.groups)
                    for p in plans)
    return {"nnz_per_filter": round(min(nnz), 1), "in_target": min(nnz) >= TARGET_NNZ_PER_FILTER,
            "tile_bound": round(sum(p.macs for p in plans) / slots, 4),
            "row_bound": round(sum(p.macs for p in plans) / row_slots, 4),
            "mapping": plans[0].mapping if len(plans) == 1 else "per layer"}


def sim_speed(sim: str, *, config=None) -> dict:
    """Simulated engine cycles per second of ``sim`` on one wide layer (compute phase only):
    64 -> 64 channels on a 16 x 16 map, PSD2_P8, some 47,000 cycles on an 8x8 engine (a
    14 x 14 layer of 4,700 cycles took Verilator 0.06 s, too short to time). ``config``: the
    engine, default the default one (``ArrayConfig()``), whose memories hold the layer."""
    config = ArrayConfig() if config is None else config
    from bench.layers import random_layer_model
    from bench.rtl import Case, run_rtl
    q = random_layer_model(seed=1, c_in=64, c_out=64, h=16, w=16, stride=1, variant="PSD2_P8")
    frame = np.random.default_rng(1).integers(-128, 128, q.input_shape).astype(np.int8)
    r = run_rtl(config, [Case("speed", q, frame)], sim=sim, strict=False)[0]
    return {"sim": sim, "engine": repr(config), "cycles": r["counters"]["cycles"], "compute_wall_s": round(r["compute_wall_s"], 3),
            "cycles_per_s": round(r["counters"]["cycles"] / max(r["compute_wall_s"], 1e-9)),
            "bit_exact": r["bit_exact"]}


#: Whole networks (random int8 weights, host.synthetic), each against its dense version.
NETWORKS = ("FashionNet_PSD2_P8", "FashionNet_PS4_P4", "FashionPoolNet_PSD2_P8", "DigitsNet_PSD2_P8")


def run_networks(names=NETWORKS, *, config=BENCH_CONFIG, sim="verilator", seed=0, batch=1) -> list:
    """Rows (same keys as the layer suite) for whole networks (``batch`` frames a run); ``case``
    is the network name."""
    from bench.rtl import Case, run_rtl
    from host.synthetic import random_qmodel
    cases = []
    for name in names:
        base = name.split("_")[0]
        for n in (base, name):
            q = random_qmodel(n, seed=seed)
            cases.append(Case(n, q, _frames(q, seed, batch), batch=batch))
    res = run_rtl(config, cases, sim=sim, seed=seed, strict=False)
    rows = []
    for i in range(0, len(res), 2):
        d, s = res[i], res[i + 1]
        cyc, macs = s["counters"]["cycles"], s["counters"]["macs"]
        dense_macs = sum(l.dense_macs for l in s["layout"].layers)
        rows.append({"case": s["case"].split("_")[0] + " (network)", "variant": s["case"].split("_", 1)[1],
                     "cycles": cyc, "macs": macs,
                     "utilization": round(macs / (config.rows * config.cols * cyc), 4),
                     "dense_cycles": d["counters"]["cycles"],
                     "speedup": round(d["counters"]["cycles"] / cyc, 3),
                     "ideal_speedup": round(dense_macs / macs, 3),
                     "bit_exact": bool(s["bit_exact"] and d["bit_exact"]),
                     "batch": batch, "cycles_per_frame": round(cyc / batch, 1),
                     **_bounds(s["layout"].layers, config)})
    return rows


#: The issue's targets: utilization at least this on rows with ``in_target``, and speedup at least
#: this fraction of the ideal on every layer row.
TARGET_UTILIZATION = 0.90
TARGET_SPEEDUP_OF_IDEAL = 0.90


def target_summary(rows) -> list:
    """Lines that count the rows meeting the targets: utilization >=
    :data:`TARGET_UTILIZATION` on the layer rows with ``in_target`` (and on their
    ``--auto-shape`` engines, when run), speedup >= :data:`TARGET_SPEEDUP_OF_IDEAL` of the ideal
    on every layer row (networks are not the issue's layers and are left out). Each row that
    misses names its figure and the ``row_bound`` that caps it, so a miss the engine's row
    groups cannot avoid (bound below the target) reads as such."""
    layers = [r for r in rows if "(network)" not in r["case"]]
    util = [r for r in layers if r["in_target"]]
    miss = lambda r, v: f"{r['case']} {r['variant']} {v:.3f} (row bound {r['row_bound']:.3f})"
    low = [r for r in util if r["utilization"] < TARGET_UTILIZATION]
    lines = [f"utilization >= {TARGET_UTILIZATION:.2f} where a filter has >= "
             f"{TARGET_NNZ_PER_FILTER} non-zeros: {len(util) - len(low)} of {len(util)} rows"
             + (": below, " + "; ".join(miss(r, r["utilization"]) for r in low) if low else "")]
    auto = [r for r in util if "auto_utilization" in r]
    if auto:
        low_auto = [r for r in auto if r["auto_utilization"] < TARGET_UTILIZATION]
        lines.append(f"  on each layer's --array auto shape: {len(auto) - len(low_auto)} of "
                     f"{len(auto)} rows"
                     + (": below, " + "; ".join(f"{r['case']} {r['variant']} {r['auto_shape']} "
                                                 f"{r['auto_utilization']:.3f}" for r in low_auto)
                        if low_auto else ""))
    slow = [r for r in layers if r["speedup"] < TARGET_SPEEDUP_OF_IDEAL * r["ideal_speedup"]]
    lines.append(f"speedup >= {TARGET_SPEEDUP_OF_IDEAL:.2f} x ideal: {len(layers) - len(slow)} of "
                 f"{len(layers)} layer rows"
                 + (": below, " + "; ".join(miss(r, r["speedup"] / r["ideal_speedup"]) for r in slow)
                    if slow else ""))
    return lines


def _table(rows) -> str:
    w = max([20] + [len(r["case"]) for r in rows])
    head = f"{'case':{w}s} {'variant':9s} {'nnz/f':>6s} {'cycles':>8s} {'macs':>9s} {'util':>6s} " \
           f"{'bound':>6s} {'rows':>6s} {'dense':>8s} {'speedup':>7s} {'ideal':>6s} " \
           f"{'sp/ideal':>8s} exact  mapping"
    lines = [head]
    for r in rows:
        # '*': the utilization target (>= 0.90 with >= 64 non-zeros per filter) applies.
        nnz = f"{r['nnz_per_filter']:5.0f}{'*' if r['in_target'] else ' '}"
        lines.append(f"{r['case']:{w}s} {r['variant']:9s} {nnz:>6s} {r['cycles']:8d} {r['macs']:9d} "
                     f"{r['utilization']:6.3f} {r['tile_bound']:6.3f} {r['row_bound']:6.3f} "
                     f"{r['dense_cycles']:8d} "
                     f"{r['speedup']:7.2f} {r['ideal_speedup']:6.2f} "
                     f"{r['speedup'] / r['ideal_speedup']:8.3f} {str(r['bit_exact']):5s}  {r['mapping']}"
                     + (f"  [auto {r['auto_shape']}: util {r['auto_utilization']:.3f}, "
                        f"exact {r['auto_bit_exact']}, {r['auto_mapping']}]" if "auto_shape" in r else ""))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the results as a JSON list only")
    p.add_argument("--speed", action="store_true",
                   help="also measure simulated cycles/s on Verilator and Icarus (to stderr), on "
                        "the default engine and on the benchmarked one")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated variants (PS/PSD; default: %(default)s)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names from the suite (default: all)")
    p.add_argument("--seed", type=int, default=0, help="weights/input seed (default: %(default)s)")
    p.add_argument("--groups", type=int, default=BENCH_CONFIG.groups, choices=(1, 2, 4),
                   help="row groups of the benchmarked engine (default: %(default)s)")
    p.add_argument("--auto-shape", action="store_true",
                   help="also run each layer on the array shape of the same MAC count that "
                        "--array auto generates for it (hw.array.ArrayConfig.shape_for_model): "
                        "keys auto_shape, auto_cycles, auto_utilization, auto_bit_exact, auto_mapping")
    p.add_argument("--batch", type=batch_arg, default=1,
                   help="frames a run (default 1): each case and its dense baseline run as one "
                        "batch; small maps then fill the array's columns with several frames' "
                        "pixels (the engine's activation memory is sized for the batch)")
    p.add_argument("--networks", action="store_true",
                   help=f"also run whole networks against their dense versions ({', '.join(NETWORKS)})")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from hw.variants import parse_variant
    variants = tuple(v for v in args.variants.split(",") if v)
    for v in variants:
        try:
            pv = parse_variant(v)
        except ValueError as e:
            print(f"bench.engine: error: bad variant {v!r}: {e}", file=sys.stderr)
            return 2
        if not pv.is_periodic:
            print(f"bench.engine: error: variant {v!r} is not periodic (PS/PSD): the engine has no "
                  f"period table to replay for it", file=sys.stderr)
            return 2
    suite = SUITE
    if args.cases:
        names = args.cases.split(",")
        unknown = [n for n in names if n not in {s[0] for s in SUITE}]
        if unknown:
            print(f"bench.engine: error: unknown case(s) {unknown}; known: "
                  f"{', '.join(s[0] for s in SUITE)}", file=sys.stderr)
            return 2
        suite = tuple(s for s in SUITE if s[0] in names)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    # The simulator writes its log to stdout: send it to stderr so stdout holds only the report.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        config = bench_config(groups=args.groups, batch=args.batch)
        rows, info = run_suite(suite=suite, variants=variants, seed=args.seed, progress=log,
                               config=config, batch=args.batch)
        if args.auto_shape:
            run_auto_shapes(rows, suite=suite, variants=variants, seed=args.seed, progress=log,
                            config=config, batch=args.batch)
        if args.networks:
            log(f"running {len(NETWORKS)} networks and their dense versions ...")
            rows += run_networks(seed=args.seed, config=config, batch=args.batch)
        if args.speed:
            speeds = [sim_speed(sim, config=c) for c in (ArrayConfig(), config)
                      for sim in ("verilator", "icarus")]
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    if args.json:
        print(json.dumps(rows, indent=1))
        for line in target_summary(rows):
            log(line)
    else:
        print(_table(rows))
        print(f"\n{info['cases']} RTL runs on {info['sim']} in {info['wall_s']} s; "
              f"{info['sim_cycles']} engine cycles at {info['compute_cycles_per_s']} cycles/s "
              f"(compute phase); dense runs bit-exact: {info['dense_all_bit_exact']}")
        print("\n".join(target_summary(rows)))
    if args.speed:
        for sp in speeds:
            log(f"simulation speed {sp['sim']}: {json.dumps(sp)}")
    exact = all(r["bit_exact"] and r.get("auto_bit_exact", True) for r in rows)
    return 0 if exact and info["dense_all_bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
