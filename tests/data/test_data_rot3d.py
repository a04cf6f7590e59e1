"""rot3d: rotation conventions, label verification against the renders, the clean-label screen, the folder layout
and the registered dataset. Rendering tests need pybullet (the ``rot3d`` extra, installed by ``make setup``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from equireg.data import create_dataset
from equireg.data.rot3d import (
    NotEnoughObjectsError,
    Rot3dOptions,
    ScreenConfig,
    load_labels,
    make_rot3d,
    screen_mesh,
)
from equireg.data.rot3d.make import mesh_sources
from equireg.data.rot3d.mesh import mesh_frame, read_obj
from equireg.data.rot3d.rotations import (
    canonical_quaternions,
    multiply_quaternions,
    quaternions_to_matrices,
    random_quaternions,
    to_pybullet,
)
from rot3d_meshes import write_test_meshes

TINY = Rot3dOptions(objects=3, train_views=4, test_views=2, size=32, seed=0)


def _pybullet():  # type: ignore[no-untyped-def]
    return pytest.importorskip("pybullet", reason="rot3d rendering needs the rot3d extra (pybullet)")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _pybullet()
    out = tmp_path_factory.mktemp("rot3d") / "set"
    make_rot3d(out, TINY, workers=1)
    return out


@pytest.fixture(scope="module")
def test_meshes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_meshes(tmp_path_factory.mktemp("meshes"))


# ---- rotation conventions ---------------------------------------------------------------------------------------


def test_sampled_rotations_are_proper_canonical_and_centred() -> None:
    q = random_quaternions(4000, np.random.default_rng(0))
    r = quaternions_to_matrices(q)
    assert (q[:, 0] >= 0).all() and np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(r), 1)
    assert np.abs(r.mean(axis=0)).max() < 0.05  # Haar measure: E[R] = 0


def test_quaternion_product_is_matrix_product_and_sign_is_fixed() -> None:
    a, b = random_quaternions(2, np.random.default_rng(1))
    ab = multiply_quaternions(a, b)
    assert np.allclose(quaternions_to_matrices(ab), quaternions_to_matrices(a) @ quaternions_to_matrices(b))
    assert np.allclose(canonical_quaternions(-a), a)


def test_matrices_agree_with_pybullet() -> None:
    pb = _pybullet()
    for q in random_quaternions(5, np.random.default_rng(2)):
        theirs = np.array(pb.getMatrixFromQuaternion(to_pybullet(q))).reshape(3, 3)
        assert np.allclose(quaternions_to_matrices(q), theirs, atol=1e-6)


# ---- labels verified against the images -------------------------------------------------------------------------


def _bbox_errors(folder: Path, transpose: bool) -> list[float]:
    """Per image of the first object: max pixel gap between the rendered silhouette's bounding box and the box of
    the mesh vertices projected with the stored label (or its transpose) through the set's camera."""
    from equireg.data.rot3d.make import default_mesh_dir
    from equireg.data.rot3d.render import Camera

    labels = load_labels(folder)
    meta = json.loads((folder / "rot3d.json").read_text())
    camera = Camera(distance=meta["camera"]["eye"][2], fov_deg=meta["camera"]["fov_deg"])
    name = str(labels.object_names[0])
    mesh = read_obj(default_mesh_dir() / name / f"{name}.obj")
    points = mesh_frame(mesh).normalise(mesh.vertices)
    errors = []
    for row in np.flatnonzero(labels.object == 0):
        image = np.asarray(Image.open(folder / str(labels.path[row])).convert("RGB"))
        ys, xs = np.nonzero((image < 250).any(axis=-1))
        rendered = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        rotation = labels.rotation[row].T if transpose else labels.rotation[row]
        pixels = camera.project(points @ rotation.T, image.shape[0])
        projected = np.array([*pixels.min(axis=0), *pixels.max(axis=0)])
        errors.append(float(np.abs(rendered - projected).max()))
    return errors


def test_rendered_silhouettes_match_the_labels(tiny_set: Path) -> None:
    errors = _bbox_errors(tiny_set, transpose=False)
    assert len(errors) == TINY.train_views + TINY.test_views
    assert max(errors) <= 1.5, errors


def test_a_transposed_rotation_fails_the_silhouette_check(tiny_set: Path) -> None:
    """The check above has teeth: the inverse rotation (a common convention slip) misses by several pixels."""
    assert max(_bbox_errors(tiny_set, transpose=True)) > 3.0


# ---- the clean-label screen -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,reason", [
    ("box", "symmetric"), ("cube", "symmetric"), ("cylinder", "symmetric"), ("bumpy", "symmetric"),
    ("needle", "thin"), ("nan", "broken"), ("wedge", None),
])  # fmt: skip
def test_screen_verdicts_on_constructed_meshes(test_meshes: Path, name: str, reason: str | None) -> None:
    _pybullet()
    from equireg.data.rot3d.render import Renderer

    renderer = Renderer()
    try:
        result = screen_mesh(renderer, name, test_meshes / name / f"{name}.obj", ScreenConfig())
    finally:
        renderer.close()
    assert result.reason == reason, result.detail


def test_asking_for_more_objects_than_survive_names_the_count(test_meshes: Path, tmp_path: Path) -> None:
    _pybullet()
    out = tmp_path / "set"
    with pytest.raises(NotEnoughObjectsError, match=r"only 1 of 7 meshes pass the screen.*use --objects 1"):
        make_rot3d(out, Rot3dOptions(objects=2, train_views=1, test_views=1, size=16), mesh_dir=test_meshes, workers=1)
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even the partial folder


