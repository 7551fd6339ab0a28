"""``python -m hw.report``: the paper-reproduction report (parameters, FLOPs, storage).

Subcommands (each prints aligned tables, or JSON with ``--json``)::

    params                     parameter counts of VGG16 / ResNet18 in every paper variant
    flops --dataset D          conv FLOPs (one MAC = one FLOP) for cifar10 or tinyimagenet
    storage                    bits vs density and exact break-even density per format
    network-storage --model M  a model's conv weight storage per format, relative to dense
    plot storage --out PNG     storage vs density per format (the paper's Fig. 7)
    plot accuracy --metrics JSON... --out PNG
                               accuracy vs FLOPs from the training metrics files

Without a subcommand the whole report is printed. ``params`` and ``flops`` come from
:mod:`hw.costs`; storage comes from :mod:`hw.storage`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from fractions import Fraction
from pathlib import Path

from .formats import FORMATS, BitWidths
from .storage import (PAPER_TILE, PAPER_WIDTHS, METHODS, SPARSE_FORMATS, break_even_all,
                      format_bits, network_storage)
from .variants import VariantNameError

__all__ = ["main", "build_parser", "storage_report", "format_table", "load_metrics",
           "REPORT_MODELS", "FLOPS_DATASETS"]

#: Models of the whole report's network-storage table.
REPORT_MODELS = ("VGG16", "VGG16_PS4_P4", "VGG16_PSD2_P8", "VGG16_PSD1_P16", "VGG16_pSC2",
                 "ResNet18", "ResNet18_PS2_P6", "ResNet18_PSD4_P8", "ResNet18_PSD1_P8")
FLOPS_DATASETS = ("cifar10", "tinyimagenet")


class ReportError(Exception):
    """A failure to report on valid input (e.g. a missing module); exit status 1."""


# ---------------------------------------------------------------------------- data


def storage_report(*, rows: int, cols: int, widths: BitWidths, period: int,
                   col_period: int | None = None, points: int = 21) -> dict:
    """Break-even densities and bits-vs-density curves of an ``rows x cols`` matrix.

    Returns
    -------
    dict
        ``{"break_even": {fmt: Fraction}, "bits": {fmt: [(Fraction density, bits), ...]}}``
        with ``points`` evenly spaced densities from 0 to 1; ``bits`` includes Dense.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2, not {points!r}")
    col_period = period if col_period is None else col_period
    periods = {"CSR_P": period, "CSC_P": col_period}
    grid = [Fraction(i, points - 1) for i in range(points)]
    bits = {f: [(d, format_bits(f, rows=rows, cols=cols, rho=d, widths=widths,
                                period=periods.get(f))) for d in grid] for f in FORMATS}
    return {"break_even": break_even_all(rows=rows, cols=cols, widths=widths, period=period,
                                         col_period=col_period),
            "bits": bits}


def _costs():
    try:
        from . import costs
    except ImportError as e:
        raise ReportError(f"hw.costs is not available ({e}); params and flops need it") from e
    return costs


