"""Paired contrasts between any two arms of one bench folder.

The report pairs every arm with the baseline. Some questions need another pair: a method decoupled at layer 3
against the same method coupled at layer 4, SER against the architecture control, SER against AugSelf at one
layer. ``contrast`` pairs two arms seed by seed (same objective and budget) and gives the mean difference A − B
with its 95% t-interval for every metric both arms measured. The layer-k equivariance score is compared only
when both arms were scored at the same layer (otherwise it measures two different maps); the fixed-place score
is comparable across layers by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from equireg.bench.report import budget_of, diff_metrics, metric_digits
from equireg.bench.stats import Interval, format_difference, paired_difference


class ContrastError(ValueError):
    """An arm that selects no cells, several cells per seed, or arms that share no seed and budget."""


@dataclass(frozen=True)
class Arm:
    """``method`` or ``method@layer`` (the training layer; the scored layer for the baseline)."""

    method: str
    layer: int | None = None

    @classmethod
    def parse(cls, text: str) -> Arm:
        method, _, layer = text.partition("@")
        if not method or (layer and not layer.isdigit()):
            raise ContrastError(f"an arm is METHOD or METHOD@LAYER (e.g. augself@3), got {text!r}")
        return cls(method, int(layer) if layer else None)

    def __str__(self) -> str:
        return self.method + (f"@{self.layer}" if self.layer is not None else "")

    def rows_by_seed(self, rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """(objective, seed) → the one row of this arm; several rows for one seed is an ambiguous arm."""
        mine = [r for r in rows if r["method"] == self.method
                and (self.layer is None or (r["layer"] if r["layer"] is not None else r["eval_layer"]) == self.layer)]
        if not mine:
            methods = sorted({r["method"] for r in rows})
            raise ContrastError(f"{self} selects no finished cell (methods here: {', '.join(methods)})")
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in mine:
            key = (row["objective"], row["seed"])
            if key in out:
                raise ContrastError(f"{self} selects several cells for seed {row['seed']}: name the layer, "
                                    f"e.g. {self.method}@{row['layer'] or row['eval_layer']}")
            out[key] = row
        return out


@dataclass(frozen=True)
class Contrast:
    a: Arm
    b: Arm
    seeds: int
    differences: dict[str, Interval | None]
    notes: dict[str, str]


def contrast(rows: list[dict[str, Any]], a: Arm, b: Arm) -> Contrast:
    """A − B per seed (same objective and budget), mean and 95% t-interval per metric."""
    left, right = a.rows_by_seed(rows), b.rows_by_seed(rows)
    pairs = [(left[k], right[k]) for k in sorted(left) if k in right and budget_of(left[k]) == budget_of(right[k])]
    if not pairs:
        raise ContrastError(f"{a} and {b} share no seed at the same objective and budget")
    differences: dict[str, Interval | None] = {}
    notes: dict[str, str] = {}
    for metric in diff_metrics(rows):
        if metric == "equiv_mean" and any(x["eval_layer"] != y["eval_layer"] for x, y in pairs):
            differences[metric], notes[metric] = None, "scored at different layers"
            continue
        measured = [(x[metric], y[metric]) for x, y in pairs if x[metric] is not None and y[metric] is not None]
        differences[metric] = paired_difference(*zip(*measured)) if measured else None
        notes[metric] = "" if measured else "not measured"
    return Contrast(a, b, len(pairs), differences, notes)


def contrast_table(rows: list[dict[str, Any]], pairs: list[tuple[Arm, Arm]]) -> str:
    """A markdown table: one line per pair, one column per metric (A − B [95% CI], bold when it excludes 0)."""
    metrics = diff_metrics(rows)
    results = [contrast(rows, a, b) for a, b in pairs]
    shown = [m for m in metrics if any(c.differences[m] is not None for c in results)]
    lines = ["| A − B | seeds | " + " | ".join(f"Δ {metrics[m]}" for m in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for c in results:
        cells = [format_difference(c.differences[m], metric_digits(m)) if c.differences[m] is not None
                 else (c.notes[m] or "–") for m in shown]
        lines.append(f"| {c.a} − {c.b} | {c.seeds} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Paired by seed (same objective and budget): mean of the per-seed differences A − B [95% t-interval]; "
                 "**bold** = the interval excludes 0, n.s. = it contains 0. An arm is METHOD@LAYER (the baseline: the "
                 "layer it was scored at).")
    return "\n".join(lines) + "\n"
