"""Rotation and identity probes on a rot3d set: how much 3D pose and object identity frozen features hold.

Three probes per feature set, all fitted on cached features:

* **identity**: logistic regression (the linear probe) on one image's features -> object, top-1 %;
* **absolute rotation**: an MLP with one hidden layer, one image's features -> the 9 entries of its R;
* **relative rotation**: the same MLP on the concatenated features of two views of one object -> the 9
  entries of ``R_j R_i^T`` (the turn taking view i to view j).

A *linear* probe on concatenated features cannot express the relative rotation: it predicts
``g(x_i) + h(x_j)``, and with independent uniform rotations ``E[R_j R_i^T | x_i] = E[R_j] R_i^T = 0`` (and
likewise given ``x_j``), so the best additive predictor is about 0 whatever the features are. Its R² is
reported as a sanity check only (≈ 0); the MLP, which can form products, is the measurement.

Metrics: R² over the 9 entries (``1 - SSE / SST``, pooled over entries, SST about the test mean) and the mean
geodesic error in degrees of the prediction projected onto SO(3) (nearest rotation by SVD). A random guess
(independent uniform rotations) is off by ``90° + 2/π rad ≈ 126.5°`` on average.

Protocol: each object's train views are split into probe-train and validation views (``val_fraction``); the
validation views choose the regularisation (weight decay from ``weight_decays``) and the epoch (early
stopping); the test split (the same objects at unseen rotations) gives the reported numbers. Features wider
than ``max_dim`` are reduced by PCA fitted on the probe-train views, so every representation gets a probe of
the same size (raw 64 px pixels are 12,288-d). Everything is seeded and runs on the CPU in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from equireg.evaluation._common import JsonResult
from equireg.evaluation.linear_probe import linear_probe, standardisation_stats

RANDOM_GUESS_DEG = 90.0 + math.degrees(2.0 / math.pi)  # mean angle of a uniform random rotation


# ---- metrics on SO(3) --------------------------------------------------------------------------------------------


def project_to_rotation(matrices: Tensor) -> Tensor:
    """Nearest rotation (Frobenius norm) to each (..., 3, 3) matrix: ``U diag(1, 1, det(U V^T)) V^T``."""
    u, _, vh = torch.linalg.svd(matrices.double())
    sign = torch.det(u @ vh)
    fix = torch.ones(*matrices.shape[:-2], 3, dtype=u.dtype, device=u.device)
    fix[..., 2] = sign
    return (u * fix.unsqueeze(-2)) @ vh


def geodesic_degrees(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees of the rotation ``a^T b`` for each pair of (..., 3, 3) rotations."""
    trace = (a.double().transpose(-1, -2) @ b.double()).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.arccos(((trace - 1) / 2).clamp(-1.0, 1.0)))


def r2_score(pred: Tensor, target: Tensor) -> float:
    """``1 - SSE / SST`` pooled over all columns; SST about each column's mean in ``target``."""
    pred, target = pred.double(), target.double()
    sst = (target - target.mean(dim=0)).pow(2).sum()
    return float(1.0 - (pred - target).pow(2).sum() / sst.clamp_min(1e-12))


def rotation_scores(pred: Tensor, target: Tensor) -> tuple[float, float]:
    """(R² over the 9 entries, mean geodesic error in degrees after projecting ``pred`` onto SO(3))."""
    pred, target = pred.reshape(-1, 9), target.reshape(-1, 9)
    angles = geodesic_degrees(project_to_rotation(pred.reshape(-1, 3, 3)), target.reshape(-1, 3, 3))
    return r2_score(pred, target), float(angles.mean())


# ---- probe settings and results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes and search space of the probes (see the module docstring)."""

    val_fraction: float = 0.2
    max_dim: int = 256
    hidden: int = 256
    pairs_per_image: int = 8
    max_epochs: int = 40
    patience: int = 6
    lr: float = 1e-3
    batch_size: int = 256
    weight_decays: tuple[float, ...] = (1e-4, 1e-1)
    ridge_lambdas: tuple[float, ...] = (1e-2, 1.0, 100.0)
    identity_weight_decays: tuple[float, ...] = (1e-4, 1e-2)


