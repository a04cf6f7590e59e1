"""The whole configuration tree, with every default in one place.

Files (YAML or JSON) and CLI flags resolve into :class:`Config`; unknown keys are errors (``extra="forbid"``),
so a typo such as ``optim.lr_rate`` is reported with the field's path instead of being silently ignored.
Component-specific hyperparameters (e.g. MoCo's projector width) pass through ``kwargs`` dicts to the
registered factories, which own their defaults.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Which dataset, at what size, and which subsets pretraining and the probe use."""

    name: str = "fashion-mnist"
    root: str | None = Field(None, description="dataset location; default: the dataset's own default or env var")
    image_size: int = Field(32, ge=8, le=1024, description="side of the views and evaluation images")
    load_size: int | None = Field(None, ge=8, le=4096, description="in-memory datasets: side at which images are "
                                  "stored (views are cut from them at image_size); None = image_size")
    train_subset: int | None = Field(None, ge=1, description="images used for pretraining (None = all)")
    probe_train_size: int | None = Field(None, ge=1, description="train images for the linear probe / kNN, "
                                         "taken after the pretraining subset (None = all remaining)")
    test_size: int | None = Field(None, ge=1, description="test images for evaluation (None = all)")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class BackboneConfig(_Section):
    name: str = "resnet18"
    cls_position: Literal["input", "after_equiv"] | None = Field(
        None, description="ViT only: where [CLS] joins; None = the method's own architecture (SER and ser_arch: "
        "after_equiv; the baseline and the comparison methods: input, a standard ViT)"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Section):
    name: str = "moco"
    preset: str | None = Field(None, description="head sizes for objectives that declare presets: 'paper' "
                               "(the official widths) or 'small' (CPU-sized); None = the objective's own default "
                               "(the official widths); the demo profile asks for 'small'")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EquivConfig(_Section):
    """The equivariance regularizer: which loss, group, layer, batch share and weight."""

    loss: str = Field("ser", description="equivariance loss name; 'none' for the invariant baseline, 'ser_arch' for "
                      "SER's architecture with lambda = 0 (the architecture control)")
    group: str = "p4m"
    group_kwargs: dict[str, Any] = Field(default_factory=dict)
    layer: int | None = Field(None, ge=1, description="ViT block k / CNN stage k (1-indexed); None = backbone default")
    b2_ratio: float = Field(0.01, gt=0.0, lt=1.0, description="share of each batch given equivariant views")
    weight: float | None = Field(None, ge=0.0, description="lambda; None = the loss's own default (SER: per objective)")
    temperature: float | None = Field(None, gt=0.0, description="tau_eq; None = the loss's own default")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ViewsConfig(_Section):
    """The crops of T and T_eq and the T_eq view policy."""

    crop_min: float | None = Field(None, gt=0.0, le=1.0, description="RandomResizedCrop scale (crop_min, 1) of T and "
                                   "T_eq's shared crop; None = the objective's official value (MoCo-v3, Barlow "
                                   "Twins, SimCLR 0.08; DINO 0.25)")
    equivariant: str | None = Field(None, description="T_eq view policy: None = 'ser' (SER's official views) for "
                                    "p4m / p4m*scale, 'uniform' for other groups")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="options of the T_eq view policy")


class OptimConfig(_Section):
    batch_size: int = Field(256, ge=2)
    steps: int = Field(800, ge=1, description="optimizer steps (800 x 256 = 10 epochs of the 20k demo subset)")
    lr: float = Field(2e-3, gt=0.0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    warmup_frac: float = Field(0.05, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.05, ge=0.0)
    weight_decay_end: float | None = Field(None, ge=0.0, description="cosine weight-decay schedule end value")
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = Field(None, gt=0.0)


class TrainConfig(_Section):
    run_dir: str = "runs/default"
    seed: int = 0
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    precision: Literal["bf16", "fp32"] = "bf16"
    channels_last: bool = True
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (and one at the end)")
    log_every: int = Field(10, ge=1)
    deterministic: bool = False
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default)")


