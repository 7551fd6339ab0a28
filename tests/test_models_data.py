"""models.data: offline dataset loaders, batch augmentation and normalization."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import (CROP_PAD, DatasetError, augment, load_dataset, make_loader, normalize,
                         prepare_batch)

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path, arr, gz):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader_on_handmade_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28))
    labels = rng.integers(0, 10, 5)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, gz)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, gz)
    ds = load_dataset("fashion_mnist", "test", data_dir=tmp_path)
    assert torch.equal(ds.images, torch.as_tensor(images[:, None], dtype=torch.uint8))
    assert torch.equal(ds.labels, torch.as_tensor(labels))
    x, y = ds.__getitems__([4, 0])
    assert torch.allclose(x[0, 0], torch.as_tensor(images[4] / 255.0, dtype=torch.float32))
    assert y.tolist() == [labels[4], labels[0]]


def test_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", "train", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="data_batch_1, data_batch_2"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        load_dataset("cifar10", "test")
    with pytest.raises(DatasetError, match="wnids.txt"):
        load_dataset("tinyimagenet", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="Split must be one of train, test, not 'val'"):
        load_dataset("digits", "val")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_test_split():
    ds = load_dataset("fashion_mnist", "test")
    assert len(ds) == 10000 and tuple(ds.images.shape[1:]) == (1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


def test_digits_split_is_fixed_and_stratified():
    from sklearn.datasets import load_digits
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(tr), len(te)) == (1437, 360)
    assert torch.equal(load_dataset("digits", "test").images, te.images)
    counts = torch.bincount(te.labels, minlength=10)
    full = np.bincount(load_digits().target)
    assert np.all(np.abs(counts.numpy() - full * 0.2) <= 1)
    x, _ = te.__getitems__(list(range(len(te))))
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_cifar10_pickle_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {b"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8),
                         b"labels": list(rng.integers(0, 10, 3))}
        with open(d / name, "wb") as f:
            pickle.dump(batches[name], f)
    tr = load_dataset("cifar10", "train", data_dir=tmp_path)
    te = load_dataset("cifar10", "test", data_dir=d)
    assert len(tr) == 15 and len(te) == 3
    # Row layout: 1024 red, 1024 green, 1024 blue, each row-major 32x32.
    img = batches["data_batch_2"][b"data"][1]
    assert torch.equal(tr.images[4], torch.as_tensor(img.reshape(3, 32, 32)))
    assert tr.labels[4] == batches["data_batch_2"][b"labels"][1]


def test_tinyimagenet_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n001", "n002"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for k, w in enumerate(wnids):
        (root / "train" / w / "images").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((64, 64, 3), 40 * k + i, np.uint8)).save(root / "train" / w / "images" / f"{w}_{i}.JPEG")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(root / "val" / "images" / "val_0.JPEG")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn002\t0\t0\t10\t10\n")
    tr = load_dataset("tinyimagenet", "train", data_dir=tmp_path)
    te = load_dataset("tinyimagenet", "test", data_dir=tmp_path)
    assert tr.labels.tolist() == [0, 0, 1, 1] and te.labels.tolist() == [1]
    x, y = tr.__getitems__([2])
    assert x.shape == (1, 3, 64, 64) and abs(float(x.mean()) - 40 / 255) < 3 / 255


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10", "digits"])
def test_augment_is_a_crop_of_the_padded_image_or_its_mirror(dataset):
    seed = 3
    g = torch.Generator().manual_seed(seed)
    hw = {"fashion_mnist": 28, "cifar10": 32, "digits": 8}[dataset]
    c = 3 if dataset == "cifar10" else 1
    x = torch.rand(16, c, hw, hw, generator=g)
    y = augment(x, dataset, generator=g)
    p = CROP_PAD[dataset]
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    flips = 0
    for i in range(len(x)):
        cands = []
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                win = xp[i, :, dy:dy + hw, dx:dx + hw]
                cands += [(win, False), (win.flip(2), True)]
        hits = [f for w, f in cands if torch.equal(w, y[i])]
        assert hits, f"seed {seed} image {i}"
        flips += hits[0]
    if dataset == "digits":
        assert torch.equal(x, y)
    else:
        assert 0 < flips < len(x)


def test_normalize_and_loader():
    x = torch.ones(2, 3, 4, 4)
    n = normalize(x, "cifar10")
    assert torch.allclose(n[:, 0], torch.full((2, 4, 4), (1 - 0.4914) / 0.2470))
    assert normalize(x[:, :1], "fashion_mnist") is not None
    assert torch.equal(prepare_batch(x[:, :1], "digits", train=True), x[:, :1])
    ds = load_dataset("digits", "test")
    batches = list(make_loader(ds, batch_size=100, shuffle=False))
    assert [len(b[1]) for b in batches] == [100, 100, 100, 60]
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.labels)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, not 0"):
        make_loader(ds, batch_size=0, shuffle=False)
