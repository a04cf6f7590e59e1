"""Rotation and identity probes on synthetic features whose answer is known: the labels themselves reach the
ceiling, random features score chance, a linear probe cannot express relative rotations, and the metrics on
SO(3) behave as documented (a random guess is ~126.5 degrees off)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from equireg.data.rot3d.rotations import quaternions_to_matrices, random_quaternions
from equireg.evaluation.rotation import (
    RANDOM_GUESS_DEG,
    ProbeSettings,
    geodesic_degrees,
    project_to_rotation,
    r2_score,
    rotation_probes,
    split_rows,
    view_pairs,
)

OBJECTS, TRAIN_VIEWS, TEST_VIEWS = 8, 20, 6
FAST = ProbeSettings(batch_size=32, max_epochs=60, patience=8, weight_decays=(1e-4,))  # small set: small batches


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(quaternions_to_matrices(random_quaternions(n, np.random.default_rng(seed))))


@pytest.fixture(scope="module")
def toy_set() -> dict[str, np.ndarray]:
    """OBJECTS objects, each with TRAIN_VIEWS train and TEST_VIEWS test views at uniform random rotations."""
    views = TRAIN_VIEWS + TEST_VIEWS
    return {
        "rotation": _random_rotations(OBJECTS * views, 0).numpy(),
        "object": np.repeat(np.arange(OBJECTS), views),
        "split": np.tile(np.array(["train"] * TRAIN_VIEWS + ["test"] * TEST_VIEWS), OBJECTS),
    }


def test_a_random_guess_is_126_degrees_off() -> None:
    a, b = _random_rotations(20_000, 1), _random_rotations(20_000, 2)
    measured = float(geodesic_degrees(a, b).mean())
    assert RANDOM_GUESS_DEG == pytest.approx(126.48, abs=0.01)
    assert measured == pytest.approx(RANDOM_GUESS_DEG, abs=1.0)  # sd of the mean ~0.3 degrees


def test_projection_onto_so3() -> None:
    rotations = _random_rotations(50, 3)
    assert torch.allclose(project_to_rotation(rotations), rotations, atol=1e-9)
    noisy = project_to_rotation(rotations + 0.1 * torch.randn(50, 3, 3, dtype=torch.float64))
    assert torch.allclose(noisy @ noisy.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-9)
    assert torch.allclose(torch.det(project_to_rotation(-rotations)), torch.ones(50, dtype=torch.float64))
    angle = math.radians(30)
    turn = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    assert float(geodesic_degrees(torch.eye(3), turn)) == pytest.approx(30.0, abs=1e-4)


def test_r2_of_perfect_and_mean_predictions() -> None:
    target = torch.randn(100, 9)
    assert r2_score(target, target) == pytest.approx(1.0)
    assert r2_score(target.mean(0).expand(100, 9), target) == pytest.approx(0.0, abs=1e-9)


def test_pairs_join_distinct_views_of_one_object(toy_set: dict[str, np.ndarray]) -> None:
    objects = torch.from_numpy(toy_set["object"])
    rows = split_rows(toy_set["split"], toy_set["object"], 0.2, seed=0)
    assert len(rows.val) == OBJECTS * 4 and len(rows.train) == OBJECTS * 16
    assert set(rows.train.tolist()).isdisjoint(rows.val.tolist())
    i, j = view_pairs(rows.test, objects, None, torch.Generator().manual_seed(0))
    assert len(i) == OBJECTS * TEST_VIEWS * (TEST_VIEWS - 1)
    assert (objects[i] == objects[j]).all() and (i != j).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)  # every ordered pair once
    i, j = view_pairs(rows.train, objects, 3, torch.Generator().manual_seed(0))
    assert len(i) == len(rows.train) * 3 and (objects[i] == objects[j]).all() and (i != j).all()


def test_the_labels_reach_the_ceiling_and_random_features_score_chance(toy_set: dict[str, np.ndarray]) -> None:
    rotation = torch.from_numpy(toy_set["rotation"]).float()
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(toy_set["object"])).float()
    features = {
        "labels": torch.cat([rotation.reshape(-1, 9), one_hot], dim=1),
        "random": torch.randn(len(rotation), 32, generator=torch.Generator().manual_seed(0)),
    }
    result = rotation_probes(features, toy_set["rotation"], toy_set["object"], toy_set["split"], seed=0,
                             settings=FAST)
    labels, noise = result.scores["labels"], result.scores["random"]
    assert labels.identity_top1 == 100.0
    assert labels.absolute_r2 > 0.95 and labels.absolute_geodesic_deg < 10
    assert labels.relative_r2 > 0.85 and labels.relative_geodesic_deg < 20
    # additive in (x_i, x_j): cannot express R_j R_i^T even from the exact rotations
    assert abs(labels.relative_linear_r2) < 0.1 and labels.relative_linear_geodesic_deg > 100
    assert noise.identity_top1 < 40
    assert noise.absolute_r2 < 0.1 and noise.relative_r2 < 0.1
    assert noise.relative_geodesic_deg == pytest.approx(RANDOM_GUESS_DEG, abs=12)
    assert result.num_test_pairs == OBJECTS * TEST_VIEWS * (TEST_VIEWS - 1)


def test_probes_are_deterministic_given_the_seed(toy_set: dict[str, np.ndarray]) -> None:
    features = {"f": torch.from_numpy(toy_set["rotation"]).float().reshape(-1, 9)}
    settings = ProbeSettings(max_epochs=3, weight_decays=(1e-4,))
    args = (features, toy_set["rotation"], toy_set["object"], toy_set["split"])
    first = rotation_probes(*args, seed=5, settings=settings).to_dict()
    assert rotation_probes(*args, seed=5, settings=settings).to_dict() == first
    assert rotation_probes(*args, seed=6, settings=settings).to_dict() != first


def test_wide_features_are_reduced_to_the_probe_size(toy_set: dict[str, np.ndarray]) -> None:
    wide = torch.randn(len(toy_set["object"]), 300, generator=torch.Generator().manual_seed(1))
    result = rotation_probes({"wide": wide}, toy_set["rotation"], toy_set["object"], toy_set["split"],
                             settings=ProbeSettings(max_dim=16, max_epochs=2, weight_decays=(1e-4,)))
    assert result.scores["wide"].dim == 300 and result.scores["wide"].probe_dim == 16
