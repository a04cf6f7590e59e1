"""The bench spec: one YAML file describing a matrix of runs and how each is trained and evaluated.

Example (see docs/bench.md for every key)::

    name: cpu
    base:                       # any run-config keys (as in `equireg train -c`), shared by every cell
      data: {name: fashion-mnist, image_size: 32}
      backbone: {name: resnet18}
      optim: {batch_size: 256, steps: 150}
    methods: [none, ser, augself, equimod, essl, stl]   # or {label: {config overrides}} items
    layers: [2, 4]              # --equiv-layer values (the last layer is the coupled setting)
    objectives: [moco]          # or {name: {objective kwargs}} items
    seeds: [0]
    groups: [p4m]               # only for losses on T_eq pairs (ser); the others run once per layer
    evaluate: [linear, robustness, equivariance]   # + rotation (rot3d probes; see rotation_data_root)
    baseline: none              # the method label every other row is paired with (per seed) in the report

Cells are the product objectives × seeds × methods × layers (× groups); the ``none`` method (no equivariance
loss) runs once per objective and seed and is scored for equivariance at every layer of the sweep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equireg.config import Config, ConfigError, deep_merge, format_validation_error, profile_tree

SPEC_DIR = Path(__file__).parent / "specs"
EVALUATIONS = ("linear", "robustness", "equivariance", "rotation")
DEFAULT_EVALUATIONS = ("linear", "robustness", "equivariance")  # rotation needs a rot3d folder: opt in


class MethodSpec(BaseModel):
    """One row family: a label, the equivariance loss it runs and config overrides (nested keys)."""

    model_config = ConfigDict(extra="forbid")
    label: str
    loss: str
    overrides: dict[str, Any] = Field(default_factory=dict)


class ObjectiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class BenchSpec(BaseModel):
    """A parsed bench spec (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "bench"
    description: str = ""
    out_dir: str | None = Field(None, description="default output folder (runs/bench-<name>)")
    base: dict[str, Any] = Field(default_factory=dict)
    methods: list[MethodSpec]
    layers: list[int] = Field(default_factory=list)
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec(name="moco")])
    seeds: list[int] = Field(default_factory=lambda: [0])
    groups: list[str] = Field(default_factory=lambda: ["p4m"])
    evaluate: list[Literal["linear", "robustness", "equivariance", "rotation"]] = Field(
        default_factory=lambda: list(DEFAULT_EVALUATIONS))
    equivariance_group: str | None = Field(None, description="group of the equivariance score (default: the run's)")
    baseline: str = Field("none", description="method label the report pairs every other method with, per seed")
    rotation_data_root: str | None = Field(
        None, description="rot3d folder of the rotation probes (default: the cell's data.root when it trains on rot3d)")

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return [_method_item(v) for v in value] if isinstance(value, list) else value

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and len(item) == 1 and "name" not in item:
                (name, kwargs), = item.items()
                out.append({"name": name, "kwargs": kwargs or {}})
            else:
                out.append(item)
        return out

    @field_validator("methods", "seeds", "groups", "objectives")
    @classmethod
    def _non_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("must list at least one entry")
        return value

    @model_validator(mode="after")
    def _known_baseline(self) -> BenchSpec:
        labels = [m.label for m in self.methods]
        if "baseline" in self.model_fields_set and self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not one of the methods ({', '.join(labels)})")
        return self


def _method_item(item: Any) -> Any:
    if isinstance(item, str):
        return {"label": item, "loss": item}
    if isinstance(item, dict) and len(item) > 1 and "label" not in item:
        raise ValueError(f"a method item is a name or one {{label: {{config overrides}}}} mapping; got the keys "
                         f"{', '.join(map(str, item))} in one item (start each method with its own '- ')")
    if isinstance(item, dict) and len(item) == 1 and "label" not in item:
        (label, overrides), = item.items()
        overrides = dict(overrides or {})
        loss = overrides.get("equiv", {}).get("loss", label) if isinstance(overrides.get("equiv"), dict) else label
        return {"label": label, "loss": loss, "overrides": overrides}
    return item


