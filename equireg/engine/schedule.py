"""Warm-up + cosine schedules (learning rate, weight decay) as plain functions of the step."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, base: float, final: float, warmup: int = 0, start: float = 0.0) -> float:
    """Linear warm-up from ``start`` to ``base`` over ``warmup`` steps, then cosine from ``base`` to ``final``."""
    if total <= 0:
        raise ValueError(f"total steps must be positive, got {total}")
    if step < warmup:
        return start + (base - start) * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * t))
