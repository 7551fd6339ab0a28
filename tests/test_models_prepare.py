"""models.prepare: train + quantize once, then reuse the cached files."""

import torch

from hw.qmodel import QModel
from models.prepare import main


def test_prepare_is_idempotent(tmp_path, capsys):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["--model", "DigitsNet_PSD2_P8", "--epochs", "1", "--out", str(tmp_path), "--limit-train", "64",
                "--limit-test", "32", "--no-progress", "--calib-batches", "1"]
        assert main(argv) == 0
        q = tmp_path / "model.q.npz"
        assert capsys.readouterr().out.strip() == str(q)
        stamps = (q.stat().st_mtime_ns, (tmp_path / "checkpoint.pt").stat().st_mtime_ns)
        assert main(argv) == 0
        assert (q.stat().st_mtime_ns, (tmp_path / "checkpoint.pt").stat().st_mtime_ns) == stamps
        assert QModel.load(q).name == "DigitsNet_PSD2_P8"
    finally:
        torch.set_num_threads(n)


def test_prepare_keeps_longer_runs_and_resumes_short_ones(tmp_path, capsys):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from models.train import main as train_main
        common = ["--limit-train", "64", "--limit-test", "32", "--no-progress"]
        # An unfinished 2-epoch run (stopped after 1) is resumed to 2 epochs.
        assert train_main(["--model", "DigitsNet", "--epochs", "2", "--stop-after", "1", "--out", str(tmp_path),
                           *common]) == 0
        assert main(["--model", "DigitsNet", "--epochs", "2", "--out", str(tmp_path), "--calib-batches", "1",
                     *common]) == 0
        ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
        assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
        # Asking for fewer epochs keeps the finished longer run.
        stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
        assert main(["--model", "DigitsNet", "--epochs", "1", "--out", str(tmp_path), "--calib-batches", "1",
                     *common]) == 0
        assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp
    finally:
        torch.set_num_threads(n)
