"""Image data: embedded digits, CIFAR-10 python batches (generated in the official format), folders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gradclip.sandbox.convolutional.data import load_cifar10, load_data, load_digits, load_image_folder


def _write_batch(path, data: np.ndarray, labels: list[int]) -> None:
    # The official format: a pickled dict with bytes keys, b'data' uint8 (N, 3072), b'labels' a list.
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"testing", b"data": data, b"labels": labels, b"filenames": []}, f)


def _cifar_dir(root, *, n_train=(6, 4), n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for i, n in enumerate(n_train, start=1):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        _write_batch(root / f"data_batch_{i}", data, labels)
        batches.append((data, labels))
    test = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    _write_batch(root / "test_batch", test, rng.integers(0, 10, size=n_test).tolist())
    return batches, test


def test_cifar10_reader_decodes_rows_as_rgb_planes_and_keeps_labels(tmp_path):
    batches, test = _cifar_dir(tmp_path)
    split = load_cifar10(tmp_path)
    assert split.x_train.shape == (10, 3, 32, 32) and split.x_test.shape == (5, 3, 32, 32)
    assert split.y_train.tolist() == batches[0][1] + batches[1][1]
    assert split.classes[0] == "airplane" and split.num_classes == 10
    # Undo the normalisation with the training statistics: the raw bytes come back, plane by plane.
    raw = (
        torch.from_numpy(np.concatenate([batches[0][0], batches[1][0]])).float().div(255).view(-1, 3, 32, 32)
    )
    mean = raw.mean(dim=(0, 2, 3), keepdim=True)
    std = raw.std(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(split.x_train * std + mean, raw)
    red_of_first = batches[0][0][0, :1024].reshape(32, 32) / 255
    torch.testing.assert_close(
        split.x_train[0, 0] * std[0, 0] + mean[0, 0], torch.from_numpy(red_of_first).float()
    )
    torch.testing.assert_close(
        split.x_test * std + mean, torch.from_numpy(test).float().div(255).view(-1, 3, 32, 32)
    )


def test_cifar10_reader_finds_the_unpacked_tarball_folder(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    _cifar_dir(tmp_path / "cifar-10-batches-py")
    assert len(load_data("cifar10", data_dir=tmp_path).x_train) == 10


def test_cifar10_bad_inputs_give_errors_naming_the_file_and_the_problem(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no CIFAR-10 python batches in .*data_batch_1\.\.5 and test_batch"
    ):
        load_cifar10(tmp_path)
    _cifar_dir(tmp_path)
    _write_batch(tmp_path / "data_batch_2", np.zeros((3, 100), np.uint8), [0, 1, 2])
    with pytest.raises(
        ValueError, match=r"data_batch_2: b'data' must be uint8 of shape \(N, 3072\), got uint8 \(3, 100\)"
    ):
        load_cifar10(tmp_path)
    _write_batch(tmp_path / "data_batch_2", np.zeros((2, 3072), np.uint8), [0, 10])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got range \[0, 10\]"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_2 is not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)
    with (tmp_path / "data_batch_2").open("wb") as f:
        pickle.dump({"data": 1}, f)
    with pytest.raises(ValueError, match=r"expected keys b'data', b'labels', got \['data'\]"):
        load_cifar10(tmp_path)


def test_digits_are_upsampled_and_normalised_with_training_statistics_only():
    split = load_digits(size=16)
    assert split.x_train.shape == (1438, 1, 16, 16) and split.x_test.shape == (359, 1, 16, 16)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert abs(float(split.x_train.mean())) < 1e-4 and abs(float(split.x_train.std()) - 1) < 1e-3
    assert abs(float(split.x_test.mean())) > 1e-4  # the test set was not normalised with its own mean
    small = load_digits(size=8)
    # Bilinear upsampling by 2 keeps the block average: pooling it back gives the 8x8 images.
    pooled = torch.nn.functional.avg_pool2d(split.x_train, 2)
    assert torch.corrcoef(torch.stack([pooled.flatten(), small.x_train.flatten()]))[0, 1] > 0.95
    with pytest.raises(ValueError, match="size must be an integer in"):
        load_digits(size=0)


def test_image_folder_reads_class_folders_and_a_train_test_layout(tmp_path):
    from PIL import Image

    colours = {"blue": (0, 0, 255), "red": (255, 0, 0)}
    for part in ("train", "test"):
        for name, rgb in colours.items():
            (tmp_path / part / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (10 + i, 12), rgb).save(tmp_path / part / name / f"{i}.png")
    split = load_image_folder(tmp_path, size=8)
    assert split.classes == ["blue", "red"] and split.x_train.shape == (6, 3, 8, 8)
    assert split.y_train.tolist() == [0, 0, 0, 1, 1, 1] and len(split.x_test) == 6
    blue = split.x_train[split.y_train == 0]
    assert bool((blue[:, 2] > blue[:, 0]).all())  # the blue channel is the bright one
    flat = load_image_folder(tmp_path / "train", size=4, test_fraction=0.5, seed=1)
    assert len(flat.x_train) == 3 and len(flat.x_test) == 3
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images in"):
        load_data("folder", data_dir=tmp_path / "empty")


def test_load_data_names_the_bad_argument():
    with pytest.raises(
        ValueError, match=r"unknown dataset 'mnist'; choose from \['digits', 'cifar10', 'folder'\]"
    ):
        load_data("mnist")
    with pytest.raises(ValueError, match="give data_dir"):
        load_data("cifar10")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_data("folder", data_dir="/nonexistent/folder")
