"""Tests of the ``python -m hw.report`` CLI: JSON shapes, values recomputed here, errors, plots."""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from hw import report
from hw.networks import build_network
from hw.variants import PAPER_VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hw.report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_storage_json():
    out = json.loads(run("storage", "--rows", "32", "--cols", "12", "--bv", "8", "--br", "4",
                         "--bc", "4", "--bi", "7", "--bp", "6", "--period", "8", "--points", "5",
                         "--json").stdout)
    be = out["break_even"]
    assert set(be) == {"COO", "CSR", "CSC", "CSR_P", "CSC_P"}
    # By hand: rho* = (dense - overhead) / (bits per unit density).
    assert be["COO"] == 0.5
    assert be["CSR"] == pytest.approx(float(Fraction(3072 - 33 * 7, 384 * 12)), abs=0)
    assert Fraction(out["break_even_exact"]["CSR_P"]) == Fraction(3072 - 33 * 7 - 6,
                                                                   3072 + 8 * 12 * 4)
    bits = out["bits"]
    assert set(bits) == {"Dense", "COO", "CSR", "CSC", "CSR_P", "CSC_P"}
    assert [d for d, _ in bits["COO"]] == [0, 0.25, 0.5, 0.75, 1]
    assert all(b == 32 * 12 * 8 for _, b in bits["Dense"])
    assert bits["COO"][2] == [0.5, 0.5 * 384 * 16]
    assert bits["CSC_P"][4] == [1, 384 * 8 + 8 * 32 * 4 + 13 * 7 + 6]


def test_storage_col_period_and_table():
    out = json.loads(run("storage", "--rows", "16", "--cols", "144", "--period", "8",
                         "--col-period", "72", "--json").stdout)
    # CSC_P stores row indices for 72 of 144 columns: half of CSC's.
    assert out["bits"]["CSC_P"][-1][1] == 16 * 144 * 8 + 72 * 16 * 4 + 145 * 7 + 6
    text = run("storage").stdout
    assert "break-even" in text and "105/128" in text  # the paper example's CSR_P break-even


def test_network_storage_json():
    out = json.loads(run("network-storage", "--model", "VGG16", "--tile", "32x12", "--json").stdout)
    assert set(out) == {"Dense", "COO", "CSR", "CSC", "CSR_P", "CSC_P"}
    assert out["Dense"] == 1.0 and out["COO"] == 2.0  # dense: (8 + 4 + 4) / 8
    sparse = json.loads(run("network-storage", "--model", "VGG16_PS4_P4", "--bc", "5",
                            "--json").stdout)
    # PS4: 4 of 9 taps in every sparse layer; the first layer (3 -> 64) dense.
    net = build_network("VGG16")
    size = sum(c.c_out * c.c_in * 9 for c in net.convs)
    nnz = 64 * 3 * 9 + sum(c.c_out * c.c_in * 4 for c in net.convs[1:])
    assert sparse["COO"] == pytest.approx(nnz * (8 + 4 + 5) / (size * 8), rel=1e-12)


@pytest.mark.parametrize("args, message", [
    (["network-storage", "--model", "VGG16_PSX"], "grammar"),
    (["network-storage", "--model", "Lenet_PS4_P4"], "Unknown network"),
    (["network-storage", "--model", "VGG16", "--tile", "32by12"], "tile must be ROWSxCOLS"),
    (["storage", "--rows", "0"], "--rows: expected a positive integer, not 0"),
    (["storage", "--points", "1"], "points must be an integer >= 2"),
    (["flops", "--dataset", "imagenet"], "invalid choice"),
])
def test_bad_input_exits_2(args, message):
    proc = run(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_plot_storage(tmp_path):
    png = tmp_path / "fig" / "storage.png"
    proc = run("plot", "storage", "--out", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in proc.stdout


def test_plot_accuracy(tmp_path):
    proc = run("plot", "accuracy", "--out", str(tmp_path / "a.png"))
    assert "nothing to plot" in proc.stdout and not (tmp_path / "a.png").exists()
    good = tmp_path / "m1.json"
    good.write_text(json.dumps({"model": "VGG16_PSD2_P8", "flops": 101_000_000,
                                "accuracy_top1": 0.93}))
    other = tmp_path / "m2.json"
    other.write_text(json.dumps([{"model": "VGG16", "flops": 313_000_000, "top1": 0.94},
                                 {"model": "broken"}]))
    proc = run("plot", "accuracy", "--metrics", str(good), str(other), "--out",
               str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "skipped" in proc.stderr and "m2.json" in proc.stderr
    missing = run("plot", "accuracy", "--metrics", str(tmp_path / "nope.json"), "--out",
                  str(tmp_path / "b.png"), check=False)
    assert missing.returncode == 2 and "cannot read metrics file" in missing.stderr


def test_load_metrics(tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"model": "x", "flops": 5, "top1": 71.5}))
    records, skipped = report.load_metrics([f])
    assert records == [{"model": "x", "flops": 5, "accuracy": 71.5}] and skipped == []


def test_params_json():
    pytest.importorskip("hw.costs")
    params = json.loads(run("params", "--json").stdout)
    expected = {f"{net}_{v}" for net in ("VGG16", "ResNet18") for v in PAPER_VARIANTS}
    assert expected <= set(params)
    assert all(set(v) == {"total", "conv_nonzero"} and isinstance(v["total"], int)
               for v in params.values())
    # PS4_P4: every sparse VGG16 layer keeps 4 of 9 taps (all C_i are multiples of 4).
    net = build_network("VGG16")
    assert params["VGG16_PS4_P4"]["conv_nonzero"] == (64 * 3 * 9 + sum(
        c.c_out * c.c_in * 4 for c in net.convs[1:]))


def test_flops_json(capsys):
    """In-process: hw.costs caches its counts, which keeps this test fast."""
    pytest.importorskip("hw.costs")
    for dataset in ("cifar10", "tinyimagenet"):
        assert report.main(["flops", "--dataset", dataset, "--json"]) == 0
        flops = json.loads(capsys.readouterr().out)
        net = build_network("VGG16", dataset)
        assert flops["VGG16_pSC9"] == sum(9 * c.h_out * c.w_out * c.c_out * c.c_in
                                          for c in net.convs)
        # PS4: 4 MACs per output of every sparse layer; the first layer dense.
        assert flops["VGG16_PS4_P4"] == sum((9 if i == 0 else 4) * c.h_out * c.w_out * c.c_out
                                            * c.c_in for i, c in enumerate(net.convs))


def test_full_report_without_costs(monkeypatch, capsys):
    def no_costs():
        raise report.ReportError("hw.costs is not available (test)")

    monkeypatch.setattr(report, "_costs", no_costs)
    monkeypatch.setattr(report, "REPORT_MODELS", ("DigitsNet", "DigitsNet_PSD2_P8"))
    assert report.main([]) == 0
    out = capsys.readouterr().out
    assert "parameter and FLOP tables skipped" in out
    assert "105/128" in out and "DigitsNet_PSD2_P8" in out


def test_params_without_costs_exits_1(monkeypatch, capsys):
    def no_costs():
        raise report.ReportError("hw.costs is not available (test)")

    monkeypatch.setattr(report, "_costs", no_costs)
    assert report.main(["params"]) == 1
    assert "hw.costs is not available" in capsys.readouterr().err


def test_format_table_aligns():
    t = report.format_table(["a", "bb"], [["x", 1], ["yyy", 22]]).splitlines()
    assert t == ["a    bb", "---  --", "x     1", "yyy  22"]
