"""Checkpoints as safetensors (every tensor) + JSON (everything else), written atomically.

A nested state (model and optimizer state dicts, RNG states, counters) is split into a flat tensor map and a
JSON tree in which tensors are replaced by ``{"__tensor__": key}``. A checkpoint is a directory
``step-000200/`` written under a temporary name and renamed into place; ``latest.json`` is then replaced
atomically. A crash at any moment therefore leaves the previous checkpoint and pointer intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS, META, POINTER = "tensors.safetensors", "state.json", "latest.json"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint keys must be str or int, got {type(k).__name__} at {prefix!r}")
            out[("i:" if isinstance(k, int) else "s:") + str(k)] = _split(v, f"{prefix}/{k}", tensors)
        return {"__dict__": out}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)], "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix!r}")


def _join(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__dict__" in tree:
            return {(int(k[2:]) if k.startswith("i:") else k[2:]): _join(v, tensors) for k, v in tree["__dict__"].items()}
        if "__list__" in tree:
            items = [_join(v, tensors) for v in tree["__list__"]]
            return tuple(items) if tree.get("tuple") else items
    return tree


def save_state(state: dict[str, Any], directory: Path) -> None:
    """Write ``state`` into a new directory atomically (temporary name, fsync, rename)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(state, "", tensors)
    save_file(tensors, str(tmp / TENSORS))
    (tmp / META).write_text(json.dumps(tree))
    for name in (TENSORS, META):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def load_state(directory: Path) -> dict[str, Any]:
    directory = Path(directory)
    tree = json.loads((directory / META).read_text())
    return _join(tree, load_file(str(directory / TENSORS)))


class CheckpointManager:
    """Keeps ``keep`` most recent checkpoints under ``root`` and a ``latest.json`` pointer."""

    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep

    def save(self, state: dict[str, Any], step: int) -> Path:
        target = self.root / f"step-{step:07d}"
        save_state(state, target)
        pointer_tmp = self.root / (POINTER + ".tmp")
        pointer_tmp.write_text(json.dumps({"step": step, "path": target.name}))
        os.replace(pointer_tmp, self.root / POINTER)
        self._prune(keep_name=target.name)
        return target

    def latest(self) -> Path | None:
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        path = self.root / json.loads(pointer.read_text())["path"]
        return path if (path / META).is_file() and (path / TENSORS).is_file() else None

    def load_latest(self) -> dict[str, Any] | None:
        path = self.latest()
        return None if path is None else load_state(path)

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in done[: max(0, len(done) - self.keep)]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)
