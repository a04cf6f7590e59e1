"""The training loop: AdamW with warm-up + cosine schedules, bf16 autocast, clipping, EMA teachers,
atomic checkpoints, CSV + TensorBoard logs, a rich progress bar and exact resume.

Randomness is keyed by step: the view generator of step t is seeded from (seed, t), so a resumed run draws
exactly the views the uninterrupted run would have drawn, and only the model/optimizer/RNG state has to be
restored.

Under torchrun the trainer joins the process group (gloo on CPU, NCCL on CUDA, see :mod:`equireg.engine.ddp`),
synchronises BatchNorm, wraps the recipe in DDP, reads its own shard of every epoch and renders its own rows of
views drawn for the global batch; rank 0 alone writes logs and checkpoints, and every rank waits at a barrier
after each checkpoint. The logged losses are means over ranks, i.e. the single-process loss of the global batch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pickle
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from equireg import distributed as dist
from equireg.config import Config, config_to_yaml
from equireg.engine import ddp
from equireg.engine.checkpoint import CheckpointManager
from equireg.engine.run_config import (
    CHANGES_FILE,
    CONFIG_FILE,
    RunDirError,
    SettingChange,
    flatten,
    record_changes,
    refusal_message,
    refused_changes,
    setting_changes,
    settings_in_force,
)
from equireg.engine.schedule import warmup_cosine
from equireg.groups import verify_group
from equireg.recipe import SSLRecipe, build_recipe
from equireg.registry import UnknownNameError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


_DIVERGED_ADVICE = ("Try a lower optim.lr, train.precision=fp32 or optim.clip_grad (when resuming, name the changed "
                    "key with --allow-change)")


class DataError(ValueError):
    """The data could not be read (missing, corrupt or unreadable files); bad input, not a bug."""


@dataclass
class TrainResult:
    run_dir: str
    steps: int
    final_loss: float
    images_per_second: float
    wall_seconds: float
    resumed_from: int
    world_size: int = 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"train.device={name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator for the random views of one step (resumable without saving generator state).

    The trainer uses ``rank=0`` on every rank: distributed runs draw the views of the whole global batch from
    it and keep their own rows (see :mod:`equireg.engine.ddp`); ``rank`` keys independent per-rank streams for
    code that wants them."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + rank)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_run_dir(run_dir: Path) -> None:
    """Refuse, before anything is built, a run directory that cannot hold a run: a file, a path under a file, or
    one whose nearest existing folder this process may not write in."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file; choose another --run-dir")
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"run directory {run_dir} lies under {existing}, which is a file; choose another --run-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write in {existing} (permission denied); choose another --run-dir")


def check_image_size(recipe: SSLRecipe, image_size: int) -> None:
    """A ViT needs whole patches: refuse another image size here, before any view is drawn, instead of at the first
    forward pass (equivariant views check their own map-cell grid when the recipe builds them)."""
    if recipe.backbone.family == "vit":
        recipe.backbone.check_image_size(image_size, 1)


def param_groups(params: list[nn.Parameter]) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation parameters (1-D tensors), as in MoCo-v3/DINO."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


@contextlib.contextmanager
def _options_error(what: str) -> Iterator[None]:
    """A factory called with keyword arguments it does not take raises TypeError; report it as bad input."""
    try:
        yield
    except TypeError as exc:
        raise ValueError(f"cannot build {what} from this configuration: {exc}") from None


