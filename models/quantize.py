"""Post-training int8 quantization and export: ``python -m models.quantize --checkpoint C --out Q``.

Steps (ARCHITECTURE.md, "Numbers"):

1. Fold each BatchNorm into its conv: ``W' = W * g``, ``b' = beta - mean * g`` with
   ``g = gamma / sqrt(var + eps)`` (pre-defined zeros stay zero: ``0 * g = 0``).
2. Calibrate activation scales on training images (no augmentation): the input and every
   layer's output get ``scale = max|a| / 127`` (or a ``--percentile`` of ``|a|``).
3. Symmetric per-output-channel int8 weights: ``s_w[c] = max|W'[c]| / 127``,
   ``w = round(W' / s_w)``; masked entries stay exactly 0.
4. int32 bias ``round(b' / (s_in * s_w[c]))`` in accumulator units.
5. Requantization ``(M, s) = hw.quant.choose_multiplier_shift(s_in * s_w[c] / s_out)``; ReLU on
   every conv, none on the final FC (its int8 outputs are the class scores).

Sequential networks (FashionNet, FashionPoolNet, DigitsNet) map one conv (+ BN + ReLU, + its
2x2 max-pool) or FC to one :class:`hw.qmodel.QLayer`; a pooled layer's output scale is that of
its pooled map (requantization is monotonic, so pooling before or after it is the same).
Residual networks and global pooling are refused for now.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hw.networks import build_network, layer_period_tables
from hw.qmodel import QLayer, QModel
from hw.quant import check_accumulator, choose_multiplier_shift
from hw.variants import split_model_name

from .data import DatasetError, load_dataset, make_loader, prepare_batch
from .golden import predict, quantize_input
from .psconv import PSConv2d
from .zoo import SequentialNet

__all__ = ["fold_bn", "calibrate", "quantize_model", "evaluate_float", "evaluate_int8", "main",
           "UnsupportedModel"]

_QMAX = 127


class UnsupportedModel(ValueError):
    """The exporter cannot express this topology as a sequential QModel (yet)."""


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias (float64) of ``conv`` followed by ``bn`` in eval mode."""
    g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.detach().double() * g[:, None, None, None]
    b0 = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(g)
    b = bn.bias.detach().double() + (b0 - bn.running_mean.double()) * g
    return w, b


def _folded_layers(model: nn.Module) -> list:
    """``[(name, kind, weight float64, bias float64, conv module or None, pool)]`` of a
    sequential net."""
    if not isinstance(model, SequentialNet):
        raise UnsupportedModel(f"{type(model).__name__} is not a sequential conv + FC network: only "
                               f"FashionNet, FashionPoolNet and DigitsNet export to a QModel for now "
                               f"(residual adds, global pooling and depthwise convs are not in the "
                               f"exporter yet)")
    out = []
    for n, pool in zip(model.conv_names, model.pooled):
        conv = getattr(model, n)
        w, b = fold_bn(conv, getattr(model, f"{n}_bn"))
        out.append((n, "conv", w, b, conv, pool))
    fc = getattr(model, model.fc_name)
    out.append((model.fc_name, "fc", fc.weight.detach().double(), fc.bias.detach().double(), None,
                False))
    return out


def _float_forward(layers: list, x: torch.Tensor) -> list:
    """Outputs of each folded layer (float64), as the QModel chains them."""
    outs = []
    x = x.double()
    for name, kind, w, b, conv, pool in layers:
        if kind == "conv":
            x = F.relu(F.conv2d(x, w, b, stride=conv.stride, padding=conv.padding))
            if pool:
                x = F.max_pool2d(x, 2)
        else:
            x = F.linear(x.flatten(1), w, b)
        outs.append(x)
    return outs


def _abs_stat(t: torch.Tensor, percentile: float) -> float:
    a = t.detach().abs().flatten().double()
    if percentile >= 100:
        return float(a.max())
    return float(np.percentile(a.numpy(), percentile))


