"""``equireg train`` and ``equireg config show``: resolve the config (file < flags < --set), then train."""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from equireg.cli.common import fail
from equireg.config import (
    Config, ConfigError, config_to_yaml, format_sources, recipe_file, resolve_config, resolve_config_with_sources,
)
from equireg.plugins import plugin_names
from equireg.registry import UnknownNameError

console = Console()

# flag name -> dotted config key (None values are dropped so file values survive)
FLAG_KEYS = {
    "dataset": "data.name", "data_root": "data.root", "image_size": "data.image_size",
    "train_subset": "data.train_subset", "backbone": "backbone.name", "cls_position": "backbone.cls_position",
    "objective": "objective.name", "equiv": "equiv.loss", "group": "equiv.group", "equiv_layer": "equiv.layer",
    "b2_ratio": "equiv.b2_ratio", "equiv_weight": "equiv.weight", "equiv_temperature": "equiv.temperature",
    "steps": "optim.steps", "batch_size": "optim.batch_size", "lr": "optim.lr", "run_dir": "train.run_dir",
    "seed": "train.seed", "device": "train.device", "precision": "train.precision",
}


def _overrides(flags: dict[str, Any], plugins: Optional[list[str]]) -> dict[str, Any]:
    """Dotted config keys from the flags that were given (and the plug-in modules)."""
    overrides = {FLAG_KEYS[k]: v for k, v in flags.items() if v is not None}
    names = plugin_names(plugins)
    if names:
        overrides["plugins"] = names
    return overrides


def config_from_cli(config: Path | dict[str, Any] | None, sets: Optional[list[str]],
                    plugins: Optional[list[str]] = None, **flags: Any) -> Config:
    """Defaults < demo profile < ``config`` (a file, or a run's recorded settings) < flags < ``--set``."""
    try:
        return resolve_config(config, _overrides(flags, plugins), sets)
    except ConfigError as exc:
        fail(str(exc))


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML or JSON config file")
RecipeOpt = typer.Option(None, "--recipe", help="a named recipe shipped with equireg (equireg list recipes), "
                         "e.g. in1k-moco-ser: the official run's every hyperparameter; flags and --set override it")


def _config_or_recipe(config: Optional[Path], recipe: Optional[str]) -> Optional[Path]:
    """The file of ``--config`` or of ``--recipe`` (one of the two: a recipe is a config file shipped with equireg;
    to change it, copy it with ``equireg config show --recipe NAME > my.yaml``)."""
    if recipe is None:
        return config
    if config is not None:
        fail("use --recipe NAME or --config FILE, not both (equireg config show --recipe NAME > my.yaml makes a "
             "file to edit)")
    try:
        return recipe_file(recipe)
    except ConfigError as exc:
        fail(str(exc))
PluginsOpt = typer.Option(None, "--plugins", help="a module (or .py file) of your own plug-ins to import first; "
                          "repeatable; also EQUIREG_PLUGINS=a,b; recorded in the run")
SetOpt = typer.Option(None, "--set", help="override any key: --set optim.lr=1e-3 (repeatable)")


