"""Train a pre-defined sparse network: ``python -m models.train --model NAME --dataset D``.

The default recipe is the paper's (METHOD.md): SGD, lr 0.1, momentum 0.9, weight decay 5e-4
(0 for MobileNetV2), batch 128 (100 for Tiny ImageNet), random crop + horizontal flip, cosine
(or step) schedule. After every optimizer step the masks of all :class:`~models.psconv.PSConv2d`
layers are re-applied, so the pre-defined zeros stay exactly zero.

Every epoch writes ``<out>/checkpoint.pt`` (model, optimizer, scheduler, RNG states: resumable
with ``--resume``) and ``<out>/metrics.json`` (the latest epoch's figures at the top level, all
epochs under ``"history"``). Launched by ``torchrun`` with several processes it trains with
DistributedDataParallel (NCCL on CUDA, Gloo on CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hw.costs import network_cost
from hw.networks import DATASETS, DEFAULT_DATASET, NETWORKS
from hw.patterns import MODES
from hw.progress import progress_bar
from hw.variants import VariantNameError, split_model_name

from .counts import conv_nonzero, trainable_params
from .data import DatasetError, load_dataset, make_loader, prepare_batch
from .psconv import enforce_masks
from .zoo import build

__all__ = ["main", "parse_args", "train", "evaluate", "load_checkpoint", "default_recipe",
           "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
DEFAULT_EPOCHS = {"cifar10": 120, "tinyimagenet": 100, "fashion_mnist": 10, "digits": 30}


def default_recipe(model: str, dataset: str) -> dict:
    """The paper's hyper-parameters for ``model`` on ``dataset`` (epochs, batch, lr, momentum, wd)."""
    net, _ = split_model_name(model)
    return {"epochs": DEFAULT_EPOCHS[dataset], "batch_size": 100 if dataset == "tinyimagenet" else 128,
            "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0 if net.startswith("MobileNetV2") else 5e-4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Train a CNN with pre-defined (periodic) sparse 3x3 kernels. Defaults follow the "
                    "paper: SGD lr 0.1, momentum 0.9, weight decay 5e-4 (0 for MobileNetV2).",
        epilog="Example: python -m models.train --model FashionNet_PSD2_P8 --epochs 5 "
               "--out runs/FashionNet_PSD2_P8")
    p.add_argument("--model", required=True,
                   help=f"NET[_variant], NET one of {', '.join(NETWORKS)}; e.g. ResNet18_PSD1_P8")
    p.add_argument("--dataset", choices=sorted(DATASETS),
                   help="default: the network's own (fashion_mnist for FashionNet, digits for "
                        "DigitsNet, else cifar10)")
    p.add_argument("--epochs", type=int, help="default: 120 cifar10, 100 tinyimagenet, 10 "
                                              "fashion_mnist, 30 digits")
    p.add_argument("--batch-size", type=int, help="default 128 (100 for tinyimagenet)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, help="default 5e-4, 0 for MobileNetV2")
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine",
                   help="cosine annealing to 0, or step (x0.1 at 50%% and 75%% of the epochs)")
    p.add_argument("--data-dir", help="dataset directory (needed for cifar10 and tinyimagenet)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", help="output directory (default runs/<model>)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization, shuffling, augmentation")
    p.add_argument("--pattern-seed", type=int, default=0, help="seed of the kernel patterns (hw)")
    p.add_argument("--mode", choices=MODES, default="random", help="kernel pattern mode")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop after this epoch (the schedule still spans --epochs); resume later")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, default=0, help="use only the first N test images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        net, _ = split_model_name(args.model)
    except VariantNameError as e:
        p.error(str(e))
    if net not in NETWORKS:
        p.error(f"unknown network {net!r} in --model {args.model!r}; known: {', '.join(NETWORKS)}")
    args.dataset = args.dataset or DEFAULT_DATASET.get(net, "cifar10")
    recipe = default_recipe(args.model, args.dataset)
    for k, v in recipe.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for field in ("epochs", "batch_size"):
        if getattr(args, field) < 1:
            p.error(f"--{field.replace('_', '-')} must be a positive integer, not {getattr(args, field)}")
    for field in ("lr", "momentum", "weight_decay"):
        v = getattr(args, field)
        if not math.isfinite(v) or v < 0 or (field == "lr" and v == 0):
            p.error(f"--{field.replace('_', '-')} must be a finite {'positive' if field == 'lr' else 'non-negative'} "
                    f"number, not {v}")
    for field in ("workers", "threads", "stop_after", "limit_train", "limit_test", "pattern_seed", "seed"):
        if getattr(args, field) < 0:
            p.error(f"--{field.replace('_', '-')} must be non-negative, not {getattr(args, field)}")
    args.out = args.out or os.path.join("runs", args.model)
    return args


def _device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


