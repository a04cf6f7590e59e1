"""benchmarks/centred_scores.py on a finished tiny bench: the same places are re-scored with the centred cosine,
the bench folder is left as it was, and the table and contrasts come out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from equireg.bench import BenchSpec, run_bench
from bench.test_bench_runner import TINY_BASE
from equireg.bench.runner import RESULT_FILE

from .test_gpu_smoke import _load


def test_centred_scores_rescore_the_same_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    spec = BenchSpec.model_validate({"name": "tiny", "base": TINY_BASE, "layers": [2], "objectives": ["moco"],
                                     "methods": ["none", {"ser": {"equiv": {"kwargs": {"proj_dim": 8}}}}],
                                     "seeds": [0], "groups": ["p4m"], "evaluate": ["linear", "equivariance"]})
    out = tmp_path / "bench"
    run_bench(spec, out, write_reports=False, log=lambda message: None)
    before = {p: p.read_text() for p in (out / "cells").glob(f"*/{RESULT_FILE}")}
    module = _load("centred_scores")
    monkeypatch.setattr(sys, "argv", ["centred_scores.py", str(out), "ser@2:none@2", "--out", str(tmp_path / "c.md")])
    module.main()
    text = (tmp_path / "c.md").read_text()
    assert "centred cosine" in text and "| ser@2 − none@2 | 1 |" in text
    assert {p: p.read_text() for p in before} == before  # the bench's own results are untouched
    raw = json.loads(next(iter(before.values())))
    cell = out / "cells" / raw["cell"]
    centred = module.centred(raw, cell, None)
    assert set(centred["equivariance"]) == set(raw["equivariance"])
    assert centred["equivariance"] != raw["equivariance"]  # the offset removed changes the cosines
    assert capsys.readouterr().out.strip() == text.strip()  # printed as written
