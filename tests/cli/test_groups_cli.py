"""`equireg --version`, `groups list` and `groups check` through typer's runner."""

from __future__ import annotations

from typer.testing import CliRunner

from equireg import __version__
from equireg.cli.main import app

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    assert runner.invoke(app, ["--help"]).exit_code == 0


def test_groups_list_and_check() -> None:
    listed = runner.invoke(app, ["groups", "list"])
    assert listed.exit_code == 0 and "p4m" in listed.output and "scale" in listed.output
    checked = runner.invoke(app, ["groups", "check", "p4m"])
    assert checked.exit_code == 0 and "associativity" in checked.output and "FAIL" not in checked.output


def test_groups_check_unknown_name_exits_2() -> None:
    result = runner.invoke(app, ["groups", "check", "p6"])
    assert result.exit_code == 2
