"""Datasets that need no internet, batch augmentation and input normalization.

=================  ==============================================================  ================
dataset            source                                                          augmentation
=================  ==============================================================  ================
``digits``         ``sklearn.datasets.load_digits`` (8x8, 0..16), fixed seeded      none
                   stratified split: 1437 train / 360 test
``fashion_mnist``  IDX files (``.gz`` or not) in ``--data-dir``, default            crop (pad 2) + flip
                   ``/usr/share/datasets/fashion-mnist`` (Debian dataset-fashion-mnist)
``cifar10``        python-pickle batches ``cifar-10-batches-py/data_batch_1..5``,   crop (pad 4) + flip
                   ``test_batch`` in ``--data-dir``
``tinyimagenet``   ``tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG,      crop (pad 8) + flip
                   val/images/*.JPEG, val/val_annotations.txt}`` in ``--data-dir``
=================  ==============================================================  ================

Samples are float images in [0, 1]; :func:`prepare_batch` augments a whole batch at once (cheap
on a CPU) and then normalizes with the dataset's mean / std. The small grayscale sets are not
mean-shifted (mean 0, std 1), so their int8 input is simply ``round(pixel01 / input_scale)``.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DatasetError", "ImageTensorDataset", "ImageFolderDataset", "load_dataset",
           "prepare_batch", "augment", "normalize", "make_loader", "DEFAULT_DIRS", "CROP_PAD",
           "FLIP", "NORM", "DIGITS_SPLIT_SEED"]

DEFAULT_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
CROP_PAD = {"digits": 0, "fashion_mnist": 2, "cifar10": 4, "tinyimagenet": 8}
FLIP = {"digits": False, "fashion_mnist": True, "cifar10": True, "tinyimagenet": True}
#: (mean, std) per channel applied after augmentation.
NORM = {"digits": ((0.0,), (1.0,)), "fashion_mnist": ((0.0,), (1.0,)),
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))}
DIGITS_SPLIT_SEED = 0
SPLITS = ("train", "test")


class DatasetError(FileNotFoundError):
    """A dataset's files are missing or malformed; the message names what was expected."""