def test_skipped_meshes_are_reported_per_reason(test_meshes: Path, tmp_path: Path) -> None:
    _pybullet()
    summary = make_rot3d(tmp_path / "set", Rot3dOptions(objects=1, train_views=2, test_views=1, size=16),
                         mesh_dir=test_meshes, workers=1)
    assert summary.objects == ["wedge"] and summary.screened == len(mesh_sources(test_meshes))
    assert summary.skipped_counts() == {"broken": 1, "thin": 1, "symmetric": 4}
    meta = json.loads((tmp_path / "set" / "rot3d.json").read_text())
    assert meta["screen"]["skipped_counts"] == summary.skipped_counts()
    assert {s["name"] for s in meta["screen"]["skipped"]["symmetric"]} == {"box", "bumpy", "cube", "cylinder"}


# ---- layout, labels file and dataset ----------------------------------------------------------------------------


def test_layout_and_labels_file(tiny_set: Path) -> None:
    labels = load_labels(tiny_set)
    n_train, n_test = TINY.objects * TINY.train_views, TINY.objects * TINY.test_views
    assert len(labels) == n_train + n_test
    assert len(labels.rows("train")) == n_train and len(labels.rows("test")) == n_test
    assert all(p.is_file() for p in labels.files())
    assert sorted(p.relative_to(tiny_set).as_posix() for p in tiny_set.rglob("*.png") if p.parent != tiny_set) == \
        sorted(labels.path.tolist())
    assert np.allclose(labels.rotation, quaternions_to_matrices(labels.quaternion))
    assert (labels.quaternion[:, 0] >= 0).all()
    assert (tiny_set / "contact_sheet.png").is_file()
    with np.load(tiny_set / "labels.npz", allow_pickle=False) as raw:  # no pickled objects inside
        assert {"path", "split", "object", "view", "rotation", "quaternion", "object_names"} <= set(raw.files)


def test_registered_dataset_classes_are_the_label_objects(tiny_set: Path) -> None:
    labels = load_labels(tiny_set)
    for split in ("train", "test"):
        ds = create_dataset("rot3d", split, root=tiny_set, image_size=16, num_workers=0)
        assert ds.classes == tuple(labels.object_names.tolist())
        rows = labels.rows(split)
        by_path = {str(tiny_set / p): int(o) for p, o in zip(labels.path[rows], labels.object[rows])}
        assert [by_path[p] for p in ds.paths] == ds.labels.tolist()
        images, _ = next(ds.batches(4, shuffle=False))
        assert images.shape == (4, 3, 16, 16)


def test_dataset_refuses_a_folder_that_is_not_rot3d(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a rot3d folder.*equireg data make rot3d --out"):
        create_dataset("rot3d", "train", root=tmp_path)


def test_views_do_not_depend_on_the_number_of_workers(tiny_set: Path, tmp_path: Path) -> None:
    make_rot3d(tmp_path / "two", TINY, workers=2)
    a, b = load_labels(tiny_set), load_labels(tmp_path / "two")
    assert np.array_equal(a.quaternion, b.quaternion) and np.array_equal(a.path, b.path)
    for rel in a.path[:3]:
        assert np.array_equal(np.asarray(Image.open(tiny_set / rel)), np.asarray(Image.open(tmp_path / "two" / rel)))


def test_the_python_example_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pybullet()
    import re

    doc = Path(__file__).resolve().parents[2] / "docs" / "rot3d.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "docs/rot3d.md", "exec"), {"__name__": "docs_example"})


def test_the_run_image_size_reaches_the_dataset_and_frames_are_not_cropped(tiny_set: Path) -> None:
    import torch

    from equireg.data.folder import load_image

    ds = create_dataset("rot3d", "train", root=tiny_set, context={"image_size": 16}, num_workers=0)
    assert ds.image_size == 16  # declared, so a run at data.image_size evaluates at that size too
    images, _ = next(ds.batches(1, shuffle=False))
    whole = load_image(ds.paths[0], 16, crop_ratio=1.0)
    assert torch.equal(images[0].mul(255).round().to(torch.uint8), whole)
    assert not torch.equal(whole, load_image(ds.paths[0], 16))  # the image-folder default would crop


def test_random_colours_differ_per_object_and_reach_the_images(tmp_path: Path) -> None:
    _pybullet()
    for color in ("random", "fixed"):
        options = Rot3dOptions(objects=2, train_views=1, test_views=1, size=32, color=color, seed=3)  # type: ignore[arg-type]
        make_rot3d(tmp_path / color, options, workers=1)
        with np.load(tmp_path / color / "labels.npz", allow_pickle=False) as raw:
            colors, paths = raw["object_colors"], raw["path"][:2]  # one train view of each object
        assert np.allclose(colors[0], colors[1]) == (color == "fixed")
        for rgb, rel in zip(colors, paths):
            image = np.asarray(Image.open(tmp_path / color / str(rel)).convert("RGB"), dtype=np.float64)
            shade = image[(image < 250).any(axis=-1)].mean(axis=0)  # the object's mean colour, shading included
            cosine = shade @ rgb / (np.linalg.norm(shade) * np.linalg.norm(rgb))
            assert cosine > 0.97, (color, rgb, shade)