@contextlib.contextmanager
def _data_errors(name: str, root: str | None) -> Iterator[None]:
    """Unreadable data (a corrupt archive, pickle or image; options the loader does not take) is bad input."""
    where = f" from {root}" if root else ""
    try:
        yield
    except (FileNotFoundError, UnknownNameError):
        raise
    except TypeError as exc:
        raise ValueError(f"cannot build dataset {name!r} from this configuration (data.kwargs): {exc}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"could not read dataset {name!r}{where}: {_last_line(exc)}") from None


def _last_line(exc: BaseException) -> str:
    """The message itself: errors re-raised from DataLoader workers carry the worker's traceback first."""
    text = str(exc).strip()
    return text.splitlines()[-1] if "Traceback" in text else text


def _read_batches(batches: Iterator[Any], name: str, note: Callable[[], str]) -> Iterator[Any]:
    """``batches`` with read errors (a corrupt file met mid-epoch) turned into :class:`DataError`."""
    it = iter(batches)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except (OSError, EOFError, ValueError) as exc:
            raise DataError(f"could not read dataset {name!r}: {_last_line(exc)}; {note()}") from None
        yield item


class Trainer:
    """Builds everything from a :class:`Config` before touching the disk, then trains ``optim.steps`` steps."""

    def __init__(self, cfg: Config, *, resume: bool = False, progress: bool = True, dataset: Any = None,
                 allow_changes: Iterable[str] = ()) -> None:
        """``allow_changes``: settings (dotted keys or sections) a resumed run may change beyond
        :data:`~equireg.engine.run_config.FREE_ON_RESUME`; each change is recorded in ``config_changes.jsonl``."""
        self.cfg = cfg
        self.run_dir = Path(cfg.train.run_dir)
        self.show_progress = progress
        self.allow_changes = tuple(allow_changes)
        self._resume_changes: list[SettingChange] | None = None  # None: a fresh run
        check_run_dir(self.run_dir)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.dist = ddp.setup_distributed(resolve_device(cfg.train.device))
        try:
            self._build(resume, dataset)
        except BaseException:
            self.dist.close()
            raise

    def _build(self, resume: bool, dataset: Any) -> None:
        cfg = self.cfg
        self.device = self.dist.device
        self.rank, self.world = self.dist.rank, self.dist.world_size
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints")
        if resume and self.checkpoints.latest() is None:
            raise RunDirError(f"--resume: no checkpoint in {self.run_dir}/checkpoints")
        if not resume and self.checkpoints.latest() is not None:
            raise RunDirError(f"run directory {self.run_dir} already holds a run; pass --resume or choose another --run-dir")
        saved = self._check_resume() if resume else None
        if dataset is None:
            from equireg.data import DATASETS

            DATASETS.get(cfg.data.name)  # an unknown dataset name is reported before anything is built
        seed_everything(cfg.train.seed)  # the same initial weights on every rank
        with _options_error("the recipe (backbone/objective/equiv kwargs)"):
            self.recipe: SSLRecipe = build_recipe(cfg).to(self.device)
        check_image_size(self.recipe, cfg.data.image_size)
        group = self.recipe.pair_policy.group if self.recipe.pair_policy is not None else None
        if group is not None:  # a plug-in group that breaks a law would train silently wrong; ~10-50 ms
            verify_group(group)
        if self.world > 1:
            ddp.convert_batchnorm(self.recipe, self.device)
            self.recipe.rank, self.recipe.world_size = self.rank, self.world  # views drawn for the global batch
        if cfg.train.channels_last and self.recipe.backbone.family == "cnn":
            self.recipe.to(memory_format=torch.channels_last)
        self.data_sizes: dict[str, int] = {}
        self.data_clamped: list[str] = []  # requested subset sizes the dataset could not give (the CLI prints them)
        if dataset is None:
            from equireg.data.splits import load_splits

            with _data_errors(cfg.data.name, cfg.data.root):
                splits = load_splits(cfg)
            dataset, self.data_sizes, self.data_clamped = splits.pretrain, splits.sizes(), splits.clamped
        self.dataset = dataset.to(self.device) if getattr(dataset, "in_memory", False) else dataset
        # an image folder's loader cuts T's crops from the original files (the view policies then add photometrics)
        self.crops = self.recipe.crop_spec(cfg.data.image_size) if self.dataset.cuts_crops else None
        self.batches_per_epoch = self.dataset.num_batches(cfg.optim.batch_size, drop_last=True, world_size=self.world)
        if self.batches_per_epoch < 1:
            per_rank = f" per rank ({self.world} ranks)" if self.world > 1 else ""
            raise ValueError(f"dataset of {len(self.dataset)} images is smaller than one batch of "
                             f"{cfg.optim.batch_size}{per_rank}")
        params = self.recipe.trainable_parameters()
        # not fused=True: torch 2.13's fused CPU AdamW misapplies updates when a parameter and its gradient have
        # different memory formats (channels_last weights, contiguous gradients), see docs/performance.md
        self.optimizer = torch.optim.AdamW(
            param_groups(params), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas
        )
        self.start_step = 0
        if saved is not None:
            self._restore(saved)
        # the module the step calls: DDP over the recipe when distributed (it broadcasts rank 0's state once)
        self.model: nn.Module = ddp.wrap_ddp(self.recipe, self.device) if self.world > 1 else self.recipe

    def close(self) -> None:
        """Leave the process group if this trainer created it (the CLI calls this when a run ends)."""
        self.dist.close()

    # --- state ---------------------------------------------------------------------------------------
    def state(self, step: int) -> dict[str, Any]:
        return {"recipe": self.recipe.state_dict(), "optimizer": self.optimizer.state_dict(), "step": step,
                "rng": rng_state(), "config": self.cfg.model_dump_json(), "world_size": self.world}

    def _check_resume(self) -> dict[str, Any]:
        """The latest checkpoint, after refusing settings that differ from the run's own in a way that changes what
        it trains (unless named in ``allow_changes``); the differences are kept to be recorded."""
        state = self.checkpoints.load_latest()
        assert state is not None
        self._settings_before, world_before = settings_in_force(self.run_dir, state)
        changes = setting_changes(self._settings_before, self.cfg, world_before, self.world)
        refused = refused_changes(changes, self.allow_changes)
        if refused:
            raise RunDirError(refusal_message(self.run_dir, refused))
        self._resume_changes = changes
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.recipe.load_state_dict(state["recipe"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # an allowed change the saved weights do not fit
            first = str(exc).strip().splitlines()[0]
            raise RunDirError(f"the checkpoint in {self.run_dir} does not fit the model these settings build "
                              f"({first}); start a new run instead") from None
        set_rng_state(state["rng"])
        self.start_step = int(state["step"])

    # --- schedules -------------------------------------------------------------------------------------
    def schedules(self, step: int) -> tuple[float, float]:
        o = self.cfg.optim
        warm = int(o.warmup_frac * o.steps)
        lr = warmup_cosine(step, o.steps, o.lr, o.lr * o.min_lr_ratio, warm)
        wd_end = o.weight_decay if o.weight_decay_end is None else o.weight_decay_end
        wd = warmup_cosine(step, o.steps, o.weight_decay, wd_end, 0)
        return lr, wd

    def _prepare_dir(self) -> None:
        """Write ``config.yaml`` for a new run; a resumed run keeps it and appends its changes, if any."""
        if self.rank != 0:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config_file = self.run_dir / CONFIG_FILE
            if self._resume_changes is None:
                config_file.write_text(config_to_yaml(self.cfg))
                (self.run_dir / CHANGES_FILE).unlink(missing_ok=True)  # left by a run whose checkpoints were deleted
                return
            if not config_file.exists():
                config_file.write_text(config_to_yaml(self._settings_before))
            if self._resume_changes:
                record_changes(self.run_dir, self._resume_changes, self.allow_changes, step=self.start_step,
                               world_size=self.world, config=self.cfg)
                self._resume_changes = []
        except OSError as exc:
            raise RunDirError(f"cannot write the run directory {self.run_dir}: {exc.strerror or exc}") from None

    # --- loop ----------------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train until ``optim.steps`` (or, for tests and budgets, until step ``stop_after``, checkpointing there)."""
        cfg = self.cfg
        self._prepare_dir()
        logger = _RunLogger(self.run_dir, enabled=self.rank == 0, resume_step=self.start_step,
                            settings=config_to_yaml(cfg))
        total, step = cfg.optim.steps, self.start_step
        stop = total if stop_after is None else min(total, stop_after)
        t_start, images_seen, last_loss = time.perf_counter(), 0, float("nan")
        window_t, window_imgs = time.perf_counter(), 0
        bar = _Progress(total, self.start_step, enabled=self.show_progress and self.rank == 0)
        self.recipe.train()
        try:
            while step < stop:
                epoch, skip = divmod(step, self.batches_per_epoch)
                batches = self.dataset.batches(
                    cfg.optim.batch_size, shuffle=True, drop_last=True, seed=cfg.train.seed, epoch=epoch,
                    rank=self.rank, world_size=self.world, device=self.device, start_batch=skip, crops=self.crops,
                )
                for images, _ in _read_batches(batches, cfg.data.name, self._checkpoint_note):
                    if step >= stop:
                        break
                    lr, wd, parts = self.train_step(images, step)
                    step += 1
                    images_seen += images.shape[0]
                    window_imgs += images.shape[0]
                    if step % cfg.train.log_every == 0 or step == total:
                        now = time.perf_counter()
                        ips = window_imgs * self.world / max(now - window_t, 1e-9)
                        window_t, window_imgs = now, 0
                        row = {"step": step, "lr": lr, "weight_decay": wd, "images_per_s": ips, **parts}
                        last_loss = row["loss"]
                        logger.log(row)
                        bar.update(step, row)
                    if step % cfg.train.checkpoint_every == 0 or step == stop:
                        self._checkpoint(step)
        finally:
            bar.close()
            logger.close()
        wall = time.perf_counter() - t_start
        result = TrainResult(str(self.run_dir), step, last_loss, images_seen * self.world / max(wall, 1e-9), wall,
                             self.start_step, self.world)
        if self.rank == 0:
            summary = {**asdict(result), **self.recipe.describe(),
                       "data_sizes": self.data_sizes or {"pretrain": len(self.dataset)},
                       "data_clamped": self.data_clamped, "environment": run_environment(self.device)}
            (self.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return result

    def train_step(self, images: torch.Tensor, step: int) -> tuple[float, float, dict[str, float]]:
        """One optimizer step on this rank's ``images`` as step ``step`` (0-based) of the schedule: views,
        forward, backward, clipping, AdamW, teacher EMA. Returns (lr, weight decay, loss parts averaged over
        ranks); raises :class:`TrainingDiverged` before touching the weights when the loss is not finite."""
        cfg, total = self.cfg, self.cfg.optim.steps
        lr, wd = self.schedules(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if group.get("apply_wd"):
                group["weight_decay"] = wd
        progress = step / total
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.train.precision == "bf16"):
            out = self.model(images, progress, step_generator(cfg.train.seed, step))
        loss_value, parts = self._mean_over_ranks(out.loss, out.parts)
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                f"loss became {loss_value} at step {step} (parts: "
                f"{ {k: round(v, 4) for k, v in parts.items()} }); {self._checkpoint_note()}. {_DIVERGED_ADVICE}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.recipe.objective.after_backward(progress)
        if cfg.optim.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.recipe.trainable_parameters(), cfg.optim.clip_grad)
        self.optimizer.step()
        self.recipe.after_step(min(1.0, (step + 1) / total))
        return lr, wd, parts

    def _mean_over_ranks(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
        """The loss and its logged components averaged over ranks (one small all-reduce), so every rank sees the
        same values: the single-process loss of the global batch, and a NaN on any rank stops all of them at the
        same step."""
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in parts.values())])
        if dist.is_distributed():
            values = values.to(self.device)
            torch.distributed.all_reduce(values)
            values = values / self.world
        loss_value, *rest = values.tolist()
        return loss_value, dict(zip(parts, rest))

    def _checkpoint_note(self) -> str:
        latest = self.checkpoints.latest()
        if latest is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {latest} is intact (resume with --resume)"

    def _checkpoint(self, step: int) -> None:
        # a finite loss can still come with a non-finite gradient; never save such weights as the latest
        if not all(bool(torch.isfinite(p).all()) for p in self.recipe.trainable_parameters()):
            raise TrainingDiverged(f"weights became non-finite at step {step}; {self._checkpoint_note()}. "
                                   f"{_DIVERGED_ADVICE}")
        if self.rank == 0:
            self.checkpoints.save(self.state(step), step)
        if dist.is_distributed():
            torch.distributed.barrier()


def tensorboard_writer(run_dir: Path) -> Any:
    """A SummaryWriter on ``run_dir/tensorboard``, or None without tensorboard (a dependency, but stay usable)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def log_eval_scalars(run_dir: Path, kind: str, result: dict[str, Any], step: int) -> None:
    """The numbers of an evaluation result as TensorBoard scalars ``eval/<kind>/<key>`` at the run's step."""
    writer = tensorboard_writer(run_dir)
    if writer is None:
        return
    for key, value in flatten(result).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"eval/{kind}/{key.replace('.', '/')}", value, step)
    writer.close()