class ImageTensorDataset(torch.utils.data.Dataset):
    """An in-memory image set (uint8 ``[N, C, H, W]`` plus a full-scale value) with labels.

    Indexing with a list of indices (``__getitems__``) returns one ready batch
    ``(float images in [0, 1], int64 labels)``; use :func:`make_loader`, whose collate keeps it.

    Members
    -------
    images : torch.Tensor
        uint8 ``[N, C, H, W]``.
    labels : torch.Tensor
        int64 ``[N]``.
    """

    def __init__(self, images, labels, *, full_scale: float = 255.0):
        self._images = torch.as_tensor(images, dtype=torch.uint8)
        self._labels = torch.as_tensor(labels, dtype=torch.int64)
        if self._images.ndim != 4 or len(self._images) != len(self._labels):
            raise ValueError(f"images must be [N, C, H, W] with one label each, not "
                             f"{tuple(self._images.shape)} and {tuple(self._labels.shape)}")
        self._full_scale = float(full_scale)

    @property
    def images(self) -> torch.Tensor:
        return self._images

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        return self._images[i].float() / self._full_scale, self._labels[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self._images[idx].float() / self._full_scale, self._labels[idx]


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images loaded lazily from files (Tiny ImageNet), RGB, as float in [0, 1]."""

    def __init__(self, paths, labels):
        self._paths = list(paths)
        self._labels = torch.as_tensor(labels, dtype=torch.int64)

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def __len__(self):
        return len(self._paths)

    def _load(self, i):
        from PIL import Image
        with Image.open(self._paths[i]) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, i):
        return self._load(i), self._labels[i]

    def __getitems__(self, indices):
        return torch.stack([self._load(int(i)) for i in indices]), self._labels[torch.as_tensor(indices)]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).copy()
    if arr.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX header says {dims} but holds {arr.size} bytes")
    return arr.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _fashion_mnist(split, data_dir):
    d = Path(data_dir or DEFAULT_DIRS["fashion_mnist"])
    prefix = "train" if split == "train" else "t10k"
    files = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    found = [_find(d, f) for f in files]
    if None in found:
        raise DatasetError(f"Fashion-MNIST {split} files not found in {d}: expected "
                           f"{' and '.join(f + '[.gz]' for f in files)} (Debian package "
                           f"dataset-fashion-mnist installs them in {DEFAULT_DIRS['fashion_mnist']})")
    images, labels = _read_idx(found[0]), _read_idx(found[1])
    return ImageTensorDataset(images[:, None], labels.astype(np.int64))


def _digits(split, data_dir):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    images = d.images.astype(np.uint8)[:, None]  # values 0..16
    tr_x, te_x, tr_y, te_y = train_test_split(images, d.target, test_size=0.2,
                                              random_state=DIGITS_SPLIT_SEED, stratify=d.target)
    x, y = (tr_x, tr_y) if split == "train" else (te_x, te_y)
    return ImageTensorDataset(x, y.astype(np.int64), full_scale=16.0)


def _cifar10(split, data_dir):
    if data_dir is None:
        raise DatasetError("CIFAR-10 needs --data-dir: a directory holding cifar-10-batches-py/ "
                           "(data_batch_1..5, test_batch: the python-pickle version)")
    d = Path(data_dir)
    if (d / "cifar-10-batches-py").is_dir():
        d = d / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 {split} batches missing in {d}: {', '.join(missing)} "
                           f"(expected the python-pickle files data_batch_1..5 and test_batch, "
                           f"optionally inside cifar-10-batches-py/)")
    xs, ys = [], []
    for n in names:
        with open(d / n, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(batch[b"labels"])
    return ImageTensorDataset(np.concatenate(xs), np.asarray(ys, dtype=np.int64))


def _tinyimagenet(split, data_dir):
    if data_dir is None:
        raise DatasetError("Tiny ImageNet needs --data-dir: a directory holding tiny-imagenet-200/ "
                           "(wnids.txt, train/<wnid>/images/*.JPEG, val/images, val/val_annotations.txt)")
    d = Path(data_dir)
    if (d / "tiny-imagenet-200").is_dir():
        d = d / "tiny-imagenet-200"
    need = [d / "wnids.txt", d / "train", d / "val" / "images", d / "val" / "val_annotations.txt"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise DatasetError(f"Tiny ImageNet files missing: {', '.join(missing)} (expected the "
                           f"tiny-imagenet-200 folder layout)")
    wnids = [w.strip() for w in (d / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    if split == "train":
        for w in wnids:
            for p in sorted((d / "train" / w / "images").glob("*.JPEG")):
                paths.append(p)
                labels.append(index[w])
    else:
        for line in (d / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                paths.append(d / "val" / "images" / parts[0])
                labels.append(index[parts[1]])
    if not paths:
        raise DatasetError(f"Tiny ImageNet {split} split in {d} holds no images")
    return ImageFolderDataset(paths, labels)


_LOADERS = {"digits": _digits, "fashion_mnist": _fashion_mnist, "cifar10": _cifar10,
            "tinyimagenet": _tinyimagenet}


def load_dataset(dataset: str, split: str, *, data_dir: str | os.PathLike | None = None):
    """The ``split`` (``"train"`` or ``"test"``) of ``dataset`` as a torch Dataset.

    Raises :class:`DatasetError` naming the expected files when they are absent.
    """
    if dataset not in _LOADERS:
        raise ValueError(f"Unknown dataset {dataset!r}; known: {', '.join(_LOADERS)}")
    if split not in SPLITS:
        raise ValueError(f"Split must be one of {', '.join(SPLITS)}, not {split!r}")
    return _LOADERS[dataset](split, data_dir)


def augment(x: torch.Tensor, dataset: str, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding ``CROP_PAD[dataset]``) and horizontal flip of a batch ``[N,C,H,W]``."""
    n, c, h, w = x.shape
    p = CROP_PAD[dataset]
    if p:
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if FLIP[dataset]:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def normalize(x: torch.Tensor, dataset: str) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` of ``dataset`` (identity for the grayscale sets)."""
    mean, std = NORM[dataset]
    if all(m == 0 for m in mean) and all(s == 1 for s in std):
        return x
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device)[None, :, None, None]
    std = torch.tensor(std, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - mean) / std


def prepare_batch(x: torch.Tensor, dataset: str, *, train: bool,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment (when ``train``) and normalize a batch of [0, 1] images: the model's input."""
    return normalize(augment(x, dataset, generator=generator) if train else x, dataset)


def _keep_batch(batch):
    return batch


def make_loader(ds, *, batch_size: int, shuffle: bool, sampler=None, workers: int = 0,
                generator: torch.Generator | None = None, drop_last: bool = False):
    """A DataLoader that fetches whole batches through ``__getitems__`` (no per-sample collate)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None,
                                       sampler=sampler, num_workers=workers, collate_fn=_keep_batch,
                                       generator=generator, drop_last=drop_last,
                                       persistent_workers=workers > 0)