def train(
    config: Optional[Path] = ConfigOpt,
    recipe: Optional[str] = RecipeOpt,
    sets: Optional[list[str]] = SetOpt,
    plugins: Optional[list[str]] = PluginsOpt,
    dataset: Optional[str] = typer.Option(None, help="dataset name (equireg list datasets)"),
    data_root: Optional[str] = typer.Option(None, help="dataset location"),
    image_size: Optional[int] = typer.Option(None, help="image side in pixels"),
    train_subset: Optional[int] = typer.Option(None, help="pretraining images"),
    backbone: Optional[str] = typer.Option(None, help="backbone name (equireg list backbones) or timm:<model>"),
    cls_position: Optional[str] = typer.Option(None, help="ViT: 'after_equiv' (SER) or 'input'"),
    objective: Optional[str] = typer.Option(None, help="invariant objective: moco, dino, barlow, simclr"),
    equiv: Optional[str] = typer.Option(None, help="equivariance loss: ser (default), augself, equimod, essl, stl, or 'none' for the baseline"),
    group: Optional[str] = typer.Option(None, help="symmetry group, e.g. p4m, c4, p4m*scale"),
    equiv_layer: Optional[int] = typer.Option(None, help="ViT block k / CNN stage k (1-indexed)"),
    b2_ratio: Optional[float] = typer.Option(None, help="share of each batch with equivariant views"),
    equiv_weight: Optional[float] = typer.Option(None, "--lambda", help="weight of the equivariance loss"),
    equiv_temperature: Optional[float] = typer.Option(None, help="temperature of the equivariance loss"),
    steps: Optional[int] = typer.Option(None, help="optimizer steps"),
    batch_size: Optional[int] = typer.Option(None, help="batch size"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    run_dir: Optional[str] = typer.Option(None, help="run directory (config, logs, checkpoints)"),
    seed: Optional[int] = typer.Option(None, help="random seed"),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda"),
    precision: Optional[str] = typer.Option(None, help="bf16 or fp32"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --run-dir from its last checkpoint "
                                "with its own settings (eval, logging, threads and device may change)"),
    allow_change: Optional[list[str]] = typer.Option(
        None, "--allow-change", metavar="KEY", help="with --resume: let setting KEY (e.g. optim.steps, or a section) "
        "differ from the run's; recorded in config_changes.jsonl (repeatable)"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="linear probe + equivariance score afterwards"),
) -> None:
    """Pretrain a backbone: invariant objective + equivariance regularizer (SER by default)."""
    flags = {k: v for k, v in locals().items() if k in FLAG_KEYS}
    allowed = _allowed_changes(allow_change or [], resume)
    base: Path | dict[str, Any] | None = _config_or_recipe(config, recipe)
    if resume and base is None and run_dir is not None:
        from equireg.engine.run_config import recorded_settings

        base = recorded_settings(Path(run_dir))[0]  # the settings in force: config.yaml + recorded changes
    cfg = config_from_cli(base, sets, plugins, **flags)
    run_training(cfg, resume=resume, evaluate=evaluate, allow_changes=allowed)


def _allowed_changes(keys: list[str], resume: bool) -> tuple[str, ...]:
    from equireg.engine.run_config import is_setting

    if keys and not resume:
        fail("--allow-change only applies with --resume")
    unknown = [k for k in keys if not is_setting(k)]
    if unknown:
        fail(f"--allow-change {unknown[0]}: not a setting; see `equireg config show` for the keys")
    return tuple(keys)


def run_training(cfg: Config, *, resume: bool, evaluate: bool, allow_changes: tuple[str, ...] = ()) -> None:
    from equireg.engine import Trainer, TrainingDiverged
    from equireg.engine.trainer import DataError, RunDirError

    run_dir = Path(cfg.train.run_dir)
    existed = run_dir.exists()
    try:
        trainer = Trainer(cfg, resume=resume, allow_changes=allow_changes)
    except (ValueError, UnknownNameError, RunDirError, FileNotFoundError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # while the model and data were being built
        console.print("interrupted before training started; nothing was written")
        raise typer.Exit(130) from None
    main = trainer.rank == 0  # under torchrun only rank 0 prints, cleans up and evaluates
    if main:
        console.print(f"[bold]equireg[/bold] run → {run_dir}  ({_describe(cfg)})")
        if trainer.data_clamped:
            console.print("note: " + "; ".join(trainer.data_clamped), soft_wrap=True)
    keep_config = False
    try:
        result = trainer.fit()
    except TrainingDiverged as exc:
        fail(str(exc), code=1)
    except (DataError, RunDirError) as exc:  # a corrupt file met mid-epoch; a run directory that cannot be written
        fail(str(exc))
    except KeyboardInterrupt:
        keep_config = main and _report_interrupt(trainer, run_dir)
        raise typer.Exit(130)
    finally:
        trainer.close()
        if main and not existed and not keep_config and not (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
    if not main:
        return
    console.print(f"trained {result.steps} steps in {result.wall_seconds:.0f} s ({result.images_per_second:.0f} img/s)")
    if evaluate:
        from equireg.cli.evaluate import summarize

        summarize(run_dir, kinds=("linear", "equivariance"))


def _report_interrupt(trainer: Any, run_dir: Path) -> bool:
    """Say what Ctrl-C left: a checkpoint to resume from, or (before the first one) nothing to resume but the
    settings, which are kept so the run can be started again. Returns True when only the settings were kept."""
    if trainer.checkpoints.latest() is not None:
        console.print(f"interrupted; resume with: {_launcher()} train --run-dir {run_dir} --resume", soft_wrap=True)
        return False
    config = run_dir / "config.yaml"
    if not config.is_file():
        console.print("interrupted before training started; nothing was written")
        return False
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)  # logs of steps that are lost
    for name in ("metrics.csv", "train_summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    every = trainer.cfg.train.checkpoint_every
    console.print(f"interrupted before the first checkpoint (every {every} steps): nothing to resume. The settings "
                  f"are kept; start again with: {_launcher()} train --config {config}")
    return True


def _launcher() -> str:
    """How this process was started: plain ``equireg``, or torchrun with its process count."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return "equireg"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if local == world:
        return f"torchrun --nproc-per-node {world} -m equireg"
    return "torchrun <the same torchrun options, on every node> -m equireg"


def _describe(cfg: Config) -> str:
    e = cfg.equiv
    equiv = "no equivariance loss" if e.loss == "none" else f"{e.loss} on {e.group} at layer {e.layer or 'default'}, b2={e.b2_ratio}"
    return f"{cfg.backbone.name} + {cfg.objective.name}, {equiv}, {cfg.optim.steps} steps on {cfg.data.name}"


config_app = typer.Typer(no_args_is_help=True, help="Inspect configurations.")


def show(config: Optional[Path] = None, recipe: Optional[str] = None, sets: Optional[list[str]] = None,
         plugins: Optional[list[str]] = None, sources: bool = False, **flags: Any) -> None:
    """Print the resolved configuration (defaults < demo profile < file < flags < --set) as YAML; takes every
    flag of `train`."""
    try:
        cfg, origin = resolve_config_with_sources(_config_or_recipe(config, recipe), _overrides(flags, plugins), sets)
    except ConfigError as exc:
        fail(str(exc))
    typer.echo(format_sources(cfg, origin) if sources else config_to_yaml(cfg), nl=False)


# `config show` takes exactly the configuration options of `train` (same names, help and precedence), and --sources
_train_signature = inspect.signature(train, eval_str=True)
show.__signature__ = _train_signature.replace(  # type: ignore[attr-defined]
    parameters=[
        *(p for name, p in _train_signature.parameters.items()
          if name in ("config", "recipe", "sets", "plugins", *FLAG_KEYS)),
        inspect.Parameter("sources", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=bool, default=typer.Option(
            False, "--sources", help="one `key: value  # origin` line per value (default, demo, file, flag or --set)")),
    ]
)
config_app.command("show")(show)
