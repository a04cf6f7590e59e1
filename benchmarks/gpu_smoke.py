"""GPU smoke benchmark: the paper's setting (ViT-S/16, 224 px, MoCo-v3 + SER, bf16) on one GPU in a few minutes.

Measures, on synthetic images and through the library's own training step (``Trainer.train_step``, built by
``benchmarks/speed.py::make_trainer`` from ``resolve_config``):

1. the largest batch that fits (doubling, then bisection; out-of-memory errors are caught; bounded in time),
2. steady images/s and ms/step at that batch (median over steps after a warm-up),
3. peak memory (``torch.cuda.max_memory_allocated``; on CPU the process's max RSS),
4. the loss over those steps (mean of the first and last few: does it decrease?),
5. SER's wall-time overhead against the same recipe without SER (``equiv.loss=none``), steps interleaved,
   ratio of medians and median of per-round ratios,
6. the folder loader's images/s (``create_dataset("imagefolder")`` on a generated folder of JPEGs).

It prints one markdown table and writes every number to ``--out`` (JSON). No network access is needed.

    python benchmarks/gpu_smoke.py --out gpu_smoke.json                      # on the GPU machine
    python benchmarks/gpu_smoke.py --dry-run --out /tmp/smoke.json           # CPU, tiny model, ~1 minute

See docs/performance.md ("GPU smoke benchmark") for the wheels to carry to an offline machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import interleaved, make_trainer, median, step_fn, synchronize  # noqa: E402

import equireg  # noqa: E402
from equireg.engine.trainer import TrainingDiverged  # noqa: E402

DRY_RUN = {"device": "cpu", "model": "vit_test", "image_size": 16, "start_batch": 4, "max_batch": 16, "multiple": 4,
           "steps": 8, "warmup": 2, "overhead_rounds": 3, "loader_images": 32, "loader_batch": 16, "pool": 8,
           "max_seconds": 90, "precision": "fp32"}


class Clock:
    """The run's time budget: each phase gets a deadline and stops starting work after it."""

    def __init__(self, max_seconds: float) -> None:
        self.start = time.perf_counter()
        self.end = self.start + max_seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def deadline(self, share: float) -> float:
        """A deadline ``share`` of the remaining time from now."""
        now = time.perf_counter()
        return now + share * max(0.0, self.end - now)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def search_largest(fits: Callable[[int], bool], start: int, cap: int, multiple: int,
                   deadline: float) -> dict[str, Any]:
    """Largest batch ``b <= cap`` with ``fits(b)``: double from ``start`` until a failure, then bisect to within
    ``multiple``. Probing stops at ``deadline``; without an observed failure the answer is a lower bound."""
    probes: list[dict[str, Any]] = []

    def probe(batch: int) -> bool:
        t0 = time.perf_counter()
        ok = fits(batch)
        probes.append({"batch": batch, "fits": ok, "seconds": round(time.perf_counter() - t0, 2)})
        return ok

    low, failure, batch = 0, None, start
    while batch <= cap and time.perf_counter() < deadline:
        if not probe(batch):
            failure = batch
            break
        low, batch = batch, batch * 2
    high = failure if failure is not None else cap + 1
    while high - low > multiple and time.perf_counter() < deadline:
        mid = (low + high) // 2 // multiple * multiple
        if mid <= low:
            break
        if probe(mid):
            low = mid
        else:
            high = failure = mid
    return {"batch": low, "first_failure": failure, "lower_bound": failure is None,
            "timed_out": time.perf_counter() >= deadline, "probes": probes}


def image_pool(trainer: Any, size: int) -> torch.Tensor:
    """``size`` distinct synthetic images on the trainer's device (batches repeat them as needed)."""
    images, _ = next(iter(trainer.dataset.batches(size, shuffle=False, drop_last=False)))
    return images.to(trainer.device)


def take(pool: torch.Tensor, batch: int, offset: int = 0) -> torch.Tensor:
    return pool[(torch.arange(batch, device=pool.device) + offset) % pool.shape[0]]


