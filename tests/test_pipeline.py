"""Evaluation runs on the run's device unless told otherwise."""

from __future__ import annotations

from equireg.config import resolve_config
from equireg.pipeline import eval_device


def test_eval_device_follows_the_run() -> None:
    cfg = resolve_config(overrides={"train.device": "cpu"})
    assert eval_device(cfg).type == "cpu" and eval_device(cfg, "cpu").type == "cpu"
