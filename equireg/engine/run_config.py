"""A run directory's settings history, and which settings a resumed run may change.

``config.yaml`` holds the settings a run started with and is never rewritten. A resumed run whose settings differ
appends one record to ``config_changes.jsonl``: the step and time, each change as ``key: old → new`` (and whether it
was free or named with ``--allow-change``), the world size and the full settings in force from then on. The settings
in force are therefore those of the last record, or ``config.yaml`` when there is none.

Resuming may change :data:`FREE_ON_RESUME` (evaluation, logging, threads, device, where the data lives): they do not
change the function being trained. Every other difference (group, backbone, objective, loss, layer, data, schedule,
seed, precision, the global batch = ``optim.batch_size`` x ranks, ...) would silently turn the resumed run into a
different experiment, so it is refused unless named with ``--allow-change KEY``.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from equireg.config import Config, ConfigError, resolve_config

CONFIG_FILE = "config.yaml"
CHANGES_FILE = "config_changes.jsonl"

#: settings (dotted keys or whole sections) a resumed run may change without --allow-change
FREE_ON_RESUME: tuple[str, ...] = (
    "eval",  # read only after training
    "data.root",  # the same dataset in another place
    "data.probe_train_size",  # evaluation subsets
    "data.test_size",
    "train.run_dir",  # the run was moved
    "train.device",
    "train.threads",
    "train.log_every",
    "train.checkpoint_every",
    "train.channels_last",  # memory layout only
    "train.deterministic",  # kernel choice only
)
BATCH_KEY = "optim.batch_size"  # compared as the global batch (per-rank batch x ranks)
_ABSENT = "(absent)"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (a file, unwritable, holds a run without --resume, nothing to
    resume, or resuming would change what the run trains); bad input, not a bug."""


@dataclass(frozen=True)
class SettingChange:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.old)} → {_show(self.new)}"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _covered(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; mappings nest (an empty one adds nothing, so ``{}`` and
    ``{"x": 1}`` differ by the one key ``x``), every other value is a leaf."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def is_setting(key: str) -> bool:
    """True when ``key`` names a section, a field, or an entry under a mapping field (``objective.kwargs.x``)."""
    model: type[BaseModel] = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return i == len(parts) - 1 or typing.get_origin(annotation) is dict
    return True


def setting_changes(old: Config, new: Config, old_world: int | None, new_world: int) -> list[SettingChange]:
    """Every setting that differs, in config order; the batch size is compared as the global batch."""
    before, after = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    keys = list(dict.fromkeys([*after, *before]))  # the new settings' order; removed keys last
    changes = [SettingChange(k, before.get(k, _ABSENT), after.get(k, _ABSENT)) for k in keys
               if k != BATCH_KEY and before.get(k, _ABSENT) != after.get(k, _ABSENT)]
    old_world = new_world if old_world is None else old_world  # checkpoints from before world sizes were recorded
    old_batch, new_batch = old.optim.batch_size, new.optim.batch_size
    if old_batch * old_world != new_batch * new_world:
        changes.append(SettingChange(BATCH_KEY, _global_batch(old_batch, old_world),
                                     _global_batch(new_batch, new_world)))
    elif old_batch != new_batch:  # the same global batch on another number of ranks: free
        changes.append(SettingChange("train.ranks", old_world, new_world))
    return changes


def _global_batch(batch: int, world: int) -> str:
    return f"{batch}" if world == 1 else f"{batch} x {world} ranks = {batch * world}"


def refused_changes(changes: list[SettingChange], allowed: Iterable[str]) -> list[SettingChange]:
    permitted = (*FREE_ON_RESUME, "train.ranks", *allowed)
    return [c for c in changes if not _covered(c.key, permitted)]


def refusal_message(run_dir: Path, refused: list[SettingChange]) -> str:
    listed = "\n  ".join(str(c) for c in refused)
    keys = " ".join(f"--allow-change {c.key}" for c in refused)
    return (f"--resume would change what the run in {run_dir} trains:\n  {listed}\n"
            f"resume with the run's own settings (leave out --config and these flags), or allow the change "
            f"deliberately with {keys} (it is recorded in {CHANGES_FILE})")


def recorded_settings(run_dir: Path) -> tuple[dict[str, Any] | None, int | None]:
    """The settings in force in ``run_dir`` (the last change record's, else ``config.yaml``'s) and the world size
    recorded with them; (None, None) when the directory holds no settings."""
    changes = run_dir / CHANGES_FILE
    if changes.is_file():
        lines = [line for line in changes.read_text().splitlines() if line.strip()]
        if lines:
            last = json.loads(lines[-1])
            return last["config"], last.get("world_size")
    config = run_dir / CONFIG_FILE
    if config.is_file():
        return yaml.safe_load(config.read_text()) or {}, None
    return None, None


def settings_in_force(run_dir: Path, checkpoint: Mapping[str, Any]) -> tuple[Config, int | None]:
    """The run's current settings as a :class:`Config` (from its files, else from ``checkpoint``) and world size."""
    settings, world = recorded_settings(run_dir)
    if settings is None:
        settings = json.loads(checkpoint["config"])
    try:
        config = resolve_config(settings)
    except ConfigError as exc:
        raise RunDirError(f"the settings recorded in {run_dir} are no longer valid: {exc}") from None
    return config, world if world is not None else checkpoint.get("world_size")


def record_changes(run_dir: Path, changes: list[SettingChange], allowed: Iterable[str], *, step: int,
                   world_size: int, config: Config) -> None:
    """Append one record to ``config_changes.jsonl`` (never rewriting ``config.yaml``)."""
    allowed = tuple(allowed)
    record = {
        "step": step,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "changes": [{"key": c.key, "old": c.old, "new": c.new,
                     "allowed_by": "--allow-change" if _covered(c.key, allowed) else "free"} for c in changes],
        "world_size": world_size,
        "config": config.model_dump(mode="json"),
    }
    with open(run_dir / CHANGES_FILE, "a") as fh:
        fh.write(json.dumps(record) + "\n")
