"""Speed of a training step: SER's overhead, the framework tax, the group action's share, images/s.

Every number comes from the trainer's own step (``Trainer.train_step``: views, online and teacher passes, losses,
backward, AdamW, teacher EMA) on a fixed batch of synthetic 32 px images, so it measures the code that trains.
Timings interleave the configurations being compared (A, B, C, A, B, C, ...) and report medians, because the
machine may be shared; FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention; elementwise ops are not counted) and do not depend on load.

    python benchmarks/speed.py overhead    # SER vs the same backbone's baseline (equiv.loss=none), b2 = 1%, 25%
    python benchmarks/speed.py tax         # full step vs the backbone's forward+backward on the same views
    python benchmarks/speed.py action      # time in the group action (forward+backward) as a share of a step
    python benchmarks/speed.py throughput  # images/s for resnet18, vit_tiny_p4_32, vit_small_p4_32, fp32/bf16
    python benchmarks/speed.py flops-model # SER's FLOPs at the paper's ViT-S/16, 224 px, B=256 (fitted exactly)
    python benchmarks/speed.py all

Common options: ``--threads`` (default 1), ``--repeats``, ``--batch``, ``--device`` (``cpu``, ``cuda``, ``cuda:1``;
default cpu), ``--json out.json``. On a GPU every timed call ends with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import equireg  # noqa: F401  (installs the torchvision shim timm needs)
from equireg.config import resolve_config
from equireg.engine import Trainer
from equireg.engine.trainer import step_generator

RESULTS: dict[str, Any] = {}


# --- building blocks ----------------------------------------------------------------------------------------------


def make_trainer(backbone: str, *, batch: int, equiv: str = "ser", b2: float = 0.25, objective: str = "moco",
                 precision: str = "fp32", group: str = "p4m", image_size: int = 32, device: str = "cpu",
                 steps: int = 1000, num_samples: int | None = None,
                 sets: list[str] | None = None) -> tuple[Trainer, torch.Tensor]:
    """A trainer for the default recipe with the given changes (``sets``: extra ``key=value`` overrides, as
    ``--set``), and one batch of its synthetic images on ``device``."""
    overrides: dict[str, Any] = {
        "data.name": "synthetic", "data.image_size": image_size,
        "data.kwargs": {"num_samples": num_samples or 2 * batch},
        "data.train_subset": None, "data.probe_train_size": 8, "data.test_size": 8,
        "backbone.name": backbone, "objective.name": objective, "equiv.loss": equiv, "equiv.group": group,
        "equiv.b2_ratio": b2, "optim.batch_size": batch, "optim.steps": steps, "train.precision": precision,
        "train.run_dir": tempfile.mkdtemp(prefix="equireg-speed-"), "train.device": device,
    }
    trainer = Trainer(resolve_config(overrides=overrides, sets=sets), progress=False)
    images, _ = next(iter(trainer.dataset.batches(batch, shuffle=True, seed=0)))
    trainer.recipe.train()
    return trainer, images


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved round-robin (after ``warmup`` rounds)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer around a call measures the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(trainer: Trainer, images: torch.Tensor) -> Callable[[], object]:
    counter = iter(range(10**9))

    def step() -> None:
        trainer.train_step(images, 10 + next(counter) % 100)
        synchronize(trainer.device)

    return step


def step_flops(trainer: Trainer, images: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(images, 10)
    return int(counter.get_total_flops())


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


# --- benchmarks ---------------------------------------------------------------------------------------------------


# aten ops that read a tensor's value on the host: on a GPU each one waits for the queued work (a sync point)
SYNC_OPS = frozenset({"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::equal",
                      "aten::is_nonzero", "aten::_unique2", "aten::unique_dim", "aten::unique_consecutive"})


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched (forward, backward and optimizer) and the host-sync ones among them."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self.syncs = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops += 1
        self.syncs += func._schema.name in SYNC_OPS
        return func(*args, **(kwargs or {}))


def step_counts(trainer: Trainer, images: torch.Tensor) -> tuple[int, int]:
    """(dispatched aten ops, host-sync ops) of one training step."""
    with OpCounter() as counter:
        trainer.train_step(images, 10)
    return counter.ops, counter.syncs


OVERHEAD_CONFIGS = {  # name -> (equiv loss, b2, extra --set values)
    "baseline": ("none", 0.25, []),
    "SER official views b2=1%": ("ser", 0.01, []),
    "SER grid-keeping p4m b2=1%": ("ser", 0.01, ["views.equivariant=uniform"]),
    "SER official views b2=25%": ("ser", 0.25, []),
}


def overhead(args: argparse.Namespace) -> None:
    """SER against the same backbone's invariant baseline, interleaved in one run: SER's official views (their own
    grids: their own backbone calls) and grid-keeping p4m views (fused into the b1 views' calls), with FLOPs and the
    dispatched ops and host syncs of one step."""
    rows = []
    for backbone in args.backbones:
        common = dict(batch=args.batch, precision=args.precision, device=args.device)
        runs = {name: make_trainer(backbone, equiv=equiv, b2=b2, sets=sets, **common)
                for name, (equiv, b2, sets) in OVERHEAD_CONFIGS.items()}
        flops = {name: step_flops(*run) for name, run in runs.items()}
        counts = {name: step_counts(*run) for name, run in runs.items()}
        times = interleaved({name: step_fn(*run) for name, run in runs.items()}, args.repeats)
        base_t, base_f = median(times["baseline"]), flops["baseline"]
        for name, run in runs.items():
            b2 = run[0].recipe.split_sizes(args.batch)[1]
            t = median(times[name])
            paired = median([x / y for x, y in zip(times[name], times["baseline"])])  # same round, same load
            rows.append([backbone, name, b2, f"{flops[name] / 1e9:.1f}", f"{flops[name] / base_f:.4f}x",
                         *counts[name], f"{t * 1e3:.0f}", f"{t / base_t:.3f}x", f"{paired:.3f}x"])
            RESULTS.setdefault("overhead", []).append(
                {"backbone": backbone, "config": name, "b2": b2, "gflops": flops[name] / 1e9,
                 "flops_ratio": flops[name] / base_f, "ops": counts[name][0], "syncs": counts[name][1],
                 "ms_median": t * 1e3, "wall_ratio_median": t / base_t, "wall_ratio_paired": paired,
                 "ms_all": [x * 1e3 for x in times[name]]})
    table(f"SER overhead per training step (MoCo-v3, batch {args.batch}, {args.precision}, median of "
          f"{args.repeats} interleaved steps)",
          ["backbone", "config", "b2 images", "GFLOPs/step", "FLOPs vs baseline", "aten ops/step", "host syncs/step",
           "ms/step (median)", "wall vs baseline (ratio of medians)", "wall vs baseline (median of per-round ratios)"],
          rows)


def _backbone_only(trainer: Trainer, images: torch.Tensor) -> tuple[Callable[[], object], Callable[[], object],
                                                                     Callable[[], object]]:
    """Three references on the step's own views: making the views, the online backbone's forward+backward on
    them, and the teacher's forward on them (zero for objectives without a teacher)."""
    recipe, cfg = trainer.recipe, trainer.cfg
    views = dict(recipe.context(images, step_generator(cfg.train.seed, 10)).views)
    autocast = torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16")
    params = [p for p in recipe.backbone.parameters() if p.requires_grad]

    def make_views() -> object:
        views = recipe.context(images, step_generator(cfg.train.seed, 10)).views
        synchronize(trainer.device)
        return views

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        with autocast:
            loss = sum(recipe.backbone(v).float().square().mean() for v in views.values())
        loss.backward()
        synchronize(trainer.device)

    def teacher() -> None:
        with autocast, torch.no_grad():
            for v in views.values():
                recipe.objective.teacher_backbone(v)
        synchronize(trainer.device)

    return make_views, forward_backward, teacher


def tax(args: argparse.Namespace) -> None:
    """Full training step against the backbone's forward+backward alone on the same views and precision."""
    rows = []
    for backbone in args.backbones:
        for objective in args.objectives:
            for b2 in args.b2s:
                equiv = "none" if b2 == 0 else "ser"
                trainer, images = make_trainer(backbone, batch=args.batch, objective=objective, equiv=equiv,
                                               b2=b2 or 0.25, precision=args.precision, device=args.device)
                make_views, fwd_bwd, teacher = _backbone_only(trainer, images)
                has_teacher = trainer.recipe.objective.teacher is not None
                fns = {"step": step_fn(trainer, images), "fwd_bwd": fwd_bwd, "views": make_views}
                if has_teacher:
                    fns["teacher"] = teacher
                times = {k: median(v) for k, v in interleaved(fns, args.repeats).items()}
                step, fb, teach = times["step"], times["fwd_bwd"], times.get("teacher", 0.0)
                rest = step - fb - teach - times["views"]
                config = "baseline" if b2 == 0 else f"SER b2={b2:.0%}"
                rows.append([backbone, objective, config, f"{step * 1e3:.0f}", f"{fb * 1e3:.0f}", f"{step / fb:.3f}x",
                             f"{teach * 1e3:.0f}" if has_teacher else "-", f"{step / (fb + teach):.3f}x",
                             f"{times['views'] * 1e3:.0f} ({times['views'] / step:.1%})",
                             f"{rest * 1e3:.0f} ({rest / step:.1%})"])
                RESULTS.setdefault("tax", []).append({"backbone": backbone, "objective": objective, "b2": b2, **{
                    f"{k}_ms": v * 1e3 for k, v in times.items()}, "tax": step / fb,
                    "tax_with_teacher": step / (fb + teach)})
    table(f"Framework tax (p4m, batch {args.batch}, {args.precision}, medians of {args.repeats} interleaved runs; "
          f"references on the step's own views)",
          ["backbone", "objective", "config", "step ms", "backbone fwd+bwd ms", "step / fwd+bwd", "teacher fwd ms",
           "step / (fwd+bwd + teacher fwd)", "views ms (share)", "rest: heads, losses, AdamW, EMA ms (share)"], rows)


def action(args: argparse.Namespace) -> None:
    """The group action's forward+backward time, replayed on the exact calls of one step, over the step time."""
    rows = []
    for backbone in args.backbones:
        for group in args.groups:
            for b2 in (0.01, 0.25):
                trainer, images = make_trainer(backbone, batch=args.batch, b2=b2, group=group,
                                               precision=args.precision, device=args.device)
                g_obj = trainer.recipe.pair_policy.group
                calls: list[tuple[torch.Tensor, Any, Any, bool]] = []
                real_act = g_obj.act

                def recording_act(x: torch.Tensor, g: Any, out_size: Any = None, _real: Any = real_act) -> Any:
                    calls.append((x.detach().clone(), g, out_size, x.requires_grad))
                    return _real(x, g, out_size=out_size)

                g_obj.act = recording_act  # type: ignore[method-assign]
                trainer.train_step(images, 10)
                g_obj.act = real_act  # type: ignore[method-assign]

                def replay() -> None:
                    for x, g, out_size, grad in calls:
                        x = x.requires_grad_(grad)
                        y = real_act(x, g, out_size=out_size)
                        if grad:
                            y.backward(torch.ones_like(y))
                            x.grad = None

                times = interleaved({"step": step_fn(trainer, images), "act": replay}, args.repeats)
                step, act = median(times["step"]), median(times["act"])
                shapes = ", ".join(f"{tuple(x.shape)}{'+grad' if grad else ''}" for x, _, _, grad in calls)
                rows.append([backbone, group, f"{b2:.0%}", len(calls), shapes, f"{act * 1e3:.2f}",
                             f"{step * 1e3:.0f}", f"{act / step:.3%}"])
                RESULTS.setdefault("action", []).append({"backbone": backbone, "group": group, "b2": b2,
                                                         "act_ms": act * 1e3, "step_ms": step * 1e3,
                                                         "share": act / step})
    table(f"Group action share of a step (MoCo-v3 + SER, batch {args.batch}, {args.precision}, medians of "
          f"{args.repeats})", ["backbone", "group", "b2", "act calls", "inputs", "act fwd+bwd ms", "step ms",
                               "share"], rows)


def throughput(args: argparse.Namespace) -> None:
    """Images/s of the default recipe (MoCo-v3 + SER on p4m, b2 = 25%) per backbone and precision."""
    rows = []
    for backbone in args.backbones:
        batch = args.batch if args.batch else (256 if backbone.startswith("resnet") else 64)
        runs = {p: make_trainer(backbone, batch=batch, precision=p, device=args.device) for p in ("fp32", "bf16")}
        fwd_bwd = {p: _backbone_only(*run)[1] for p, run in runs.items()}
        fns: dict[str, Callable[[], object]] = {}
        for p in runs:
            fns[f"step {p}"] = step_fn(*runs[p])
            fns[f"fb {p}"] = fwd_bwd[p]
        times = {k: median(v) for k, v in interleaved(fns, args.repeats).items()}
        views_per_step = sum(v.shape[0] for v in runs["fp32"][0].recipe.context(
            runs["fp32"][1], step_generator(0, 10)).views.values())
        for p in runs:
            step, fb = times[f"step {p}"], times[f"fb {p}"]
            rows.append([backbone, p, batch, f"{batch / step:.1f}", f"{step * 1e3:.0f}", f"{views_per_step / fb:.0f}"])
            RESULTS.setdefault("throughput", []).append({"backbone": backbone, "precision": p, "batch": batch,
                                                         "images_per_s": batch / step, "step_ms": step * 1e3,
                                                         "backbone_views_per_s": views_per_step / fb})
    where = "CPU" if args.device == "cpu" else args.device
    table(f"Training throughput on {where} ({torch.get_num_threads()} threads; MoCo-v3 + SER p4m b2=25%, 32 px; "
          f"medians of {args.repeats})", ["backbone", "precision", "batch", "images/s (full step)", "ms/step",
                                          "views/s (backbone fwd+bwd only)"], rows)


def flops_model(args: argparse.Namespace) -> None:
    """SER's FLOP overhead at a batch too large to run here (the paper's ViT-S/16, 224 px, 256 per device).

    A step's FLOPs are exactly ``a·B + c·b2 + d·b2²``: backbone, heads and teacher are per image (a), SER's token
    projector is per equivariant image (c), and its token InfoNCE compares all b2·T tokens with each other (d).
    The three coefficients come from exact counts of three small steps; a fourth step checks the model."""
    backbone = args.backbones[0]
    points = [(4, 0.0), (8, 0.25), (8, 0.5), (12, 0.25)]  # (batch, b2 ratio): b2 = 0, 2, 4, 3
    measured = []
    for batch, ratio in points:
        trainer, images = make_trainer(backbone, batch=batch, equiv="ser" if ratio else "none", b2=ratio or 0.25,
                                       image_size=args.image_size, device=args.device)
        b2 = trainer.recipe.split_sizes(batch)[1]
        measured.append((batch, b2, step_flops(trainer, images)))
    (b0, _, f0), (b1, s1, f1), (b2_, s2, f2), (b3, s3, f3) = measured
    a = f0 / b0
    # f = a·B + c·s + d·s² for the two SER points with the same B
    r1, r2 = f1 - a * b1, f2 - a * b2_
    d = (r2 / s2 - r1 / s1) / (s2 - s1)
    c = r1 / s1 - d * s1
    predict = a * b3 + c * s3 + d * s3 * s3
    rows = [[f"B={b} b2={s}", f"{f / 1e9:.1f}", ""] for b, s, f in measured]
    rows[-1][2] = f"model predicts {predict / 1e9:.1f} (error {abs(predict - f3) / f3:.1e})"
    for b2 in (round(0.01 * args.big_batch), round(0.25 * args.big_batch)):
        ser = a * args.big_batch + c * b2 + d * b2 * b2
        rows.append([f"B={args.big_batch} b2={b2} (model)", f"{ser / 1e9:.0f}",
                     f"{ser / (a * args.big_batch):.4f}x the baseline's {a * args.big_batch / 1e9:.0f} GFLOPs"])
    RESULTS["flops_model"] = {"backbone": backbone, "image_size": args.image_size, "per_image": a,
                              "per_b2_image": c, "per_b2_squared": d, "points": measured}
    table(f"FLOPs per training step, {backbone} at {args.image_size} px (MoCo-v3 + SER on p4m), exact counts and "
          f"the fitted model a·B + c·b2 + d·b2²", ["step", "GFLOPs", "note"], rows)


BENCHMARKS = {"overhead": overhead, "tax": tax, "action": action, "throughput": throughput, "flops-model": flops_model}
DEFAULT_BACKBONES = {"overhead": ["resnet18", "vit_mini_p4_32"], "tax": ["resnet18", "vit_mini_p4_32"],
                     "action": ["resnet18", "vit_mini_p4_32"],
                     "throughput": ["resnet18", "vit_tiny_p4_32", "vit_small_p4_32"],
                     "flops-model": ["vit_small_patch16_224"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--backbones", nargs="+", default=None)
    parser.add_argument("--objectives", nargs="+", default=["moco", "simclr"])
    parser.add_argument("--groups", nargs="+", default=["p4m", "p4m*scale"])
    parser.add_argument("--b2s", nargs="+", type=float, default=[0.0, 0.01],
                        help="tax: equivariant shares to measure (0 = the baseline without SER)")
    parser.add_argument("--batch", type=int, default=None, help="default 256 (throughput: 256 ResNet, 64 ViT)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--image-size", type=int, default=224, help="flops-model: image side")
    parser.add_argument("--big-batch", type=int, default=256, help="flops-model: per-device batch to predict")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: on a shared machine, 2+ threads stall at OpenMP barriers)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (timings synchronize the GPU)")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores, load average before: {load}, "
          f"CUDA: {torch.cuda.is_available()}")
    for name in [n for n in BENCHMARKS if n != "flops-model"] if args.which == "all" else [args.which]:
        sub = argparse.Namespace(**vars(args))
        sub.backbones = args.backbones or DEFAULT_BACKBONES[name]
        if sub.batch is None and name != "throughput":
            sub.batch = 256
        t0 = time.perf_counter()
        BENCHMARKS[name](sub)
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s; load average after: "
              f"{os.getloadavg() if hasattr(os, 'getloadavg') else None})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"load_average": load, "threads": args.threads, **RESULTS}, fh, indent=1)


if __name__ == "__main__":
    main()
