"""Tests of the demo's own pieces (``make demo`` runs it whole): its options and the dense
baseline it compares against."""

import pytest

from host.demo import dense_cycles, parse_args


def test_options():
    args = parse_args([])
    assert (args.model, args.batch, args.frames) == ("FashionNet_PSD2_P8", 2, 200)
    assert parse_args(["--batch", "1"]).batch == 1
    for bad in (["--batch", "0"], ["--frames", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert parse_args(["--model", "FashionPoolNet_PS4_P4"]).dataset == "fashion_mnist"
    assert parse_args(["--model", "DigitsNet"]).dataset == "digits"


@pytest.mark.parametrize("model,says", [("LeNet_PSD2_P8", "Unknown network 'LeNet'"),
                                        ("FashionNet_PSD2", "--model FashionNet_PSD2"),
                                        ("FashionNet_pSC4", "periodic (PS, PSD) or dense variants, not pSC4")])
def test_bad_model_is_refused_before_training(model, says, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--model", model])
    assert says in capsys.readouterr().err


def test_dense_baseline_runs_the_same_way():
    """The dense baseline: every sparse layer pSC9 (all nine taps), on the same array and row
    groups, in the same batches; a batch of two costs less than two frames alone (FashionNet's
    7 x 7 and 4 x 4 maps share tiles), and the dense network takes more cycles than the sparse."""
    from host.pack import pack
    from host.synthetic import random_qmodel
    from hw.layout import build_layout
    q = random_qmodel("FashionNet_PSD2_P8")
    one, two = pack(q), pack(q, batch=2)
    d1, d2 = dense_cycles(q, one.config), dense_cycles(q, two.config, batch=2)
    assert d1 > build_layout(q, one.config).expected_cycles
    assert d2 > build_layout(q, two.config, batch=2).expected_cycles / 2
    assert d2 < d1
