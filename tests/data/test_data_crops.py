"""Training crops cut from the original files: reach, recorded boxes, reproducibility across worker counts,
reduced-scale decoding, the evaluation transform, resuming mid-epoch and persistent workers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from imagefolders import smooth_image, write_classes, write_image
from PIL import Image

from equireg.compat import ensure_torchvision_importable
from equireg.data import CropBatch, CropSpec, ImageFolderDataset, create_dataset
from equireg.data import decode


def _coordinate_png(height: int, width: int) -> bytes:
    """R encodes x, G encodes y (lossless), so a view's mean colour says where it was cut from."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([255 * (x + 0.5) / width, 255 * (y + 0.5) / height, np.zeros_like(x)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def _cut(data: bytes, spec: CropSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = torch.empty((spec.num_views, spec.size, spec.size, 3), dtype=torch.uint8)
    boxes, flips = decode.crop_views(data, spec, torch.Generator().manual_seed(seed), out)
    return out.permute(0, 3, 1, 2), boxes, flips


def test_crops_reach_every_part_of_a_wide_image() -> None:
    height, width = 24, 72  # aspect 3: outside the crop ratio range, so the fallback box is not the whole image
    data = _coordinate_png(height, width)
    spec = CropSpec(8, num_views=2)
    covered = np.zeros((height, width), dtype=bool)
    corners = set()
    for seed in range(600):  # an edge row or column is hit with p ~ 1% per crop
        views, boxes, _ = _cut(data, spec, seed)
        for (cy, cx, h, w), view in zip(boxes.tolist(), views):
            top, left = round((cy - h / 2) * height), round((cx - w / 2) * width)
            bottom, right = top + round(h * height), left + round(w * width)
            assert 0 <= top < bottom <= height and 0 <= left < right <= width
            covered[top:bottom, left:right] = True
            corners |= {(top == 0 and left == 0, "tl"), (top == 0 and right == width, "tr"),
                        (bottom == height and left == 0, "bl"), (bottom == height and right == width, "br")}
            # the content is the recorded box: mean x and mean y of the view are the box centre (flips keep means)
            mean = view.float().mean(dim=(1, 2)) / 255
            assert abs(float(mean[0]) - cx) < 0.03 and abs(float(mean[1]) - cy) < 0.03
    assert covered.all()
    assert {name for hit, name in corners if hit} == {"tl", "tr", "bl", "br"}


def test_flip_is_applied_after_the_crop() -> None:
    data = _coordinate_png(32, 32)
    for seed in range(20):
        views, _, flips = _cut(data, CropSpec(8, num_views=2), seed)
        for view, flip in zip(views, flips.tolist()):
            increasing = bool(view[0, :, -1].float().mean() > view[0, :, 0].float().mean())  # R grows with x
            assert increasing == (flip == 0.0)


@pytest.mark.parametrize("hw", [(30, 40), (24, 72), (90, 20)])
def test_box_rule_is_the_view_policys(hw: tuple[int, int]) -> None:
    from equireg.augment.views import CropConfig, sample_crop_boxes

    spec = CropSpec(8, scale=(0.2, 0.9), ratio=(0.6, 1.5))
    for seed in range(20):
        ours = decode.sample_boxes(2, *hw, spec, torch.Generator().manual_seed(seed))
        ref = sample_crop_boxes(2, *hw, CropConfig(spec.scale, spec.ratio), torch.Generator().manual_seed(seed))
        assert np.allclose(ours, ref.numpy(), atol=1e-6)


def test_one_view_spec_and_validation() -> None:
    views, boxes, flips = _cut(_coordinate_png(20, 30), CropSpec(6, num_views=1), 0)
    assert views.shape == (1, 3, 6, 6) and boxes.shape == (1, 4) and flips.shape == (1,)
    with pytest.raises(ValueError, match="num_views"):
        CropSpec(8, num_views=3)
    with pytest.raises(ValueError, match="crop scale"):
        CropSpec(8, scale=(0.5, 1.5))