@torch.no_grad()
def evaluate(model: nn.Module, loader, dataset: str, device: torch.device) -> dict:
    """Loss and top-1 / top-5 accuracy (percent) of ``model`` in eval mode over ``loader``."""
    model.eval()
    n, loss, top1, top5 = 0, 0.0, 0, 0
    for x, y in loader:
        x = prepare_batch(x.to(device), dataset, train=False)
        y = y.to(device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        k = min(5, out.shape[1])
        pred = out.topk(k, dim=1).indices
        top1 += (pred[:, 0] == y).sum().item()
        top5 += (pred == y[:, None]).any(dim=1).sum().item()
        n += len(y)
    return {"test_loss": loss / max(n, 1), "accuracy_top1": 100.0 * top1 / max(n, 1),
            "accuracy_top5": 100.0 * top5 / max(n, 1), "test_images": n}


def load_checkpoint(path, *, map_location="cpu"):
    """Load a training checkpoint and rebuild its model (eval mode). Returns ``(model, checkpoint)``."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    info = ckpt["info"]
    model = build(info["name"], info["dataset"], seed=info["seed"], mode=info["mode"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt


def _atomic_save(obj, path: Path, *, as_json=False):
    tmp = path.with_name(path.name + ".tmp")
    if as_json:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> dict:
    """Run the training described by ``args`` (see :func:`parse_args`); return the final metrics.

    Process-wide torch settings it changes (thread count, deterministic algorithms) are restored
    on return, so it can be called in-process (tests, :mod:`models.prepare`).
    """
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _train(args)
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def _train(args: argparse.Namespace) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(args.device, local_rank)
    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main_proc = rank == 0
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)

    train_ds = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    test_ds = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    if args.limit_train:
        train_ds = torch.utils.data.Subset(train_ds, range(min(args.limit_train, len(train_ds))))
    if args.limit_test:
        test_ds = torch.utils.data.Subset(test_ds, range(min(args.limit_test, len(test_ds))))

    model = build(args.model, args.dataset, seed=args.pattern_seed, mode=args.mode).to(device)
    info = dict(model.psconv_info)
    cost = network_cost(args.model, dataset=args.dataset, seed=args.pattern_seed, mode=args.mode)
    static = {"model": args.model, "dataset": args.dataset, "variant": info["variant"],
              "pattern_seed": args.pattern_seed, "mode": args.mode, "params": trainable_params(model),
              "conv_nonzero": conv_nonzero(model), "flops": cost.conv_flops + cost.fc_flops,
              "conv_flops": cost.conv_flops}

    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    if args.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    else:
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[max(1, args.epochs // 2), max(1, args.epochs * 3 // 4)], gamma=0.1)

    shuffle_gen = torch.Generator().manual_seed(args.seed)
    aug_gen = torch.Generator().manual_seed(args.seed * 1000 + rank + 1)
    out = Path(args.out)
    start_epoch, history = 0, []
    if args.resume:
        path = out / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        ckpt = torch.load(path, map_location=device, weights_only=False)
        if ckpt["info"]["name"] != args.model or ckpt["info"]["dataset"] != args.dataset:
            raise ValueError(f"--resume: {path} holds {ckpt['info']['name']} on {ckpt['info']['dataset']}, "
                             f"not {args.model} on {args.dataset}")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        # RNG states are CPU byte tensors whatever map_location moved them to.
        shuffle_gen.set_state(ckpt["rng"]["shuffle"].cpu())
        aug_gen.set_state(ckpt["rng"]["augment"].cpu())
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        start_epoch, history = ckpt["epoch"], ckpt["history"]

    sampler = None
    net_model = model
    if distributed:
        sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=world, rank=rank,
                                                      shuffle=True, seed=args.seed)
        net_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_loader = make_loader(train_ds, batch_size=args.batch_size, shuffle=True, sampler=sampler,
                               workers=args.workers, generator=shuffle_gen)
    test_loader = make_loader(test_ds, batch_size=256, shuffle=False, workers=args.workers)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{args.model} on {args.dataset}: {static['params']} params, {static['conv_nonzero']} conv "
              f"non-zeros, {static['flops']} FLOPs; {len(train_ds)} train / {len(test_ds)} test images; "
              f"{device}{f' x {world}' if distributed else ''}", file=sys.stderr)

    metrics = history[-1] if history else {}
    last = min(args.epochs, args.stop_after) if args.stop_after else args.epochs
    for epoch in range(start_epoch, last):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net_model.train()
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        seen, loss_sum, correct = 0, 0.0, 0
        bar = None
        if main_proc and not args.no_progress:
            bar = progress_bar(total=len(train_loader), desc=f"epoch {epoch + 1}/{args.epochs}",
                               unit="batch", leave=False, file=sys.stderr)
        for x, y in train_loader:
            x = prepare_batch(x, args.dataset, train=True, generator=aug_gen).to(device)
            y = y.to(device)
            out_logits = net_model(x)
            loss = F.cross_entropy(out_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            enforce_masks(model)
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (out_logits.argmax(1) == y).sum().item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 * correct / seen:.1f}")
        if bar is not None:
            bar.close()
        sched.step()
        train_time = time.perf_counter() - t0
        ev = evaluate(model, test_loader, args.dataset, device)
        metrics = {**static, "epoch": epoch + 1, "epochs": args.epochs, "lr": lr,
                   "train_loss": loss_sum / max(seen, 1), "train_accuracy": 100.0 * correct / max(seen, 1),
                   **ev, "time_per_epoch_s": round(train_time, 3),
                   "epoch_time_with_eval_s": round(time.perf_counter() - t0, 3),
                   "device": str(device), "world_size": world, "threads": torch.get_num_threads()}
        history.append(metrics)
        if main_proc:
            ckpt = {"info": info, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
                    "args": vars(args),
                    "rng": {"shuffle": shuffle_gen.get_state(), "augment": aug_gen.get_state(),
                            "torch": torch.get_rng_state()}}
            _atomic_save(ckpt, out / CHECKPOINT)
            _atomic_save({**metrics, "history": history}, out / METRICS, as_json=True)
            print(f"epoch {epoch + 1}/{args.epochs}: loss {metrics['train_loss']:.4f}, train "
                  f"{metrics['train_accuracy']:.2f}%, test top-1 {ev['accuracy_top1']:.2f}% top-5 "
                  f"{ev['accuracy_top5']:.2f}%, {train_time:.1f} s", file=sys.stderr)
    if distributed:
        torch.distributed.destroy_process_group()
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (DatasetError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
