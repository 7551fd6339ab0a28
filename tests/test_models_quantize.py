"""models.quantize: BN folding, int8 export to a QModel, accuracy of the integer model."""

import numpy as np
import pytest
import torch

from hw.networks import build_network, layer_period_tables
from hw.qmodel import QModel
from hw.quant import effective_scale
from hw.variants import parse_variant
from models import build
from models.golden import quantize_input, run_model_int
from models.psconv import PSConv2d
from models.quantize import UnsupportedModel, fold_bn, main, quantize_model


def _model(name, seed):
    torch.manual_seed(seed)
    model = build(name, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def test_fold_bn_equals_conv_then_bn():
    seed = 0
    model = _model("DigitsNet_PSD2_P8", seed)
    w, b = fold_bn(model.conv2, model.conv2_bn)
    x = torch.randn(3, 8, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = model.conv2_bn(model.conv2(x.float())).double()
    got = torch.nn.functional.conv2d(x, w, b, stride=2, padding=1)
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.all(w[~model.conv2.mask] == 0)


@pytest.mark.parametrize("name", ["DigitsNet", "DigitsNet_PSD2_P8", "FashionNet_PSD1_P8", "DigitsNet_PS2_P6",
                                  "FashionPoolNet_PSD2_P8"])
def test_export_fields(name, tmp_path):
    seed = 5
    model = _model(name, seed)
    x = torch.rand(32, *(1, 8, 8) if name.startswith("Digits") else (1, 28, 28),
                   generator=torch.Generator().manual_seed(seed))
    qm = quantize_model(model, [x])
    network = build_network(name.split("_")[0])
    variant = parse_variant(name.split("_", 1)[1]) if "_" in name else None
    assert [l.name for l in qm.layers] == [l.name for l in network.layers]
    assert qm.input_shape == tuple(x.shape[1:]) and qm.classes == 10
    # The input scale maps the largest calibration value to 127.
    assert qm.input_scale == pytest.approx(float(x.abs().max()) / 127)
    for ql, nl in zip(qm.layers, network.layers):
        assert ql.pool == getattr(nl, "pool", False)
        assert ql.weight.dtype == np.int8 and ql.bias.dtype == np.int32
        assert np.abs(ql.weight.astype(int)).max() <= 127
        assert np.all((ql.multiplier >= 2**15) & (ql.multiplier < 2**16))
        assert np.all((ql.shift >= 1) & (ql.shift <= 47))
        mod = getattr(model, ql.name)
        if isinstance(mod, PSConv2d):
            assert np.all(ql.weight[~mod.mask.numpy()] == 0)
            if variant is not None and variant.is_periodic:
                table = layer_period_tables(network, variant, seed=seed)[ql.name]
                assert ql.period_table == [list(t) for t in table.supports]
                assert ql.variant == variant.name
        else:
            assert ql.period_table is None
        # Requantization implements in_scale * weight scale / out_scale.
        w = fold_bn(mod, getattr(model, f"{ql.name}_bn"))[0] if ql.kind == "conv" else mod.weight.detach().double()
        s_w = w.reshape(w.shape[0], -1).abs().max(1).values.numpy() / 127
        np.testing.assert_allclose(effective_scale(ql.multiplier, ql.shift),
                                   ql.in_scale * s_w / ql.out_scale, rtol=2**-15)
    assert not qm.layers[-1].relu and all(l.relu for l in qm.layers[:-1])
    path = tmp_path / "m.q.npz"
    qm.save(path)
    back = QModel.load(path)
    for a, b in zip(qm.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and a.period_table == b.period_table


@pytest.mark.parametrize("name", ["DigitsNet_PSD2_P8", "FashionNet", "FashionPoolNet_PSD2_P8"])
def test_int8_layers_track_float(name):
    """Each dequantized layer output is within a few LSB of the float (folded) network."""
    seed = 2
    model = _model(name, seed)
    shape = (1, 8, 8) if name.startswith("Digits") else (1, 28, 28)
    x = torch.rand(64, *shape, generator=torch.Generator().manual_seed(seed))
    qm = quantize_model(model, [x])
    outs = run_model_int(qm, quantize_input(qm, x))
    acts, h = [], x
    with torch.no_grad():
        for n, pool in zip(model.conv_names, model.pooled):
            h = torch.relu(getattr(model, f"{n}_bn")(getattr(model, n)(h)))
            if pool:
                h = torch.nn.functional.max_pool2d(h, 2)
            acts.append(h)
        acts.append(model.fc(h.flatten(1))[:, :, None, None])
    for ql, q, f in zip(qm.layers, outs, acts):
        err = (q.double() * ql.out_scale - f.double()).abs()
        assert float(err.mean()) < 1.0 * ql.out_scale, f"{name} seed {seed} {ql.name}: {float(err.mean() / ql.out_scale)} LSB"
        assert float(err.max()) < 12 * ql.out_scale, f"{name} seed {seed} {ql.name}"
    agree = (outs[-1].flatten(1).double().argmax(1) == acts[-1].flatten(1).argmax(1)).float().mean()
    assert agree > 0.8


def test_residual_models_are_refused():
    with pytest.raises(UnsupportedModel, match="only FashionNet, FashionPoolNet and DigitsNet export"):
        quantize_model(build("ResNet18_0.5").eval(), [torch.rand(2, 3, 32, 32)])


def test_cli(tmp_path, capsys):
    from models.train import main as train_main
    out = tmp_path / "run"
    assert train_main(["--model", "DigitsNet_PSD2_P8", "--epochs", "1", "--limit-train", "128",
                       "--limit-test", "64", "--out", str(out), "--no-progress", "--batch-size", "32"]) == 0
    q = tmp_path / "m.q.npz"
    assert main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(q), "--calib-batches", "2",
                 "--calib-batch-size", "32", "--eval", "--limit-test", "64"]) == 0
    assert "float top-1" in capsys.readouterr().out
    assert QModel.load(q).name == "DigitsNet_PSD2_P8"
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(q)])
    assert e.value.code == 2