def test_reduced_scale_decoding_when_every_crop_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    Image.fromarray(smooth_image(256, 320, seed=3)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    used: list[int] = []
    real = decode.decode_rgb
    monkeypatch.setattr(decode, "decode_rgb", lambda d, reduce=1, hw=None: used.append(reduce) or real(d, reduce, hw))
    spec = CropSpec(16, scale=(0.5, 1.0))  # crops >= 180 px: 1/8 scale still leaves >= 16 px
    views, boxes, _ = _cut(data, spec, 0)
    assert used == [8]
    monkeypatch.setattr(decode, "REDUCTIONS", (1,))
    full, full_boxes, _ = _cut(data, spec, 0)
    assert torch.allclose(boxes, full_boxes, atol=0.02)  # the same boxes, up to the coarser pixel grid
    assert (views.float() - full.float()).abs().mean() < 4.0  # and nearly the same pixels (out of 255)


def test_eval_image_matches_torchvision_resize_and_center_crop(tmp_path: Path) -> None:
    ensure_torchvision_importable()
    from torchvision.transforms import v2

    image = smooth_image(50, 70, seed=1)
    path = write_image(tmp_path / "x.png", image)
    ours = decode.load_image(path, 16, crop_ratio=0.875)
    ref = v2.CenterCrop(16)(v2.Resize(round(16 / 0.875), antialias=True)(torch.from_numpy(image).permute(2, 0, 1)))
    assert ours.shape == (3, 16, 16) and (ours.int() - ref.int()).abs().max() <= 1


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return write_classes(tmp_path / "imgs", ["a", "b", "c"], per_class=4, size=(30, 40))


def _epoch(ds: ImageFolderDataset, batch_size: int, epoch: int = 0, **kw: object) -> tuple[torch.Tensor, ...]:
    out = list(ds.batches(batch_size, seed=5, epoch=epoch, drop_last=False, crops=CropSpec(12), **kw))
    crops = [c for c, _ in out]
    assert all(isinstance(c, CropBatch) for c in crops)
    return tuple(torch.cat([getattr(c, name) for c in crops]) for name in ("view1", "view2", "box1", "box2", "flip1"))


def test_crop_batches_are_reproducible_whatever_the_workers(folder: Path) -> None:
    inline = _epoch(ImageFolderDataset(folder, image_size=12, num_workers=0), batch_size=5)
    workers = ImageFolderDataset(folder, image_size=12, num_workers=2)
    try:
        parallel = _epoch(workers, batch_size=3)
    finally:
        workers.close()
    assert all(torch.equal(a, b) for a, b in zip(inline, parallel))
    view1, view2, box1, box2, _ = inline
    assert view1.shape == (12, 3, 12, 12) and view1.dtype == torch.float32 and 0 <= view1.min() and view1.max() <= 1
    assert not torch.equal(box1, box2)  # two independent crops of each image
    again = _epoch(ImageFolderDataset(folder, image_size=12, num_workers=0), batch_size=5, epoch=1)
    assert not torch.equal(again[2], box1)  # a new epoch draws new crops


def test_start_batch_skips_without_decoding(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ImageFolderDataset(folder, image_size=8, num_workers=0)
    full = [x for x, _ in ds.batches(4, seed=1)]
    calls: list[int] = []
    real = decode.read_bytes
    monkeypatch.setattr("equireg.data.folder.read_bytes", lambda p: calls.append(1) or real(p))
    resumed = [x for x, _ in ds.batches(4, seed=1, start_batch=2)]
    assert len(resumed) == 1 and torch.equal(resumed[0], full[2]) and len(calls) == 4


def test_start_batch_in_memory() -> None:
    ds = create_dataset("synthetic", num_samples=20, image_size=8)
    full = [y for _, y in ds.batches(4, seed=3)]
    assert [y.tolist() for _, y in ds.batches(4, seed=3, start_batch=3)] == [y.tolist() for y in full[3:]]
    with pytest.raises(ValueError, match="view policy"):
        next(ds.batches(4, crops=CropSpec(8)))


def test_workers_persist_across_epochs(folder: Path) -> None:
    ds = ImageFolderDataset(folder, image_size=8, num_workers=1)
    try:
        list(ds.batches(4, epoch=0))
        pids = [w.pid for w in ds._loader._iterator._workers]  # type: ignore[union-attr]
        first = next(iter(ds.batches(4, epoch=1)))  # an epoch stopped early, as at the end of training
        labels = [y for _, y in ds.batches(4, epoch=2, shuffle=False)]
        assert [w.pid for w in ds._loader._iterator._workers] == pids  # type: ignore[union-attr]
        assert first[0].shape == (4, 3, 8, 8) and torch.cat(labels).tolist() == ds.labels.tolist()
    finally:
        ds.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_batches_match_the_host_batches(folder: Path) -> None:
    ds = ImageFolderDataset(folder, image_size=12, num_workers=1)
    try:
        host = list(ds.batches(5, seed=2, drop_last=False, crops=CropSpec(12)))
        gpu = list(ds.batches(5, seed=2, drop_last=False, crops=CropSpec(12), device="cuda"))
        plain = [x for x, _ in ds.batches(5, seed=2, drop_last=False, device="cuda")]
    finally:
        ds.close()
    torch.cuda.synchronize()
    for (a, ya), (b, yb) in zip(host, gpu):
        assert b.device.type == "cuda" and b.view1.is_contiguous() and torch.equal(ya, yb.cpu())
        assert torch.equal(a.view1, b.view1.cpu()) and torch.equal(a.box2, b.box2.cpu())
    assert all(x.device.type == "cuda" and x.dtype == torch.float32 for x in plain)
