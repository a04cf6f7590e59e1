"""The uniform batch interface: determinism, rank sharding, subsets, the registry, the synthetic set."""

from __future__ import annotations

import math

import pytest
import torch

from equireg.data import (
    TensorImageDataset,
    create_dataset,
    epoch_indices,
    list_datasets,
    register_dataset,
)
from equireg.data.registry import DATASETS
from equireg.registry import UnknownNameError


def _tiny(n: int = 23, channels: int = 1) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, channels, 4, 4).contiguous()
    return TensorImageDataset(images, torch.arange(n) % 3, ("a", "b", "c"), name="tiny")


def _ids(batch_images: torch.Tensor) -> list[int]:
    return (batch_images[:, 0, 0, 0] * 255).round().long().tolist()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_take_disjoint_slices_of_one_permutation(world_size: int) -> None:
    n = 23
    shards = [epoch_indices(n, shuffle=True, seed=5, epoch=2, rank=r, world_size=world_size) for r in range(world_size)]
    joined = torch.cat(shards)
    assert all(s.numel() == n // world_size for s in shards)
    assert joined.unique().numel() == joined.numel()  # disjoint
    full = epoch_indices(n, shuffle=True, seed=5, epoch=2)
    assert torch.equal(joined, full[: joined.numel()])  # slices of the same epoch permutation


def test_batches_deterministic_and_sharded() -> None:
    ds = _tiny()
    run = lambda **kw: [i for x, _ in ds.batches(4, seed=7, **kw) for i in _ids(x)]  # noqa: E731
    assert run(epoch=0) == run(epoch=0)
    assert run(epoch=0) != run(epoch=1)
    assert sorted(run(epoch=0)) != run(epoch=0)  # shuffled
    per_rank = [run(epoch=3, rank=r, world_size=2) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == 8  # 11 per rank, two full batches of 4
    assert not set(per_rank[0]) & set(per_rank[1])
    assert ds.num_batches(4, world_size=2) == 2
    assert ds.num_batches(4, drop_last=False) == math.ceil(23 / 4)
    assert len(list(ds.batches(4, drop_last=False))) == 6


def test_batch_format_and_labels_follow_images() -> None:
    ds = _tiny()
    for x, y in ds.batches(5, seed=1, device="cpu"):
        assert x.shape == (5, 3, 4, 4) and x.dtype == torch.float32 and y.dtype == torch.long
        assert torch.equal(torch.tensor(_ids(x)) % 3, y)
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))
    with pytest.raises(ValueError, match="rank"):
        next(ds.batches(2, rank=2, world_size=2))


def test_subset_and_split() -> None:
    ds = _tiny()
    a, b = ds.split(10, seed=3)
    ids_a, ids_b = set(a.images[:, 0, 0, 0].tolist()), set(b.images[:, 0, 0, 0].tolist())
    assert len(a) == 10 and len(b) == 13 and not ids_a & ids_b and len(ids_a | ids_b) == 23
    assert torch.equal(ds.subset(10, seed=3).images, a.images)
    picked = ds.subset([4, 2])
    assert picked.images[:, 0, 0, 0].tolist() == [4, 2] and picked.labels.tolist() == [1, 2]
    with pytest.raises(ValueError):
        ds.subset(24)
    with pytest.raises(ValueError):
        ds.subset([23])


def test_bad_tensor_inputs() -> None:
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ("a",))
    with pytest.raises(ValueError, match="labels"):
        TensorImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ("a",))


def test_registry_and_plugins() -> None:
    assert {"fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic"} <= set(list_datasets())
    with pytest.raises(UnknownNameError, match="synthetic"):
        create_dataset("imagenet-42")

    @register_dataset("tiny-test-set")
    def tiny(split: str = "train", root: str | None = None, n: int = 5) -> TensorImageDataset:
        return _tiny(n)

    try:
        assert len(create_dataset("tiny-test-set", "test", n=7)) == 7
    finally:
        DATASETS._factories.pop("tiny-test-set")


def _orientation_deg(images: torch.Tensor) -> float:
    """Dominant gradient orientation (degrees mod 180) from the doubled-angle structure tensor."""
    gray = images.float().mean(1)
    gx = gray[:, 1:-1, 2:] - gray[:, 1:-1, :-2]
    gy = gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1]  # y pointing up, as angles are read on screen
    angle = 0.5 * torch.atan2(2 * (gx * gy).sum(), (gx * gx - gy * gy).sum())
    return float(torch.rad2deg(angle)) % 180


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def test_synthetic_is_deterministic_balanced_and_orientation_coded() -> None:
    a = create_dataset("synthetic", num_samples=100, image_size=16, seed=3)
    b = create_dataset("synthetic", num_samples=100, image_size=16, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, create_dataset("synthetic", "test", num_samples=100, image_size=16, seed=3).images)
    assert torch.equal(torch.bincount(a.labels), torch.full((10,), 10))

    big = create_dataset("synthetic", num_samples=200, image_size=24, noise=0.0)
    for k in range(5):
        own, partner = big.images[big.labels == k], big.images[big.labels == k + 5]
        # the stripes of class k run at 18k degrees, so the gradient is perpendicular to them
        assert _angle_gap(_orientation_deg(own), 18 * k + 90) < 12
        # class k + 5 is class k turned by 90 degrees: rot90 invariance would merge them
        assert _angle_gap(_orientation_deg(own), _orientation_deg(partner)) > 70
        turned = torch.rot90(own, 1, dims=(-2, -1))
        assert _angle_gap(_orientation_deg(turned), _orientation_deg(partner)) < 15
