"""models.train: CLI, metrics JSON, checkpoints, deterministic resume, exact zeros."""

import json
import os
import subprocess
import sys

import pytest
import torch

from hw.costs import network_cost
from models.psconv import PSConv2d
from models.train import default_recipe, load_checkpoint, main, parse_args

COMMON = ["--limit-train", "96", "--limit-test", "64", "--batch-size", "32", "--no-progress"]


def _run(out, epochs, *extra):
    return main(["--model", "DigitsNet_PSD2_P8", "--epochs", str(epochs), "--out", str(out), *COMMON, *extra])


def test_metrics_checkpoint_and_zeros(tmp_path):
    assert _run(tmp_path / "a", 2) == 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    cost = network_cost("DigitsNet_PSD2_P8")
    assert m["model"] == "DigitsNet_PSD2_P8" and m["epoch"] == 2 and len(m["history"]) == 2
    assert m["flops"] == cost.conv_flops + cost.fc_flops
    assert m["params"] == cost.total_params and m["conv_nonzero"] == cost.conv_nonzero
    for k in ("accuracy_top1", "accuracy_top5", "time_per_epoch_s", "train_loss", "lr"):
        assert k in m
    assert 0 <= m["accuracy_top1"] <= m["accuracy_top5"] <= 100
    # Cosine schedule: epoch 2 of 2 runs at lr 0.1 * (1 + cos(pi / 2)) / 2.
    assert m["history"][1]["lr"] == pytest.approx(0.05)
    model, ckpt = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    convs = [mod for mod in model.modules() if isinstance(mod, PSConv2d)]
    assert convs and all(torch.all(c.weight[~c.mask] == 0) for c in convs)


def test_resume_is_deterministic(tmp_path):
    assert _run(tmp_path / "full", 2) == 0
    # Train 1 of 2 epochs, then resume: same weights as 2 epochs in one go.
    assert main(["--model", "DigitsNet_PSD2_P8", "--epochs", "2", "--out", str(tmp_path / "part"), *COMMON,
                 "--stop-after", "1"]) == 0
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["epoch"] == 1
    assert _run(tmp_path / "part", 2, "--resume") == 0
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["state_dict"]
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k


def test_recipe_defaults_and_errors(capsys):
    a = parse_args(["--model", "MobileNetV2_PSD2_P8"])
    assert (a.dataset, a.epochs, a.batch_size, a.lr, a.momentum, a.weight_decay) == ("cifar10", 120, 128, 0.1, 0.9, 0.0)
    a = parse_args(["--model", "ResNet18", "--dataset", "tinyimagenet"])
    assert (a.epochs, a.batch_size, a.weight_decay, a.out) == (100, 100, 5e-4, os.path.join("runs", "ResNet18"))
    assert default_recipe("FashionNet", "fashion_mnist")["weight_decay"] == 5e-4
    for argv, msg in [(["--model", "LeNet"], "unknown network 'LeNet'"),
                      (["--model", "VGG16_PSD2"], "PSD needs a period"),
                      (["--model", "VGG16", "--epochs", "0"], "--epochs must be a positive integer, not 0"),
                      (["--model", "VGG16", "--lr", "-1"], "--lr must be a finite positive number")]:
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err
    # A dataset that is not there: exit code 2 and the expected files named.
    assert main(["--model", "ResNet18_0.5", "--dataset", "cifar10", "--data-dir", "/nonexistent", "--epochs", "1"]) == 2
    assert "data_batch_1" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "models.train",
                    "--model", "DigitsNet_PSD2_P8", "--epochs", "1", "--out", str(tmp_path), "--threads", "1",
                    *COMMON], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["epoch"] == 1
