"""``equireg bench``: a YAML-specified matrix of runs (methods x layers x objectives x seeds x groups), trained and
evaluated cell by cell with resumable state, summarised as CSVs, a markdown table with 95% intervals over seeds and
paired differences to the baseline, and plots."""

from equireg.bench.report import load_results, markdown_table, rows_from_results, summarize, write_reports
from equireg.bench.runner import BenchSummary, run_bench, run_cell
from equireg.bench.spec import BenchSpec, Cell, MethodSpec, ObjectiveSpec, expand_cells, find_spec, load_spec
from equireg.bench.stats import Interval, mean_interval, paired_difference

__all__ = [
    "BenchSpec",
    "BenchSummary",
    "Cell",
    "Interval",
    "MethodSpec",
    "ObjectiveSpec",
    "expand_cells",
    "find_spec",
    "load_results",
    "load_spec",
    "markdown_table",
    "mean_interval",
    "paired_difference",
    "rows_from_results",
    "run_bench",
    "run_cell",
    "summarize",
    "write_reports",
]