class EvalConfig(_Section):
    batch_size: int = Field(512, ge=1)
    probe_optimizer: Literal["lbfgs", "adamw"] = "lbfgs"
    probe_epochs: int = Field(500, ge=1, description="AdamW epochs, or the L-BFGS iteration cap (run it to "
                              "convergence: 100 iterations under-fit by ~0.5 points on the demo)")
    probe_lr: float = Field(1e-2, gt=0.0, description="AdamW only (L-BFGS sets its own step by line search)")
    linear_protocol: Literal["probe", "paper"] = Field(
        "probe", description="probe: fit on precomputed embeddings (small data); paper: SGD heads on augmented "
        "crops, features of the last blocks, an lr sweep (DINO/SER linear evaluation)")
    linear_epochs: int = Field(50, ge=1, description="paper protocol: epochs")
    linear_lrs: list[float] = Field(default_factory=lambda: [1.0, 3.0, 10.0],
                                    description="paper protocol: lr sweep, each times batch_size/256")
    linear_last_blocks: int = Field(4, ge=1, description="paper protocol: ViT blocks whose [CLS] are concatenated")
    knn_k: int = Field(20, ge=1)
    equiv_images: int = Field(512, ge=1, description="test images for the equivariance score")
    robustness_severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    robustness_corruptions: list[str] | None = None


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    equiv: EquivConfig = Field(default_factory=EquivConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    plugins: list[str] = Field(default_factory=list, description="user modules imported before anything is built "
                               "(--plugins / EQUIREG_PLUGINS); recorded so `equireg eval` can import them again")

    @model_validator(mode="after")
    def _check_batch_split(self) -> Config:
        from equireg.augment import split_batch

        if self.equiv.loss != "none":
            split_batch(self.optim.batch_size, self.equiv.b2_ratio)  # raises ValueError naming the setting
        return self


RECIPE_DIR = Path(__file__).parent / "configs" / "recipes"


def list_recipes() -> list[str]:
    """The named recipes shipped with the package (``equireg train --recipe NAME``)."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_file(name: str) -> Path:
    """The YAML file of a named recipe; an unknown name is a :class:`ConfigError` listing the recipes."""
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}; shipped recipes: {', '.join(list_recipes())}")
    return path


class ConfigError(ValueError):
    """A configuration problem, already phrased for the user (field path, what is allowed)."""


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parent = _section_for(err["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else ""
            lines.append(f"{loc}: unknown key" + (f" (allowed: {allowed})" if allowed else ""))
        else:
            got = f" (got {err.get('input')!r})" if err["loc"] else ""
            lines.append(f"{loc}: {err['msg']}{got}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _section_for(path: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 1e-3)`` creates intermediate dicts as needed; dict values merge."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
    last = parts[-1]
    node[last] = deep_merge(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) else value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


DEMO_DATASETS = ("fashion-mnist", "synthetic")
"""Datasets that get the CPU demo profile: the built-in demo data and the synthetic trial set."""

DEMO_PROFILE: dict[str, Any] = {
    "data.train_subset": None,
    "data.probe_train_size": None,
    "objective.preset": "small",
    "equiv.b2_ratio": 0.25,
    "optim.batch_size": 128,
    "optim.steps": 640,
    "train.checkpoint_every": 200,
}
"""CPU-sized values of the demo: 640 steps of 128 images (1.4 epochs of Fashion-MNIST's 60k training images, all of
which the linear probe then trains on, the standard linear evaluation), 1024-wide heads, b2 = 25%, frequent
checkpoints. Chosen to finish `make demo` in about 8 minutes on 2 cores with linear top-1 >= 83.5% (docs/results.md
has the measured trade-off). They sit between the library defaults (the paper's heads, b2 = 1%, all data) and the
user's file, so a run on any other dataset never inherits them."""

SOURCES = ("default", "demo", "file", "flag", "--set")


def resolve_config(
    file: str | Path | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Defaults, the demo profile (demo datasets only), file values, ``overrides`` (dotted keys from CLI flags),
    then ``--set key=value``. ``file`` may also be the settings themselves (a mapping, e.g. those a run directory
    records).

    Mappings merge key by key (``--set objective.kwargs.proj_dim=128`` keeps the demo's preset); every
    other value replaces the one before it.
    """
    return resolve_config_with_sources(file, overrides, sets)[0]


def resolve_config_with_sources(
    file: str | Path | dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """:func:`resolve_config`, plus where each leaf value came from: ``{"optim.lr": "flag", ...}``."""
    settings = copy.deepcopy(file) if isinstance(file, dict) else load_file(file) if file else {}
    layers = [("file", settings), ("flag", {}), ("--set", {})]
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(layers[1][1], key, value)
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_dotted(layers[2][1], key.strip(), yaml.safe_load(raw))
    defaults: dict[str, Any] = Config.model_construct().model_dump(mode="python")
    user: dict[str, Any] = {}
    for _, layer in layers:
        user = deep_merge(user, layer)
    profile = profile_tree(user)
    tree = deep_merge(deep_merge(defaults, profile), user)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    return cfg, _sources(cfg, [("demo", profile), *layers])


def profile_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """The demo profile as a nested mapping when ``tree`` (a user's settings) trains on a demo dataset, else ``{}``.

    Code that builds a :class:`Config` from a mapping of its own (``equireg bench``) merges its settings over this.
    """
    data = tree.get("data")
    name = data.get("name", DataConfig().name) if isinstance(data, dict) else DataConfig().name
    profile: dict[str, Any] = {}
    if name in DEMO_DATASETS:
        for key, value in DEMO_PROFILE.items():
            set_dotted(profile, key, value)
    return profile


def _leaf_paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the non-mapping values (and of empty mappings) in ``tree``."""
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        paths += _leaf_paths(value, path + ".") if isinstance(value, dict) and value else [path]
    return paths


def _sources(cfg: Config, layers: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Each leaf of ``cfg``: the last layer that set it, or an enclosing mapping of it."""
    sources = {}
    layer_paths = [(name, set(_leaf_paths(tree))) for name, tree in layers]
    for leaf in _leaf_paths(cfg.model_dump(mode="python")):
        parts = leaf.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        sources[leaf] = next((name for name, paths in reversed(layer_paths) if paths & prefixes), "default")
    return sources


def format_sources(cfg: Config, sources: dict[str, str]) -> str:
    """``key: value  # source`` per leaf, in the config's order (``equireg config show --sources``)."""
    flat = {}
    tree = cfg.model_dump(mode="json")
    for leaf in sources:
        node: Any = tree
        for part in leaf.split("."):
            node = node[part]
        flat[leaf] = yaml.safe_dump(node, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    width = max(len(f"{k}: {v}") for k, v in flat.items())
    return "\n".join(f"{f'{k}: {v}':<{width}}  # {sources[k]}" for k, v in flat.items()) + "\n"


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