@dataclass
class FeatureScores(JsonResult):
    """Test scores of one feature set; ``chosen`` holds the validation-selected settings."""

    dim: int
    probe_dim: int
    identity_top1: float
    absolute_r2: float
    absolute_geodesic_deg: float
    relative_r2: float
    relative_geodesic_deg: float
    relative_linear_r2: float
    relative_linear_geodesic_deg: float
    chosen: dict[str, Any] = field(default_factory=dict)


@dataclass
class RotationProbeResult(JsonResult):
    """Scores per feature set (e.g. ``embedding``, ``layer-3 map``) plus the protocol's sizes."""

    scores: dict[str, FeatureScores]
    num_objects: int
    num_train: int
    num_val: int
    num_test: int
    num_train_pairs: int
    num_test_pairs: int
    seed: int
    settings: dict[str, Any]
    data_root: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["scores"] = {name: s.to_dict() for name, s in self.scores.items()}
        out["random_guess_geodesic_deg"] = RANDOM_GUESS_DEG
        return out


# ---- the probes ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRows:
    """Row indices (into the features / labels) of the probe-train, validation and test views."""

    train: Tensor
    val: Tensor
    test: Tensor


def split_rows(split: np.ndarray, objects: np.ndarray, val_fraction: float, seed: int) -> ProbeRows:
    """Per object, a seeded ``val_fraction`` of its train views (at least two, so validation has view pairs)
    goes to validation."""
    gen = torch.Generator().manual_seed(seed)
    train_rows, val_rows = [], []
    for obj in np.unique(objects):
        rows = torch.from_numpy(np.flatnonzero((split == "train") & (objects == obj)))
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_val = max(2, round(val_fraction * len(rows))) if len(rows) >= 4 else 0
        val_rows.append(rows[:n_val])
        train_rows.append(rows[n_val:])
    test = torch.from_numpy(np.flatnonzero(split == "test"))
    return ProbeRows(torch.cat(train_rows).sort().values, torch.cat(val_rows).sort().values, test)


