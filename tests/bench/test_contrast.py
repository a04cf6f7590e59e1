"""Paired contrasts between two arms of a bench folder: the arithmetic by hand, layer-k scores only at one layer,
and ambiguous or empty arms as one-line errors (exit 2 from the CLI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from equireg.bench.contrast import Arm, ContrastError, contrast, contrast_table
from equireg.bench.report import load_results, rows_from_results
from equireg.cli.main import app
from .test_report import fake_result, write_cells


def two_layer_bench(tmp_path: Path) -> Path:
    out = tmp_path / "bench"
    write_cells(out, [fake_result("none", s, 75.0) for s in range(3)])
    # augself at layer 3 minus layer 4 per seed: 1, 2, 3 -> mean 2, sd 1, t(0.975, 2) = 4.303: [-0.48, +4.48]
    write_cells(out, [fake_result("augself", s, 76.0 + s, layer=3) for s in range(3)])
    write_cells(out, [fake_result("augself", s, 75.0, layer=4) for s in range(3)])
    return out


def test_contrast_pairs_seeds_and_computes_the_t_interval(tmp_path: Path) -> None:
    rows = rows_from_results(load_results(two_layer_bench(tmp_path)))
    result = contrast(rows, Arm.parse("augself@3"), Arm.parse("augself@4"))
    top1 = result.differences["top1"]
    assert result.seeds == 3 and top1 is not None
    assert top1.mean == pytest.approx(2.0)
    assert (top1.low, top1.high) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5), abs=1e-4)
    assert result.differences["equiv_mean"] is None and result.notes["equiv_mean"] == "scored at different layers"
    assert result.differences["equiv_fixed"] is not None  # the fixed place compares layers on one scale


def test_identical_arms_give_a_zero_width_zero(tmp_path: Path) -> None:
    rows = rows_from_results(load_results(two_layer_bench(tmp_path)))
    table = contrast_table(rows, [(Arm("augself", 4), Arm("none", 2))])
    assert "| augself@4 − none@2 | 3 | +0.00 [+0.00, +0.00] n.s." in table


@pytest.mark.parametrize("arms,message", [
    (("augself", "none"), "augself selects several cells for seed 0: name the layer"),
    (("ser@2", "none"), "ser@2 selects no finished cell (methods here: augself, none)"),
    (("augself@x", "none"), "an arm is METHOD or METHOD@LAYER"),
])
def test_bad_arms_are_named(tmp_path: Path, arms: tuple[str, str], message: str) -> None:
    rows = rows_from_results(load_results(two_layer_bench(tmp_path)))
    with pytest.raises(ContrastError, match=re.escape(message)):
        contrast(rows, Arm.parse(arms[0]), Arm.parse(arms[1]))


def test_cli_writes_the_table_and_refuses_a_bad_pair_in_one_line(tmp_path: Path) -> None:
    out = two_layer_bench(tmp_path)
    ok = CliRunner().invoke(app, ["bench", "compare", str(out), "augself@3:augself@4", "--out", str(tmp_path / "c.md")])
    assert ok.exit_code == 0, ok.output
    assert "| augself@3 − augself@4 | 3 | +2.00 [−0.48, +4.48] n.s." in (tmp_path / "c.md").read_text()
    bad = CliRunner().invoke(app, ["bench", "compare", str(out), "augself@3"])
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0 and "a pair is A:B" in bad.output