@torch.no_grad()
def calibrate(model: nn.Module, batches, *, percentile: float = 100.0) -> dict:
    """Activation scales ``{"input": s, <layer name>: s}`` from normalized input ``batches``.

    The statistic (max, or ``percentile`` of ``|a|``) is taken per batch and averaged over
    batches when ``percentile < 100``, maximized when it is the max.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
    model.eval()
    layers = _folded_layers(model)
    stats = {"input": [], **{l[0]: [] for l in layers}}
    for x in batches:
        stats["input"].append(_abs_stat(x, percentile))
        for (name, *_), y in zip(layers, _float_forward(layers, x)):
            stats[name].append(_abs_stat(y, percentile))
    if not stats["input"]:
        raise ValueError("calibrate needs at least one batch")
    reduce = max if percentile >= 100 else (lambda v: float(np.mean(v)))
    # A dead layer (all zeros) still needs a positive scale.
    return {k: max(reduce(v), 1e-8) / _QMAX for k, v in stats.items()}


def _int_weights(w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    w = w.numpy()
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    s_w = np.where(amax > 0, amax / _QMAX, 1.0)
    q = np.clip(np.round(w / s_w.reshape((-1,) + (1,) * (w.ndim - 1))), -_QMAX, _QMAX).astype(np.int8)
    return q, s_w


@torch.no_grad()
def quantize_model(model: nn.Module, calib_batches, *, percentile: float = 100.0) -> QModel:
    """Quantize a built (and trained) sequential model into a :class:`hw.qmodel.QModel`.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`models.zoo.build` (it carries ``psconv_info``); BN statistics are used as is.
    calib_batches : iterable of torch.Tensor
        Normalized float inputs ``[N, C, H, W]`` (the model's input, no augmentation).
    percentile : float
        Calibration statistic (100 = max).
    """
    info = getattr(model, "psconv_info", None)
    if info is None:
        raise ValueError("quantize_model needs a model from models.build (it has psconv_info)")
    batches = [torch.as_tensor(b) for b in calib_batches]
    scales = calibrate(model, batches, percentile=percentile)
    layers = _folded_layers(model)
    net, variant = split_model_name(info["name"])
    network = build_network(net, info["dataset"])
    geom = {l.name: l for l in network.layers}
    tables = (layer_period_tables(network, variant, seed=info["seed"], mode=info["mode"])
              if variant.is_periodic else {})
    c, h, w_ = batches[0].shape[1:]
    in_scale = scales["input"]
    qlayers = []
    for i, (name, kind, wf, bf, conv, pool) in enumerate(layers):
        out_scale = scales[name]
        wq, s_w = _int_weights(wf)
        if isinstance(conv, PSConv2d):
            mask = conv.mask.numpy()
            if np.any(wq[~mask] != 0):
                raise AssertionError(f"Layer {name!r}: a masked weight is non-zero after quantization")
        bias = np.round(bf.numpy() / (in_scale * s_w))
        if np.abs(bias).max(initial=0) > 2**31 - 1:
            raise ValueError(f"Layer {name!r}: bias {np.abs(bias).max():.0f} does not fit int32")
        mult, shift = choose_multiplier_shift(in_scale * s_w / out_scale)
        relu = kind == "conv"
        if kind == "conv":
            g = geom[name]
            table = None
            if isinstance(conv, PSConv2d) and variant.is_periodic:
                t = tables[name]
                if not np.array_equal(t.mask(g.c_out, g.c_in), conv.mask.numpy()):
                    raise AssertionError(f"Layer {name!r}: the model's mask differs from hw's period table")
                table = [[int(tap) for tap in s] for s in t.supports]
            q = QLayer(name=name, kind="conv", c_in=g.c_in, c_out=g.c_out, k=g.k, stride=g.stride,
                       h_in=g.h_in, w_in=g.w_in, relu=True, pool=pool, weight=wq,
                       bias=bias.astype(np.int32), multiplier=np.asarray(mult, dtype=np.int64),
                       shift=np.asarray(shift, dtype=np.int64),
                       variant=variant.name if isinstance(conv, PSConv2d) else "pSC9",
                       period_table=table, in_scale=float(in_scale), out_scale=float(out_scale))
        else:
            q = QLayer(name=name, kind="fc", c_in=wq.shape[1], c_out=wq.shape[0], k=1, stride=1,
                       h_in=1, w_in=1, relu=relu, pool=False, weight=wq[:, :, None, None],
                       bias=bias.astype(np.int32), multiplier=np.asarray(mult, dtype=np.int64),
                       shift=np.asarray(shift, dtype=np.int64), variant="pSC9", period_table=None,
                       in_scale=float(in_scale), out_scale=float(out_scale))
        check_accumulator(q)
        qlayers.append(q)
        in_scale = out_scale
    classes = qlayers[-1].c_out
    return QModel(name=info["name"], dataset=info["dataset"], input_shape=(int(c), int(h), int(w_)),
                  input_scale=float(scales["input"]), layers=qlayers, classes=int(classes))


@torch.no_grad()
def evaluate_float(model: nn.Module, loader, dataset: str) -> float:
    """Top-1 accuracy (percent) of the float model."""
    model.eval()
    n = correct = 0
    for x, y in loader:
        correct += (model(prepare_batch(x, dataset, train=False)).argmax(1) == y).sum().item()
        n += len(y)
    return 100.0 * correct / max(n, 1)


@torch.no_grad()
def evaluate_int8(qmodel: QModel, loader, dataset: str) -> float:
    """Top-1 accuracy (percent) of the integer golden model."""
    n = correct = 0
    for x, y in loader:
        xq = quantize_input(qmodel, prepare_batch(x, dataset, train=False))
        correct += (predict(qmodel, xq) == y).sum().item()
        n += len(y)
    return 100.0 * correct / max(n, 1)


def _calib_batches(dataset, data_dir, n_batches, batch_size, seed):
    ds = load_dataset(dataset, "train", data_dir=data_dir)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: n_batches * batch_size]
    return [prepare_batch(ds.__getitems__(idx[i: i + batch_size].tolist())[0], dataset, train=False)
            for i in range(0, len(idx), batch_size)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m models.quantize",
        description="Fold BN, quantize a trained checkpoint to int8 (per-channel weights, calibrated "
                    "activations, int32 bias, integer requantization) and write a hw.qmodel QModel (.npz).",
        epilog="Example: python -m models.quantize --checkpoint runs/FashionNet_PSD2_P8/checkpoint.pt "
               "--out runs/FashionNet_PSD2_P8/model.q.npz --eval")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by models.train")
    p.add_argument("--out", required=True, help="output QModel file (.npz)")
    p.add_argument("--calib-batches", type=int, default=8, help="training batches used to calibrate")
    p.add_argument("--calib-batch-size", type=int, default=128)
    p.add_argument("--percentile", type=float, default=100.0,
                   help="calibration statistic: percentile of |activation| (100 = max, the default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration image draw")
    p.add_argument("--data-dir", help="dataset directory (cifar10, tinyimagenet)")
    p.add_argument("--eval", action="store_true", help="report float vs int8 test accuracy")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on the first N test images only")
    args = p.parse_args(argv)
    for field in ("calib_batches", "calib_batch_size"):
        if getattr(args, field) < 1:
            p.error(f"--{field.replace('_', '-')} must be a positive integer, not {getattr(args, field)}")
    if not (0 < args.percentile <= 100) or not math.isfinite(args.percentile):
        p.error(f"--percentile must be in (0, 100], not {args.percentile}")
    if not Path(args.checkpoint).is_file():
        p.error(f"--checkpoint {args.checkpoint}: no such file")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from .train import load_checkpoint
    try:
        model, ckpt = load_checkpoint(args.checkpoint)
        dataset = ckpt["info"]["dataset"]
        print(f"calibrating {ckpt['info']['name']} on {args.calib_batches} x {args.calib_batch_size} "
              f"{dataset} training images", file=sys.stderr)
        batches = _calib_batches(dataset, args.data_dir, args.calib_batches, args.calib_batch_size, args.seed)
        qmodel = quantize_model(model, batches, percentile=args.percentile)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        qmodel.save(args.out)
        print(f"wrote {args.out}: {len(qmodel.layers)} layers, input scale {qmodel.input_scale:.6g}",
              file=sys.stderr)
        if args.eval:
            test = load_dataset(dataset, "test", data_dir=args.data_dir)
            if args.limit_test:
                test = torch.utils.data.Subset(test, range(min(args.limit_test, len(test))))
            loader = make_loader(test, batch_size=500, shuffle=False)
            f32 = evaluate_float(model, loader, dataset)
            i8 = evaluate_int8(QModel.load(args.out), loader, dataset)
            print(f"{qmodel.name} on {dataset} ({len(test)} test images): float top-1 {f32:.2f}%, "
                  f"int8 top-1 {i8:.2f}% (delta {i8 - f32:+.2f})")
    except (UnsupportedModel, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