def run_environment(device: torch.device) -> dict[str, str]:
    """Versions and device a run used, for train_summary.json (results depend on them)."""
    import platform

    import timm

    import equireg

    info = {"equireg": equireg.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


class _RunLogger:
    """CSV (always) and TensorBoard (when installed) scalars, and the settings as TensorBoard text; rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0, settings: str = "") -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.csv"
        self._fh: Any = None
        self._writer: Any = None
        self._fields: list[str] | None = None
        if not enabled:
            return
        self._append = resume_step > 0 and self.path.exists()
        if self._append:
            _truncate_metrics(self.path, resume_step)
        self._writer = tensorboard_writer(run_dir)
        if self._writer is not None and settings:  # indented: a code block in TensorBoard's markdown
            self._writer.add_text("settings", "    " + settings.replace("\n", "\n    "), resume_step)

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._fh is None:
            self._fh = open(self.path, "a" if self._append else "w", newline="")
            self._fields = list(row)
            self._csv = csv.DictWriter(self._fh, fieldnames=self._fields, extrasaction="ignore")
            if not self._append:
                self._csv.writeheader()
        self._csv.writerow(row)
        self._fh.flush()
        if self._writer is not None:
            for k, v in row.items():
                if k != "step":
                    self._writer.add_scalar(f"train/{k}", v, int(row["step"]))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._writer is not None:
            self._writer.close()


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after ``last_step`` (steps a killed run did after its last checkpoint, which the resumed
    run redoes), so ``metrics.csv`` holds each step once. Rewritten atomically."""
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [line for line in lines[1:] if line.endswith("\n") and _row_step(line) <= last_step]
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _row_step(line: str) -> float:
    try:
        return float(line.split(",", 1)[0])
    except ValueError:  # a line cut short by a kill
        return math.inf


class _Progress:
    """Progress of the loop: a rich bar on a terminal; otherwise (a log file, a CI job, a pipe) one plain line per
    logged step (every ``train.log_every`` steps) with the loss parts, lr, images/s and the time left."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.enabled, self.total, self.start = enabled, total, start
        self.bar = enabled and sys.stdout.isatty()
        self._t0 = time.perf_counter()
        if not self.bar:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=start, info="")

    def update(self, step: int, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar:
            info = f"loss {row['loss']:.3f}  lr {row['lr']:.2e}  {row['images_per_s']:.0f} img/s"
            self._progress.update(self._task, completed=step, info=info)
            return
        parts = ", ".join(f"{k.removeprefix('loss_')} {v:.4g}" for k, v in row.items() if k.startswith("loss_"))
        print(f"step {step}/{self.total}  loss {row['loss']:.4g}{f' ({parts})' if parts else ''}  "
              f"lr {row['lr']:.2e}  {row['images_per_s']:.0f} img/s  ETA {self._eta(step)}", flush=True)

    def _eta(self, step: int) -> str:
        done = step - self.start
        if done <= 0:
            return "?"
        seconds = int((time.perf_counter() - self._t0) / done * (self.total - step))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def close(self) -> None:
        if self.bar:
            self._progress.stop()