def load_metrics(paths) -> tuple:
    """Read training metrics JSON files into plot records.

    Each file holds one object (or a list of objects) with ``"model"``, ``"flops"`` and
    ``"accuracy_top1"`` (or ``"top1"``). Returns ``(records, skipped)``; ``skipped`` lists
    ``"file: reason"`` for objects without those keys.
    """
    records, skipped = [], []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except OSError as e:
            raise ValueError(f"cannot read metrics file {p}: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"metrics file {p} is not JSON: {e}") from e
        for obj in data if isinstance(data, list) else [data]:
            acc = obj.get("accuracy_top1", obj.get("top1")) if isinstance(obj, dict) else None
            if acc is None or not isinstance(obj.get("flops"), (int, float)) or "model" not in obj:
                skipped.append(f"{p}: needs keys model, flops and accuracy_top1 (or top1)")
                continue
            records.append({"model": str(obj["model"]), "flops": obj["flops"],
                            "accuracy": float(acc)})
    return records, skipped


# ---------------------------------------------------------------------------- text output


def format_table(headers, rows, *, align=None) -> str:
    """Plain-text table: columns padded to width, numbers right-aligned by default."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    if align is None:
        align = ["<"] + [">"] * (len(headers) - 1)
    line = lambda cells: "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))
    out = [line([str(h) for h in headers]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(l.rstrip() for l in out)


def _widths_text(w: BitWidths) -> str:
    return f"b_v={w.b_v} b_r={w.b_r} b_c={w.b_c} b_i={w.b_i} b_P={w.b_P}"


def _params_text(report: dict) -> str:
    rows = [[m, f"{v['total']:,}", f"{v['conv_nonzero']:,}"] for m, v in report.items()]
    return format_table(["model", "total params", "conv non-zeros"], rows)


def _flops_text(reports: dict) -> str:
    """``reports``: ``{dataset: {model: flops}}``; FLOPs in millions, and relative to pSC9."""
    datasets = list(reports)
    models = list(next(iter(reports.values())))
    headers = ["model"]
    for d in datasets:
        headers += [f"{d} MFLOPs", "x dense"]
    rows = []
    for m in models:
        row = [m]
        for d in datasets:
            fl = reports[d].get(m)
            base = reports[d].get(re.sub(r"_(pSC|PSD|PS)\d+(_P\d+)?$", "", m) + "_pSC9")
            row += ["-" if fl is None else f"{fl / 1e6:,.2f}",
                    "-" if fl is None or not base else f"{fl / base:.3f}"]
        rows.append(row)
    return format_table(headers, rows)


def _storage_text(rep: dict, *, rows: int, cols: int, widths: BitWidths) -> str:
    dense = rows * cols * widths.b_v
    trows = []
    for f in SPARSE_FORMATS:
        d = rep["break_even"][f]
        half = dict(rep["bits"][f]).get(Fraction(1, 2))
        trows.append([f, str(d), f"{float(d):.4f}",
                      "-" if half is None else f"{float(half) / dense:.3f}"])
    return format_table(["format", "break-even rho", "~", "bits/dense at rho=1/2"], trows)


def _network_text(results: dict) -> str:
    rows = [[m] + [f"{r[f]:.4f}" for f in FORMATS] for m, r in results.items()]
    return format_table(["model"] + list(FORMATS), rows)


# ---------------------------------------------------------------------------- argument types


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {v}")
    return v


def _tile(text: str) -> tuple:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise argparse.ArgumentTypeError(f"tile must be ROWSxCOLS with positive sizes, e.g. 32x12, "
                                         f"not {text!r}")
    return int(m[1]), int(m[2])


def _add_widths(p: argparse.ArgumentParser):
    w = PAPER_WIDTHS
    g = p.add_argument_group("bit widths (defaults: the paper's example)")
    g.add_argument("--bv", type=_positive, default=w.b_v, help=f"bits per value (default {w.b_v})")
    g.add_argument("--br", type=_positive, default=w.b_r,
                   help=f"bits per row index (default {w.b_r})")
    g.add_argument("--bc", type=_positive, default=w.b_c,
                   help=f"bits per column index (default {w.b_c})")
    g.add_argument("--bi", type=_positive, default=w.b_i,
                   help=f"bits per index-pointer entry (default {w.b_i})")
    g.add_argument("--bp", type=_positive, default=w.b_P,
                   help=f"bits for the period (default {w.b_P})")


def _add_matrix(p: argparse.ArgumentParser):
    p.add_argument("--rows", type=_positive, default=PAPER_TILE[0],
                   help=f"matrix rows H_F (default {PAPER_TILE[0]})")
    p.add_argument("--cols", type=_positive, default=PAPER_TILE[1],
                   help=f"matrix columns W_F (default {PAPER_TILE[1]})")
    p.add_argument("--period", type=_positive, default=8,
                   help="period P of CSR_P (rows) and, unless --col-period, of CSC_P (default 8)")
    p.add_argument("--col-period", type=_positive, default=None,
                   help="CSC_P's period in columns (default: --period, as METHOD.md's table; "
                        "a rotated conv layer's is P*k*k)")
    p.add_argument("--points", type=_positive, default=21,
                   help="densities sampled from 0 to 1 for the curves (default 21, at least 2)")
    _add_widths(p)


def _widths(args) -> BitWidths:
    return BitWidths(b_v=args.bv, b_r=args.br, b_c=args.bc, b_i=args.bi, b_P=args.bp)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m hw.report``."""
    parser = argparse.ArgumentParser(
        prog="python -m hw.report",
        description="Paper-reproduction report of pre-defined periodic sparse CNNs (Kundu et al., "
                    "IEEE Trans. Computers 2020): parameters, FLOPs and sparse storage. "
                    "Without a subcommand, print the whole report.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("params", help="parameter counts of VGG16 and ResNet18 per paper variant")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("flops", help="conv FLOPs per model (one MAC = one FLOP)")
    p.add_argument("--dataset", choices=FLOPS_DATASETS, default="cifar10",
                   help="input size: cifar10 (32x32) or tinyimagenet (64x64); default cifar10")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("storage", help="bits vs density and exact break-even density per format",
                       description="Storage of a ROWS x COLS matrix in each format (METHOD.md's "
                                   "formulas) and the largest density at which each format is no "
                                   "larger than dense, exactly.")
    _add_matrix(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("network-storage", help="a model's conv weight storage relative to dense",
                       description="Conv weight storage of a model in each format, relative to "
                                   "dense, with the formulas applied per ROWSxCOLS tile of each "
                                   "layer's flattened weight matrix.")
    p.add_argument("--model", required=True, help="NET_VARIANT, e.g. VGG16_PSD2_P8")
    p.add_argument("--tile", type=_tile, default=PAPER_TILE,
                   help="tile shape ROWSxCOLS (default %dx%d, the paper's)" % PAPER_TILE)
    p.add_argument("--method", choices=METHODS, default="formula",
                   help="formula: METHOD.md's formula per tile (default); exact: what the "
                        "encoders store")
    p.add_argument("--seed", type=int, default=0, help="pattern seed (default 0)")
    p.add_argument("--mode", choices=("random", "authors"), default="random",
                   help="pattern mode (default random)")
    _add_widths(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("plot", help="write a PNG figure")
    plots = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    q = plots.add_parser("storage", help="storage vs density per format (the paper's Fig. 7)")
    _add_matrix(q)
    q.add_argument("--out", required=True, help="PNG file to write")
    q = plots.add_parser("accuracy", help="accuracy vs FLOPs from training metrics JSON files")
    q.add_argument("--metrics", nargs="*", default=[], metavar="JSON",
                   help="metrics files written by models/ training (keys model, flops, "
                        "accuracy_top1 or top1)")
    q.add_argument("--out", required=True, help="PNG file to write")
    return parser


# ---------------------------------------------------------------------------- commands


def _json(obj):
    print(json.dumps(obj, indent=2))


def _cmd_params(args):
    rep = _costs().params_report()
    _json(rep) if args.json else print(_params_text(rep))


def _cmd_flops(args):
    rep = _costs().flops_report(args.dataset)
    _json(rep) if args.json else print(_flops_text({args.dataset: rep}))


def _cmd_storage(args):
    w = _widths(args)
    rep = storage_report(rows=args.rows, cols=args.cols, widths=w, period=args.period,
                         col_period=args.col_period, points=args.points)
    if args.json:
        _json({"break_even": {f: float(d) for f, d in rep["break_even"].items()},
               "break_even_exact": {f: str(d) for f, d in rep["break_even"].items()},
               "bits": {f: [[float(d), float(b)] for d, b in pts]
                        for f, pts in rep["bits"].items()},
               "parameters": {"rows": args.rows, "cols": args.cols, "period": args.period,
                              "col_period": args.col_period or args.period, **w.as_dict()}})
        return
    print(f"Storage of a {args.rows} x {args.cols} matrix, {_widths_text(w)}, P = {args.period}"
          + (f", CSC_P column period {args.col_period}" if args.col_period else ""))
    print(_storage_text(rep, rows=args.rows, cols=args.cols, widths=w))


def _cmd_network_storage(args):
    res = network_storage(args.model, tile=args.tile, widths=_widths(args), seed=args.seed,
                          mode=args.mode, method=args.method)
    if args.json:
        _json(res)
        return
    print(f"Conv weight storage relative to dense, {args.tile[0]}x{args.tile[1]} tiles, "
          f"{_widths_text(_widths(args))}, {args.method}")
    print(_network_text({args.model: res}))


def _cmd_plot(args):
    from .plots import plot_accuracy, plot_storage
    if args.figure == "storage":
        w = _widths(args)
        rep = storage_report(rows=args.rows, cols=args.cols, widths=w, period=args.period,
                             col_period=args.col_period, points=max(args.points, 101))
        out = plot_storage(rep["bits"], out=args.out, break_even=rep["break_even"],
                           title=f"{args.rows} x {args.cols} matrix, {_widths_text(w)}, "
                                 f"P = {args.period}")
        print(f"wrote {out}")
        return
    if not args.metrics:
        print("plot accuracy: no metrics files given (--metrics JSON...); nothing to plot")
        return
    records, skipped = load_metrics(args.metrics)
    for s in skipped:
        print(f"skipped {s}", file=sys.stderr)
    if not records:
        print("plot accuracy: no usable records in the metrics files; nothing to plot")
        return
    print(f"wrote {plot_accuracy(records, out=args.out)}")


def _full_report():
    def progress(msg):
        print(f"[hw.report] {msg}", file=sys.stderr, flush=True)

    print("psconv-accel: paper-reproduction report (Kundu et al., IEEE Trans. Computers 2020)\n")
    try:
        costs = _costs()
        progress("counting parameters ...")
        print("== Parameters (CIFAR-10 models; pre-defined zeros not counted) ==")
        print(_params_text(costs.params_report()) + "\n")
        flops = {}
        for d in FLOPS_DATASETS:
            progress(f"counting FLOPs for {d} ...")
            flops[d] = costs.flops_report(d)
        print("== Conv FLOPs (one MAC = one FLOP) ==")
        print(_flops_text(flops) + "\n")
        if hasattr(costs, "baselines"):
            rows = [[m, d, f"{v['flops'] / 1e6:,.2f}", f"{v['total']:,}"]
                    for d in FLOPS_DATASETS for m, v in costs.baselines(d).items()]
            print("== Low-complexity dense baselines ==")
            print(format_table(["model", "dataset", "MFLOPs", "total params"], rows,
                               align=["<", "<", ">", ">"]) + "\n")
    except ReportError as e:
        print(f"(parameter and FLOP tables skipped: {e})\n")
    R, C = PAPER_TILE
    rep = storage_report(rows=R, cols=C, widths=PAPER_WIDTHS, period=8)
    print(f"== Storage break-even, {R} x {C} tile, {_widths_text(PAPER_WIDTHS)}, P = 8 ==")
    print(_storage_text(rep, rows=R, cols=C, widths=PAPER_WIDTHS) + "\n")
    results = {}
    for i, m in enumerate(REPORT_MODELS):
        progress(f"network storage {i + 1}/{len(REPORT_MODELS)}: {m} ...")
        results[m] = network_storage(m, tile=PAPER_TILE, widths=PAPER_WIDTHS)
    print(f"== Conv weight storage relative to dense, {R}x{C} tiles, formula per tile ==")
    print(_network_text(results))


def main(argv=None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            _full_report()
        else:
            {"params": _cmd_params, "flops": _cmd_flops, "storage": _cmd_storage,
             "network-storage": _cmd_network_storage, "plot": _cmd_plot}[args.command](args)
    except (VariantNameError, ValueError) as e:
        parser.error(str(e))  # exits with status 2
    except ReportError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (e.g. `| head`) closed the pipe: not an error of ours.
        sys.stdout = open(os.devnull, "w")
    return 0


if __name__ == "__main__":
    sys.exit(main())
