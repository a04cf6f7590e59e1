"""``equireg train`` and ``equireg config show``: resolve the config (file < flags < --set), then train."""

from __future__ import annotations

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


def config_from_cli(config: Optional[Path], sets: Optional[list[str]], plugins: Optional[list[str]] = None,
                    recipe: Optional[str] = None, **flags: Any) -> Config:
    config = _config_or_recipe(config, recipe)
    overrides = {FLAG_KEYS[k]: v for k, v in flags.items() if v is not None}
    names = plugin_names(plugins)
    if names:
        overrides["plugins"] = names
    try:
        return resolve_config(config, overrides, sets)
    except ConfigError as exc:
        fail(str(exc))


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML or JSON config file")


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
RecipeOpt = typer.Option(None, "--recipe", help="a named recipe shipped with equireg (equireg list recipes), "
                         "e.g. in1k-moco-ser: the official run's every hyperparameter; flags and --set override it")
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
    resume: bool = typer.Option(False, "--resume", help="continue the run in --run-dir from its last checkpoint"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="linear probe + equivariance score afterwards"),
) -> None:
    """Pretrain a backbone: invariant objective + equivariance regularizer (SER by default)."""
    flags = {k: v for k, v in locals().items() if k in FLAG_KEYS}
    if resume and config is None and run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        config = Path(run_dir) / "config.yaml"
    cfg = config_from_cli(config, sets, plugins, recipe, **flags)
    run_training(cfg, resume=resume, evaluate=evaluate)


def run_training(cfg: Config, *, resume: bool, evaluate: bool) -> None:
    from equireg.engine import Trainer, TrainingDiverged
    from equireg.engine.trainer import DataError, RunDirError

    run_dir = Path(cfg.train.run_dir)
    existed = run_dir.exists()
    try:
        trainer = Trainer(cfg, resume=resume)
    except (ValueError, UnknownNameError, RunDirError, FileNotFoundError) as exc:
        fail(str(exc))
    main = trainer.rank == 0  # under torchrun only rank 0 prints, cleans up and evaluates
    if main:
        console.print(f"[bold]equireg[/bold] run → {run_dir}  ({_describe(cfg)})")
    try:
        result = trainer.fit()
    except TrainingDiverged as exc:
        fail(str(exc), code=1)
    except DataError as exc:  # a corrupt file met mid-epoch
        fail(str(exc))
    except KeyboardInterrupt:
        console.print(f"interrupted; resume with: equireg train --run-dir {run_dir} --resume")
        raise typer.Exit(130)
    finally:
        trainer.close()
        if main and not existed and not (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
    if not main:
        return
    console.print(f"trained {result.steps} steps in {result.wall_seconds:.0f} s ({result.images_per_second:.0f} img/s)")
    if evaluate:
        from equireg.cli.evaluate import summarize

        summarize(run_dir, kinds=("linear", "equivariance"))


def _describe(cfg: Config) -> str:
    e = cfg.equiv
    equiv = "no equivariance loss" if e.loss == "none" else f"{e.loss} on {e.group} at layer {e.layer or 'default'}, b2={e.b2_ratio}"
    return f"{cfg.backbone.name} + {cfg.objective.name}, {equiv}, {cfg.optim.steps} steps on {cfg.data.name}"


config_app = typer.Typer(no_args_is_help=True, help="Inspect configurations.")


@config_app.command("show")
def show(
    config: Optional[Path] = ConfigOpt,
    recipe: Optional[str] = RecipeOpt,
    sets: Optional[list[str]] = SetOpt,
    plugins: Optional[list[str]] = PluginsOpt,
    objective: Optional[str] = typer.Option(None),
    group: Optional[str] = typer.Option(None),
    equiv_layer: Optional[int] = typer.Option(None),
    backbone: Optional[str] = typer.Option(None),
    equiv: Optional[str] = typer.Option(None),
    dataset: Optional[str] = typer.Option(None),
    sources: bool = typer.Option(False, "--sources", help="one `key: value  # origin` line per value "
                                 "(default, demo, file, flag or --set)"),
) -> None:
    """Print the resolved configuration (defaults < demo profile < file < flags < --set) as YAML."""
    flags = {k: v for k, v in locals().items() if k in FLAG_KEYS}
    if not sources:
        typer.echo(config_to_yaml(config_from_cli(config, sets, plugins, recipe, **flags)), nl=False)
        return
    overrides = {FLAG_KEYS[k]: v for k, v in flags.items() if v is not None}
    names = plugin_names(plugins)
    if names:
        overrides["plugins"] = names
    try:
        cfg, origin = resolve_config_with_sources(_config_or_recipe(config, recipe), overrides, sets)
    except ConfigError as exc:
        fail(str(exc))
    typer.echo(format_sources(cfg, origin), nl=False)
