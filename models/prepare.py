"""Train and quantize a model once, then reuse it: ``python -m models.prepare --model NAME``.

Idempotent (for ``make demo``): keeps a finished ``runs/<model>/checkpoint.pt`` of at least
``--epochs`` epochs, resumes an unfinished run of the same length and trains otherwise; then
writes ``runs/<model>/model.q.npz`` unless it is newer than the checkpoint.
Prints the path of the quantized model on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import quantize, train

__all__ = ["prepare", "main", "QMODEL"]

QMODEL = "model.q.npz"


def prepare(model: str, *, epochs: int, out: str | None = None, threads: int = 0,
            extra_train_args=(), calib_batches: int = 8) -> Path:
    """Make sure ``<out>/checkpoint.pt`` is a finished run of at least ``epochs`` epochs and
    ``<out>/model.q.npz`` is current; return the path of the latter."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    out = Path(out or Path("runs") / model)
    ckpt_path = out / train.CHECKPOINT
    resume = train_needed = True
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        target, done = ckpt["args"]["epochs"], ckpt["epoch"]
        # A finished run of at least as many epochs is kept (a longer run is a better model);
        # an unfinished run of the same length is resumed; anything else is retrained.
        train_needed = not (done == target >= epochs)
        resume = target == epochs and done < epochs
    else:
        resume = False
    if train_needed:
        argv = ["--model", model, "--epochs", str(epochs), "--out", str(out), *extra_train_args]
        if threads:
            argv += ["--threads", str(threads)]
        if resume:
            argv.append("--resume")
        print(f"training {model} for {epochs} epochs into {out}", file=sys.stderr)
        if train.main(argv) != 0:
            raise RuntimeError(f"training {model} failed")
    q_path = out / QMODEL
    if not q_path.is_file() or q_path.stat().st_mtime < ckpt_path.stat().st_mtime:
        rc = quantize.main(["--checkpoint", str(ckpt_path), "--out", str(q_path),
                            "--calib-batches", str(calib_batches)])
        if rc != 0:
            raise RuntimeError(f"quantizing {model} failed")
    return q_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.prepare", description=__doc__.splitlines()[0],
                                epilog="Example: python -m models.prepare --model FashionNet_PSD2_P8 --epochs 3")
    p.add_argument("--model", required=True, help="model name, e.g. FashionNet_PSD2_P8")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    p.add_argument("--out", help="run directory (default runs/<model>)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--calib-batches", type=int, default=8)
    args, extra = p.parse_known_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be a positive integer, not {args.epochs}")
    try:
        path = prepare(args.model, epochs=args.epochs, out=args.out, threads=args.threads,
                       extra_train_args=extra, calib_batches=args.calib_batches)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