def trainer_for(args: argparse.Namespace, equiv: str, steps: int = 1000) -> tuple[Any, torch.Tensor]:
    """A trainer of the smoke's recipe and its pool of ``args.pool`` synthetic images on the device.

    ``train_step`` takes a batch of any size (the b1/b2 split follows the batch it gets), so the config's batch
    only sizes the synthetic dataset; each phase feeds the batch it measures, repeating pool images."""
    trainer, _ = make_trainer(args.model, batch=min(args.pool, args.start_batch), equiv=equiv, b2=args.b2,
                              objective=args.objective, precision=args.precision, image_size=args.image_size,
                              device=args.device, steps=steps, num_samples=args.pool, sets=args.set)
    return trainer, image_pool(trainer, args.pool)


def largest_batch(args: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """Phase 1: one trainer; each probe runs two steps at that batch and reports whether memory sufficed."""
    trainer, pool = trainer_for(args, args.equiv)

    def fits(batch: int) -> bool:
        images, oom = take(pool, batch), False
        try:
            for step in range(2):
                trainer.train_step(images, step)
            synchronize(trainer.device)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            oom = True
        del images
        trainer.optimizer.zero_grad(set_to_none=True)
        free_memory(trainer.device)
        return not oom

    result = search_largest(fits, args.start_batch, args.max_batch, args.multiple, clock.deadline(0.35))
    del trainer, pool
    free_memory(torch.device(args.device))
    if result["batch"] < 2:
        raise SystemExit(f"not even batch {args.start_batch} fits on {args.device}; see the probes: {result}")
    return result


def peak_memory_gib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "ru_maxrss of the process (CPU)"


def steady_run(args: argparse.Namespace, batch: int, clock: Clock) -> dict[str, Any]:
    """Phases 2-4: a fresh trainer whose schedule spans ``args.steps`` steps; time each step, record the loss."""
    trainer, pool = trainer_for(args, args.equiv, steps=args.steps)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    deadline, times, losses, diverged = clock.deadline(0.5), [], [], None
    for step in range(args.steps):
        images = take(pool, batch, offset=step * batch)
        t0 = time.perf_counter()
        try:
            _, _, parts = trainer.train_step(images, step)
        except TrainingDiverged as exc:  # a finding to report, not a reason to lose the other measurements
            diverged = str(exc)
            break
        synchronize(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(parts["loss"]))
        if time.perf_counter() > deadline and step >= 4:
            break
    if len(times) < 2:
        raise SystemExit(f"the steady run stopped after {len(times)} steps: {diverged or 'out of time'}")
    peak, source = peak_memory_gib(device)
    warm = min(args.warmup, len(times) - 1)
    step_s = median(times[warm:])
    k = max(1, len(losses) // 4)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    del trainer, pool
    free_memory(device)
    return {"batch": batch, "steps": len(times), "warmup_steps": warm, "ms_per_step": step_s * 1e3,
            "images_per_s": batch / step_s, "peak_memory_gib": peak, "peak_memory_source": source,
            "loss_first_mean": first, "loss_last_mean": last, "loss_window": k, "loss_decreasing": last < first,
            "diverged": diverged, "losses": losses, "step_ms": [t * 1e3 for t in times]}


def steady_with_backoff(args: argparse.Namespace, batch: int, clock: Clock,
                        log: Callable[[str], None]) -> dict[str, Any]:
    """The steady run at the largest batch; if a fresh trainer no longer fits there (allocator fragmentation),
    10% smaller, at most three times."""
    for _ in range(3):
        log(f"steady run at batch {batch}")
        try:
            return steady_run(args, batch, clock)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
        free_memory(torch.device(args.device))
        batch = max(2, batch * 9 // 10 // args.multiple * args.multiple)
    raise SystemExit(f"the steady run ran out of memory three times (last batch {batch})")


def ser_overhead(args: argparse.Namespace, batch: int, clock: Clock) -> dict[str, Any]:
    """Phase 5: SER against the same recipe without it, steps interleaved (A, B, A, B, ...)."""
    runs = {"baseline": trainer_for(args, "none"), "ser": trainer_for(args, args.equiv)}
    fns = {name: step_fn(trainer, take(pool, batch)) for name, (trainer, pool) in runs.items()}
    deadline = clock.deadline(0.6)
    times = interleaved(fns, repeats=1, warmup=2)
    while len(times["ser"]) < args.overhead_rounds and time.perf_counter() < deadline:
        for name, seconds in interleaved(fns, repeats=1, warmup=0).items():
            times[name] += seconds
    rounds = len(times["ser"])
    base, ser = median(times["baseline"]), median(times["ser"])
    per_round = median([s / b for s, b in zip(times["ser"], times["baseline"])])
    del runs, fns
    free_memory(torch.device(args.device))
    return {"batch": batch, "rounds": rounds, "baseline_ms": base * 1e3, "ser_ms": ser * 1e3,
            "ratio_of_medians": ser / base, "median_of_round_ratios": per_round,
            "baseline_ms_all": [t * 1e3 for t in times["baseline"]], "ser_ms_all": [t * 1e3 for t in times["ser"]]}


def write_jpeg_folder(folder: Path, count: int, size: int) -> None:
    """``count`` synthetic JPEGs of ``size`` px in two class folders (what an ImageNet-style folder looks like)."""
    from PIL import Image

    from equireg.data import create_dataset

    images, labels = next(iter(create_dataset("synthetic", image_size=size, num_samples=count).batches(
        count, shuffle=False, drop_last=False)))
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, (array, label) in enumerate(zip(pixels, labels.tolist())):
        (folder / f"class{label % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(folder / f"class{label % 2}" / f"{i:05d}.jpg", quality=90)


def loader_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 6: the folder loader (decode, resize, centre crop, to the device) over one epoch of a JPEG folder;
    the first batch (worker start-up) is timed apart."""
    from equireg.data import create_dataset

    device = torch.device(args.device)
    source_size = round(args.image_size * 256 / 224)  # resized down to image_size, as for ImageNet
    with tempfile.TemporaryDirectory(prefix="equireg-smoke-jpegs-") as tmp:
        write_jpeg_folder(Path(tmp), args.loader_images, source_size)
        dataset = create_dataset("imagefolder", split="train", root=tmp, image_size=args.image_size)
        t0 = time.perf_counter()
        batches = dataset.batches(args.loader_batch, shuffle=True, drop_last=False, device=device)
        first = next(batches)[0].shape[0]
        synchronize(device)
        t1 = time.perf_counter()
        rest = sum(images.shape[0] for images, _ in batches)
        synchronize(device)
        t2 = time.perf_counter()
    return {"images": first + rest, "batch": args.loader_batch, "source_px": source_size,
            "image_size": args.image_size, "workers": getattr(dataset, "num_workers", "unknown"),
            "first_batch_s": t1 - t0, "images_per_s": rest / max(t2 - t1, 1e-9) if rest else first / (t1 - t0)}


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"equireg": equireg.__version__, "torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "device": str(device),
                            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
    else:
        info.update(name=platform.processor() or platform.machine(), memory_gib=None, capability=None)
    return info


def _fmt_batch(search: dict[str, Any]) -> str:
    batch = search["batch"]
    if search["lower_bound"]:
        return f"≥ {batch} (no failure up to the cap{' or the time limit' if search['timed_out'] else ''})"
    return f"{batch} ({search['first_failure']} does not fit{'; time limit hit' if search['timed_out'] else ''})"


def markdown(results: dict[str, Any]) -> str:
    """The one table the script prints."""
    env, cfg, search = results["environment"], results["config"], results["largest_batch"]
    steady, overhead, loader = results["steady"], results["ser_overhead"], results["loader"]
    memory = f", {env['memory_gib']:.0f} GiB" if env.get("memory_gib") else ""
    probes = ", ".join(f"{p['batch']}{'✓' if p['fits'] else '✗'}" for p in search["probes"])
    trend = "decreasing" if steady["loss_decreasing"] else "NOT decreasing"
    rows = [
        ("device", f"{env['name']} ({env['device']}{memory})", f"torch {env['torch']}, CUDA {env['cuda']}, "
         f"equireg {env['equireg']}"),
        ("recipe", f"{cfg['model']} {cfg['image_size']} px, {cfg['objective']} + {cfg['equiv']} "
         f"(b2 = {cfg['b2']:.0%}), {cfg['precision']}", "synthetic images; Trainer.train_step"),
        ("largest batch that fits", _fmt_batch(search), f"probes: {probes}"),
        ("steady images/s", f"{steady['images_per_s']:.1f}", f"batch {steady['batch']}, median of "
         f"{steady['steps'] - steady['warmup_steps']} steps after {steady['warmup_steps']} warm-up"),
        ("ms/step", f"{steady['ms_per_step']:.1f}", "views, forward, backward, AdamW, teacher EMA"
         + ("; GPU synchronised" if env["device"].startswith("cuda") else "")),
        ("peak memory", f"{steady['peak_memory_gib']:.2f} GiB", steady["peak_memory_source"]),
        ("loss", f"{steady['loss_first_mean']:.4f} → {steady['loss_last_mean']:.4f} ({trend})",
         f"mean of the first and last {steady['loss_window']} of {steady['steps']} steps"
         + (f"; diverged: {steady['diverged']}" if steady.get("diverged") else "")),
        ("SER wall vs baseline", f"{overhead['ratio_of_medians']:.3f}× (ratio of medians)",
         f"median of per-round ratios {overhead['median_of_round_ratios']:.3f}×; batch {overhead['batch']}, "
         f"{overhead['rounds']} interleaved rounds; baseline {overhead['baseline_ms']:.1f} ms, "
         f"SER {overhead['ser_ms']:.1f} ms"),
        ("loader images/s", f"{loader['images_per_s']:.1f}", f"imagefolder, {loader['images']} JPEGs of "
         f"{loader['source_px']} px → {loader['image_size']} px, batch {loader['batch']}, {loader['workers']} "
         f"workers; first batch {loader['first_batch_s']:.2f} s"),
        ("total time", f"{results['total_seconds']:.0f} s", f"limit {cfg['max_seconds']:.0f} s"),
    ]
    lines = ["| measure | value | details |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help=f"CPU, tiny model, small budget ({', '.join(f'{k}={v}' for k, v in DRY_RUN.items())}); "
                        "explicit flags still win")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="vit_small_patch16_224", help="equireg backbone name")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--objective", default="moco")
    parser.add_argument("--equiv", default="ser", help="the regulariser compared with equiv.loss=none")
    parser.add_argument("--b2", type=float, default=0.01, help="SER's batch share (the paper's 1%%)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--start-batch", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--multiple", type=int, default=16, help="batch search resolution")
    parser.add_argument("--steps", type=int, default=30, help="steps of the steady run (and its schedule)")
    parser.add_argument("--warmup", type=int, default=5, help="steady-run steps left out of the timing")
    parser.add_argument("--overhead-rounds", type=int, default=10)
    parser.add_argument("--pool", type=int, default=256, help="distinct synthetic images (batches repeat them)")
    parser.add_argument("--loader-images", type=int, default=512)
    parser.add_argument("--loader-batch", type=int, default=128)
    parser.add_argument("--max-seconds", type=float, default=420, help="time budget (the phases share it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                        help="extra config override, as `equireg train --set` (repeatable)")
    parser.add_argument("--out", default="gpu_smoke.json", help="JSON output path")
    args = parser.parse_args(argv)
    if args.dry_run:
        parser.set_defaults(**DRY_RUN, threads=1)
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available (torch {torch.__version__}, built for CUDA "
                         f"{torch.version.cuda}); try --dry-run on a CPU")
    clock = Clock(args.max_seconds)
    results: dict[str, Any] = {"environment": environment(device), "config": {
        k: getattr(args, k) for k in ("model", "image_size", "objective", "equiv", "b2", "precision", "steps",
                                      "max_batch", "max_seconds", "set")}}
    log = (lambda msg: print(f"[{clock.elapsed():5.0f} s] {msg}", file=sys.stderr, flush=True))
    log("searching the largest batch that fits")
    results["largest_batch"] = largest_batch(args, clock)
    batch = results["largest_batch"]["batch"]
    results["steady"] = steady_with_backoff(args, batch, clock, log)
    batch = results["steady"]["batch"]
    half = max(2, batch // 2 // args.multiple * args.multiple)  # two trainers share the memory
    log(f"SER vs baseline, interleaved, at batch {half}")
    results["ser_overhead"] = ser_overhead(args, half, clock)
    log("folder loader")
    results["loader"] = loader_throughput(args)
    results["total_seconds"] = clock.elapsed()
    results["table"] = markdown(results)
    print(results["table"])
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