def view_pairs(rows: Tensor, objects: Tensor, per_image: int | None, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Ordered pairs (i, j), i != j, of rows showing the same object: ``per_image`` partners per row drawn
    without replacement, or every pair when ``per_image`` is None."""
    firsts, seconds = [], []
    for obj in objects[rows].unique():
        group = rows[objects[rows] == obj]
        n = len(group)
        if n < 2:
            continue
        k = n - 1 if per_image is None else min(per_image, n - 1)
        # row r's partners: the other n - 1 rows of its object, in a random order per row
        offsets = torch.argsort(torch.rand(n, n - 1, generator=gen), dim=1)[:, :k] + 1
        partner = (torch.arange(n).unsqueeze(1) + offsets) % n
        firsts.append(group.repeat_interleave(k))
        seconds.append(group[partner.reshape(-1)])
    if not firsts:
        raise ValueError("relative-rotation probe needs at least two views of some object")
    return torch.cat(firsts), torch.cat(seconds)


def probe_inputs(features: Tensor, train_rows: Tensor, max_dim: int) -> Tensor:
    """Standardise with probe-train statistics; PCA (fitted on probe-train rows) to ``max_dim`` when wider."""
    x = features.float()
    mean, std = standardisation_stats(x[train_rows])
    z = (x - mean) / std
    if z.shape[1] <= max_dim:
        return z
    _, _, vh = torch.linalg.svd(z[train_rows] - z[train_rows].mean(0), full_matrices=False)
    reduced = z @ vh[:max_dim].T
    mean, std = standardisation_stats(reduced[train_rows])
    return (reduced - mean) / std


def fit_mlp(
    x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor, settings: ProbeSettings, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """One-hidden-layer MLP regressor (MSE), weight decay and epoch chosen by validation MSE."""
    best: tuple[float, nn.Module, dict[str, Any]] | None = None
    for wd in settings.weight_decays:
        model, val_mse, epoch = _train_mlp(x, y, x_val, y_val, settings, wd, seed)
        if best is None or val_mse < best[0]:
            best = (val_mse, model, {"weight_decay": wd, "epochs": epoch, "val_mse": val_mse})
    assert best is not None
    return best[1], best[2]


def _train_mlp(
    x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor, settings: ProbeSettings, wd: float, seed: int
) -> tuple[nn.Module, float, int]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(x.shape[1], settings.hidden), nn.ReLU(), nn.Linear(settings.hidden, y.shape[1]))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=wd)
    best_mse, best_epoch, best_state, stale = math.inf, 0, None, 0
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(settings.batch_size):
            loss = F.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_mse = float(F.mse_loss(model(x_val), y_val))
        if val_mse < best_mse:
            best_mse, best_epoch, stale = val_mse, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    return model, best_mse, best_epoch


def fit_ridge(x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor, lambdas: tuple[float, ...]) -> tuple[Tensor, float]:
    """Closed-form ridge regression with a bias column; ``lambda`` chosen by validation MSE. Returns (W, lambda)."""
    xb, xvb = _with_bias(x.double()), _with_bias(x_val.double())
    gram, rhs = xb.T @ xb, xb.T @ y.double()
    best: tuple[float, Tensor, float] | None = None
    for lam in lambdas:
        reg = lam * torch.eye(gram.shape[0], dtype=gram.dtype)
        reg[-1, -1] = 0.0  # the bias is not penalised
        w = torch.linalg.solve(gram + reg, rhs)
        mse = float((xvb @ w - y_val.double()).pow(2).mean())
        if best is None or mse < best[0]:
            best = (mse, w, lam)
    assert best is not None
    return best[1], best[2]


def _with_bias(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


@dataclass(frozen=True)
class _Task:
    """Everything the probes need besides the features: rows, pairs and targets (shared by feature sets)."""

    rows: ProbeRows
    objects: Tensor
    rotations: Tensor  # (N, 3, 3) float32
    train_pairs: tuple[Tensor, Tensor]
    val_pairs: tuple[Tensor, Tensor]
    test_pairs: tuple[Tensor, Tensor]

    def relative(self, pairs: tuple[Tensor, Tensor]) -> Tensor:
        i, j = pairs
        return (self.rotations[j] @ self.rotations[i].transpose(1, 2)).reshape(-1, 9)


def rotation_probes(
    features: Mapping[str, Tensor],
    rotations: Tensor | np.ndarray,
    objects: Tensor | np.ndarray,
    split: np.ndarray,
    seed: int = 0,
    settings: ProbeSettings = ProbeSettings(),
) -> RotationProbeResult:
    """Fit and score the identity, absolute- and relative-rotation probes on each feature set.

    Args:
        features: name -> (N, D) features, one row per image (all splits).
        rotations: (N, 3, 3) label of each image; objects: (N,) object index; split: (N,) 'train' / 'test'.
        seed: seeds the validation split, the pairs and the probes' initialisation and batches.
    """
    split = np.asarray(split)
    objects_t = torch.as_tensor(np.asarray(objects), dtype=torch.long)
    rows = split_rows(split, objects_t.numpy(), settings.val_fraction, seed)
    if len(rows.val) == 0 or len(rows.test) == 0:
        raise ValueError("the rotation probes need at least 4 train views (2 go to validation) and 2 test views "
                         "of an object")
    gen = torch.Generator().manual_seed(seed + 1)
    task = _Task(
        rows, objects_t, torch.as_tensor(np.asarray(rotations), dtype=torch.float32).reshape(-1, 3, 3),
        view_pairs(rows.train, objects_t, settings.pairs_per_image, gen),
        view_pairs(rows.val, objects_t, None, gen), view_pairs(rows.test, objects_t, None, gen),
    )  # fmt: skip
    scores = {}
    for name, feats in features.items():
        if feats.shape[0] != len(split):
            raise ValueError(f"features {name!r} have {feats.shape[0]} rows for {len(split)} images")
        scores[name] = _score_feature_set(feats, task, settings, seed)
    return RotationProbeResult(
        scores=scores, num_objects=int(objects_t.unique().numel()), num_train=len(rows.train),
        num_val=len(rows.val), num_test=len(rows.test), num_train_pairs=len(task.train_pairs[0]),
        num_test_pairs=len(task.test_pairs[0]), seed=seed, settings=dict(vars(settings)),
    )  # fmt: skip


def _score_feature_set(features: Tensor, task: _Task, settings: ProbeSettings, seed: int) -> FeatureScores:
    rows = task.rows
    x = probe_inputs(features, rows.train, settings.max_dim)
    absolute = task.rotations.reshape(-1, 9)
    model, abs_chosen = fit_mlp(x[rows.train], absolute[rows.train], x[rows.val], absolute[rows.val], settings, seed)
    with torch.no_grad():
        abs_r2, abs_geo = rotation_scores(model(x[rows.test]), absolute[rows.test])

    def pair_inputs(pairs: tuple[Tensor, Tensor]) -> Tensor:
        return torch.cat([x[pairs[0]], x[pairs[1]]], dim=1)

    tr_x, va_x, te_x = (pair_inputs(p) for p in (task.train_pairs, task.val_pairs, task.test_pairs))
    tr_y, va_y, te_y = (task.relative(p) for p in (task.train_pairs, task.val_pairs, task.test_pairs))
    model, rel_chosen = fit_mlp(tr_x, tr_y, va_x, va_y, settings, seed)
    with torch.no_grad():
        rel_r2, rel_geo = rotation_scores(model(te_x), te_y)
    w, lam = fit_ridge(tr_x, tr_y, va_x, va_y, settings.ridge_lambdas)
    lin_r2, lin_geo = rotation_scores((_with_bias(te_x.double()) @ w).float(), te_y)
    top1, id_wd = _identity(x, task, settings, seed)
    return FeatureScores(
        dim=int(features.shape[1]), probe_dim=int(x.shape[1]), identity_top1=top1,
        absolute_r2=abs_r2, absolute_geodesic_deg=abs_geo, relative_r2=rel_r2, relative_geodesic_deg=rel_geo,
        relative_linear_r2=lin_r2, relative_linear_geodesic_deg=lin_geo,
        chosen={"absolute": abs_chosen, "relative": rel_chosen, "relative_linear_lambda": lam,
                "identity_weight_decay": id_wd},
    )  # fmt: skip


def _identity(x: Tensor, task: _Task, settings: ProbeSettings, seed: int) -> tuple[float, float]:
    """Logistic-regression top-1 % on the test views, weight decay chosen on the validation views."""
    rows, y = task.rows, task.objects
    n_cls = int(y.max()) + 1
    best_wd = max(
        settings.identity_weight_decays,
        key=lambda wd: linear_probe(x[rows.train], y[rows.train], x[rows.val], y[rows.val], weight_decay=wd,
                                    num_classes=n_cls, seed=seed).top1,
    )  # fmt: skip
    test = linear_probe(x[rows.train], y[rows.train], x[rows.test], y[rows.test], weight_decay=best_wd,
                        num_classes=n_cls, seed=seed)
    return test.top1, best_wd


# ---- a trained run on a rot3d folder ------------------------------------------------------------------------------


def rotation_data_root(
    data_name: str, data_root: str | None, explicit: str | None, hint: str = "pass --data-root DIR"
) -> str:
    """The rot3d folder to probe on: ``explicit`` if given, else the run's own data when it trained on rot3d.

    Raises:
        FileNotFoundError: neither is a rot3d folder; the message says how to make one.
    """
    from equireg.data.rot3d import rot3d_root

    if explicit is not None:
        return str(rot3d_root(explicit))
    if data_name == "rot3d" and data_root is not None:
        return str(rot3d_root(data_root))
    raise FileNotFoundError(f"the rotation probes need a rot3d folder (this run trained on {data_name!r}): {hint}; "
                            "make one with `equireg data make rot3d --out DIR`")


def load_images(paths: list[Any], image_size: int) -> Tensor:
    """uint8 (N, 3, S, S) images, decoded and resized as the ``rot3d`` dataset's evaluation batches are (the
    whole frame, no centre crop)."""
    from equireg.data.folder import load_image

    return torch.stack([load_image(p, image_size, crop_ratio=1.0) for p in paths])


@torch.no_grad()
def split_features(
    backbone: nn.Module, images: Tensor, layer: int | None = None, batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """``embedding`` and the split layer's map mean-pooled over space (``layer-k map``), float32 on the CPU."""
    from equireg.data.base import to_float_images
    from equireg.evaluation._common import autocast, eval_mode, module_device

    device = module_device(backbone)
    layer = layer or backbone.split_layer  # type: ignore[union-attr]
    embeddings, maps = [], []
    with eval_mode(backbone):
        for start in range(0, len(images), batch_size):
            x = to_float_images(images[start : start + batch_size], device)
            with autocast(device, amp_dtype):
                out = backbone.forward_split(x, layer, with_map=True, with_pooled=False)  # type: ignore[operator]
            embeddings.append(out.embedding.float().cpu())
            maps.append(out.feature_map.float().mean(dim=(2, 3)).cpu())
    return {"embedding": torch.cat(embeddings), f"layer-{layer} map": torch.cat(maps)}