@dataclass
class Cell:
    """One run of the matrix. ``eval_layers`` are the layers its equivariance score is measured at."""

    objective: ObjectiveSpec
    method: MethodSpec
    layer: int | None
    group: str | None
    seed: int
    eval_layers: list[int | None] = field(default_factory=list)

    @property
    def id(self) -> str:
        parts = [self.objective.name, self.method.label]
        if self.layer is not None:
            parts.append(f"L{self.layer}")
        if self.group is not None:
            parts.append(re.sub(r"[^A-Za-z0-9]+", "", self.group))
        parts.append(f"s{self.seed}")
        return "-".join(parts)

    def config(self, spec: BenchSpec, out_dir: Path) -> Config:
        """The full run config of this cell (ConfigError with the cell id on bad values)."""
        tree = deep_merge(spec.base, self.method.overrides)
        tree = deep_merge(tree, {
            "objective": {"name": self.objective.name, "kwargs": deep_merge(
                tree.get("objective", {}).get("kwargs", {}), self.objective.kwargs)},
            "equiv": {"loss": self.method.loss, "layer": self.layer,
                      **({"group": self.group} if self.group is not None else {})},
            "train": {"seed": self.seed, "run_dir": str(out_dir / "cells" / self.id)},
        })
        try:
            return Config.model_validate(deep_merge(profile_tree(tree), tree))  # the demo profile, as resolve_config
        except ValidationError as exc:
            one_line = format_validation_error(exc).replace(":\n  ", ": ").replace("\n  ", "; ")
            raise ConfigError(f"bench spec: cell {self.id}: {one_line}") from None


def uses_equivariant_pair(loss: str) -> bool:
    from equireg.equivariance import equiv_loss_class

    return equiv_loss_class(loss).uses_pairs()


def expand_cells(spec: BenchSpec) -> list[Cell]:
    """Every cell of the matrix, baselines first within each objective and seed."""
    cells: list[Cell] = []
    for objective in spec.objectives:
        for seed in spec.seeds:
            for method in sorted(spec.methods, key=lambda m: m.loss != "none"):
                if method.loss == "none":
                    layers: list[int | None] = list(spec.layers) or [None]
                    cells.append(Cell(objective, method, None, None, seed, eval_layers=layers))
                    continue
                groups: list[str | None] = list(spec.groups) if uses_equivariant_pair(method.loss) else [None]
                for layer in spec.layers or [None]:
                    for group in groups:
                        cells.append(Cell(objective, method, layer, group, seed, eval_layers=[layer]))
    ids = [c.id for c in cells]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"bench spec gives several cells the same id {dupes}; give the methods distinct labels")
    return cells


def find_spec(name_or_path: str | Path) -> Path:
    """A spec file path, or the shipped spec of that name (``cpu``, ``gpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SPEC_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))
    raise ConfigError(f"bench spec {str(name_or_path)!r} is neither a file nor a shipped spec ({', '.join(names)})")


def load_spec(name_or_path: str | Path) -> BenchSpec:
    path = find_spec(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"bench spec {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"bench spec {str(path)!r} must hold a mapping at the top level")
    try:
        return BenchSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"bench spec {str(path)!r}: {format_spec_error(exc)}") from None


def _spec_section(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model owning a key at ``loc`` (top level, a method item or an objective item)."""
    if not loc:
        return BenchSpec
    if len(loc) == 2 and loc[0] in ("methods", "objectives") and isinstance(loc[1], int):
        return MethodSpec if loc[0] == "methods" else ObjectiveSpec
    return None


def format_spec_error(exc: ValidationError) -> str:
    """One line: each problem, and for an unknown key the valid keys of the spec section it was found in."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        section = _spec_section(tuple(err["loc"][:-1])) if err["type"] == "extra_forbidden" else None
        if section is not None:
            problems.append(f"{loc}: unknown key (valid keys: {', '.join(section.model_fields)})")
        elif err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err["type"] not in ("value_error", "missing")  # their message already says what is wrong
            problems.append(f"{loc}: {msg}" + (f" (got {err.get('input')!r})" if got else ""))
    return "; ".join(problems)
