"""Image data for the convolutional sandbox: embedded digits, CIFAR-10 from disk, an image folder.

Every loader returns an `ImageSplit` of float32 ``(N, C, H, W)`` tensors, normalised per channel
with the training set's mean and standard deviation, and int64 labels. Nothing is downloaded:

* ``digits`` (default): scikit-learn's 8x8 digits, upsampled bilinearly to ``size`` x ``size``
  (16 by default: ResNet-18's three stride-2 stages then still see a 2x2 map);
* ``cifar10``: the standard python batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
  pickled dicts with ``b'data'``, uint8 ``(N, 3072)`` rows of R, G, B planes, and ``b'labels'``) in
  ``data_dir`` or its ``cifar-10-batches-py`` subfolder, as the official tarball unpacks;
* ``folder``: ``data_dir/<class>/<image>`` files read with Pillow, resized to ``size`` x ``size``;
  ``data_dir/train/<class>`` plus ``data_dir/test/<class>`` when both exist, else a seeded split.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gradclip._extras import missing_extra

try:
    import torch
except ModuleNotFoundError as err:  # torch is an extra: say which one
    missing_extra(err, __name__)

import torch.nn.functional as F
from torch import Tensor

from gradclip.sandbox import data as embedded

__all__ = ["DATASETS", "ImageSplit", "load_cifar10", "load_data", "load_digits", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")


class ImageSplit(NamedTuple):
    x_train: Tensor  # (n_train, C, H, W) float32, normalised with the training statistics
    y_train: Tensor  # (n_train,) int64 in [0, num_classes)
    x_test: Tensor  # (n_test, C, H, W)
    y_test: Tensor  # (n_test,)
    classes: list[str]  # class names, index = label

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])


def _normalise(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Standardise each channel with the training set's mean and std (the test set never leaks in)."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)  # a constant channel stays finite
    return ((x_train - mean) / std).contiguous(), ((x_test - mean) / std).contiguous()


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1024:
        raise ValueError(f"size must be an integer in [1, 1024] (pixels), got {size!r}")
    return size


def load_digits(*, size: int = 16, test_fraction: float = 0.2, seed: int = 0) -> ImageSplit:
    """scikit-learn digits (1,797 8x8 greyscale images) as ``(N, 1, size, size)``, seeded split."""
    size = _check_size(size)
    split = embedded.load_digits(test_fraction=test_fraction, seed=seed)

    def images(flat: np.ndarray) -> Tensor:
        x = torch.from_numpy(flat).view(-1, 1, 8, 8)  # (N, 1, 8, 8) in [0, 1]
        if size == 8:
            return x.clone()
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    x_train, x_test = _normalise(images(split.x_train), images(split.x_test))
    labels = [torch.from_numpy(y) for y in (split.y_train, split.y_test)]
    return ImageSplit(x_train, labels[0], x_test, labels[1], [str(i) for i in range(10)])


def _read_cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One pickled CIFAR batch -> (images (N, 3, 32, 32) uint8, labels (N,) int64), checked."""
    try:
        with path.open("rb") as f:
            # The official batches are pickles; they are data files the user chose to point us at.
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 python batch (unpickling failed: {err})") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected keys b'data', b'labels', got {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: b'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be in [0, 9], got range [{labels.min()}, {labels.max()}]")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows hold the R, G, B planes
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar10(data_dir: str | os.PathLike[str]) -> ImageSplit:
    """CIFAR-10 from the python batches in ``data_dir`` (or ``data_dir/cifar-10-batches-py``)."""
    root = Path(data_dir)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train_files = sorted(root.glob("data_batch_*"))
    test_file = root / "test_batch"
    if not train_files or not test_file.is_file():
        raise FileNotFoundError(
            f"no CIFAR-10 python batches in {os.fspath(data_dir)!r}: expected data_batch_1..5 and "
            "test_batch (unpack cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html)"
        )
    train = [_read_cifar_batch(p) for p in train_files]
    x_test, y_test = _read_cifar_batch(test_file)
    x_train = torch.cat([x for x, _ in train]).float().div_(255)
    y_train = torch.cat([y for _, y in train])
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    xtr, xte = _normalise(x_train, x_test.float().div_(255))
    return ImageSplit(xtr, y_train, xte, y_test, classes)


def _read_folder(root: Path, size: int, classes: list[str] | None) -> tuple[Tensor, Tensor, list[str]]:
    try:
        from PIL import Image
    except ModuleNotFoundError as err:
        raise ImportError("the image folder dataset needs Pillow: pip install pillow") from err
    names = classes if classes is not None else sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                with Image.open(path) as img:
                    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except (OSError, ValueError) as err:  # UnidentifiedImageError is an OSError
                raise ValueError(f"cannot decode the image {os.fspath(path)!r}: {err}") from None
            images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))  # (3, H, W)
            labels.append(label)
    if not images:
        raise FileNotFoundError(
            f"no images in {os.fspath(root)!r}: expected <class>/<file> with suffix one of {IMAGE_SUFFIXES}"
        )
    return torch.stack(images).float().div_(255), torch.tensor(labels, dtype=torch.int64), names


def load_image_folder(
    data_dir: str | os.PathLike[str], *, size: int = 32, test_fraction: float = 0.2, seed: int = 0
) -> ImageSplit:
    """Images in ``data_dir/<class>/`` (RGB, resized to ``size``), split by a seeded permutation."""
    size = _check_size(size)
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {os.fspath(data_dir)!r} is not a directory")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x_train, y_train, classes = _read_folder(root / "train", size, None)
        x_test, y_test, _ = _read_folder(root / "test", size, classes)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        x, y, classes = _read_folder(root, size, None)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        n_test = max(1, round(len(x) * test_fraction))
        test, train = order[:n_test], order[n_test:]
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    xtr, xte = _normalise(x_train, x_test)
    return ImageSplit(xtr, y_train, xte, y_test, classes)


DATASETS = ("digits", "cifar10", "folder")


def load_data(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, size: int | None = None, seed: int = 0
) -> ImageSplit:
    """Dispatch on ``name`` (one of `DATASETS`); ``cifar10`` and ``folder`` need ``data_dir``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")
    if name == "digits":
        return load_digits(size=16 if size is None else size, seed=seed)
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from disk: give data_dir (--data-dir)")
    if name == "cifar10":
        if size not in (None, 32):
            raise ValueError(f"size must be 32 (or unset) for cifar10, got {size!r}")
        return load_cifar10(data_dir)
    return load_image_folder(data_dir, size=32 if size is None else size, seed=seed)
