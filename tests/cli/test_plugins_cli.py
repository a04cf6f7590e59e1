"""The documented plug-in examples train from the command line with ``--plugins`` and default settings, the run
records its plug-ins so ``equireg eval`` works on it later, and a missing plug-in module is bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from equireg.cli.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
runner = CliRunner()
# only what the test needs to be fast; everything else (heads, views, λ, layer, ...) stays at its default
FAST = ["--set", "data.name=synthetic", "--set", "data.kwargs={num_samples: 96}", "--set", "data.train_subset=64",
        "--set", "data.probe_train_size=32", "--set", "data.test_size=32", "--set", "optim.batch_size=16",
        "--steps", "2", "--set", "train.device=cpu", "--set", "eval.probe_epochs=3", "--set", "eval.equiv_images=8"]


def _example(doc: str, marker: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), flags=re.S) if marker in b)


@pytest.fixture
def registries_restored():  # type: ignore[no-untyped-def]
    from equireg.backbones.factory import BACKBONES
    from equireg.equivariance import EQUIV_LOSSES
    from equireg.objectives import OBJECTIVES

    saved = [(r, dict(r._factories)) for r in (BACKBONES, EQUIV_LOSSES, OBJECTIVES)]
    yield
    for registry, factories in saved:
        registry._factories.clear()
        registry._factories.update(factories)


@pytest.mark.parametrize(("doc", "marker", "flag"), [
    ("backbones.md", '@register_backbone("tiny_convnet")', ["--backbone", "tiny_convnet"]),
    ("objectives.md", '@register_objective("byol_lite")', ["--objective", "byol_lite"]),
    ("comparison.md", '@register_equiv_loss("mine")', ["--equiv", "mine"]),
])
def test_documented_plugin_trains_from_the_cli_and_evaluates_later(
    doc: str, marker: str, flag: list[str], tmp_path: Path, registries_restored: None
) -> None:
    module = tmp_path / f"plugin_{Path(doc).stem}.py"
    module.write_text(_example(doc, marker))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--plugins", str(module), *flag, "--run-dir", str(run), "--no-eval", *FAST])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["plugins"] == [str(module)]
    evaluated = runner.invoke(app, ["eval", "linear", str(run)])
    assert evaluated.exit_code == 0, evaluated.output
    assert (run / "eval" / "linear.json").is_file()


def test_missing_plugin_module_is_bad_input(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--plugins", "no_such_plugin_module", "--run-dir", str(run), *FAST])
    assert result.exit_code == 2 and "plug-in module 'no_such_plugin_module' not found" in result.output
    assert not run.exists()


def test_the_environment_variable_names_plugins_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    registries_restored: None) -> None:
    module = tmp_path / "plugin_env.py"
    module.write_text(_example("backbones.md", '@register_backbone("tiny_convnet")'))
    monkeypatch.setenv("EQUIREG_PLUGINS", f" {module} ,")  # spaces and empty entries are ignored
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--backbone", "tiny_convnet", "--run-dir", str(run), "--no-eval", *FAST])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["plugins"] == [str(module)]
    monkeypatch.delenv("EQUIREG_PLUGINS")
    assert runner.invoke(app, ["eval", "linear", str(run)]).exit_code == 0  # the run's record is enough
