"""Data: the CIFAR-10 loader on a tiny fake CIFAR-10 in torchvision's format, digits, splits, batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnasframe.data import (
    Augmentation,
    BatchLoader,
    CIFAR10Source,
    DataNotFoundError,
    DigitsSource,
    LabeledImages,
    split_indices,
)


def _write_fake_cifar10(root: Path, per_batch: int = 4) -> None:
    """Write cifar-10-batches-py with torchvision's file names and pickle layout."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        data[:, 0] = index  # first red pixel marks the file
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as stream:
            pickle.dump({"data": data, "labels": labels}, stream)
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, stream)


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import torchvision.datasets.cifar as cifar

    _write_fake_cifar10(tmp_path)
    # The fake files cannot match the real archive's MD5 sums; everything else is torchvision's code.
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    return tmp_path


def test_cifar10_loader_reads_torchvision_format(fake_cifar10: Path) -> None:
    source = CIFAR10Source(root=str(fake_cifar10))
    train, test = source.load_train(), source.load_test()
    assert len(train) == 20 and len(test) == 4
    assert train.images.dtype == torch.uint8 and train.shape == (3, 32, 32)
    assert train.images[:4, 0, 0, 0].tolist() == [0, 0, 0, 0] and train.images[4, 0, 0, 0] == 1
    pixels = train.pixels(torch.arange(3))
    assert pixels.dtype == torch.float32 and pixels.min() >= 0 and pixels.max() <= 1
    mean, std = source.normalization(train)
    assert mean[0] == pytest.approx(0.4914, abs=1e-3) and std[2] == pytest.approx(0.2616, abs=1e-3)
    assert len(CIFAR10Source(root=str(fake_cifar10), limit=7).load_train()) == 7


def test_missing_cifar10_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"CIFAR-10 not found: expected the folder .*cifar-10-batches-py"):
        CIFAR10Source(root=str(tmp_path)).load_train()


def test_digits_are_real_bundled_images_with_a_fixed_split() -> None:
    source = DigitsSource()
    train, test = source.load_train(), source.load_test()
    assert len(train) + len(test) == 1797 and train.shape == (1, 8, 8) and train.num_classes == 10
    assert torch.equal(DigitsSource().load_train().labels, train.labels)
    assert float(train.images.min()) >= 0 and float(train.images.max()) <= 1


@given(n=st.integers(2, 500), portion=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
@settings(max_examples=50, deadline=None)
def test_split_is_a_seeded_partition(n: int, portion: float, seed: int) -> None:
    train, valid = split_indices(n, portion, seed)
    assert sorted(train.tolist() + valid.tolist()) == list(range(n))
    assert len(train) >= 1 and len(valid) >= 1
    again = split_indices(n, portion, seed)
    assert torch.equal(train, again[0]) and torch.equal(valid, again[1])


def test_batches_depend_only_on_seed_and_epoch_and_stay_in_pixel_range() -> None:
    images = LabeledImages(torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (50,)), 10)
    loader = BatchLoader(images, 16, seed=1, augmentation=Augmentation(crop_padding=2), drop_last=True)
    first = list(loader.epoch(3))
    torch.manual_seed(123)  # the global generator does not matter
    second = list(loader.epoch(3))
    assert len(first) == len(loader) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert x1.shape == (16, 3, 8, 8) and x1.min() >= 0 and x1.max() <= 1
    assert not torch.equal(first[0][0], next(iter(loader.epoch(4)))[0])


def test_crop_is_a_shift_of_the_padded_image() -> None:
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4) / 16
    out = Augmentation(crop_padding=1, horizontal_flip=False)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[..., i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
    assert any(torch.equal(out, w) for w in windows)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels must lie in"):
        LabeledImages(torch.zeros(2, 1, 4, 4), torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        LabeledImages(torch.full((2, 1, 4, 4), 2.0), torch.tensor([0, 1]), 10)
    with pytest.raises(ValueError, match="train_portion"):
        split_indices(10, 1.0, 0)


def _resident_devices() -> list:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.mark.parametrize("device", _resident_devices())
@pytest.mark.parametrize("world_size, rank", [(1, 0), (2, 1)])
def test_a_resident_loader_yields_the_same_batches_from_the_device(device: str, world_size: int, rank: int) -> None:
    images = LabeledImages(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (40,)), 10, "toy")
    common = dict(
        seed=3, augmentation=Augmentation(crop_padding=2, cutout=3), drop_last=True, device=device,
        rank=rank, world_size=world_size,
    )
    copied = BatchLoader(images, 8, **common)
    resident = BatchLoader(images, 8, resident=True, **common)
    assert resident.data.images.device.type == device and resident.data.images.dtype == torch.uint8
    assert images.images.device.type == "cpu"  # the source set is not moved
    for epoch in (0, 1):
        pairs = list(zip(copied.epoch(epoch), resident.epoch(epoch)))
        assert len(pairs) == len(copied) == 5
        for (x, y), (x_resident, y_resident) in pairs:
            assert x_resident.device.type == device and x.shape[0] == 8 // world_size
            torch.testing.assert_close(x_resident, x, rtol=0, atol=0)
            assert torch.equal(y_resident, y)
