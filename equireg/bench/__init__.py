"""``equireg bench``: a YAML-specified matrix of runs (methods x layers x objectives x seeds x groups), trained and
evaluated cell by cell with resumable state, summarised as a CSV, a markdown table and plots."""

from equireg.bench.report import load_results, markdown_table, rows_from_results, write_reports
from equireg.bench.runner import BenchSummary, run_bench, run_cell
from equireg.bench.spec import BenchSpec, Cell, MethodSpec, ObjectiveSpec, expand_cells, find_spec, load_spec

__all__ = [
    "BenchSpec",
    "BenchSummary",
    "Cell",
    "MethodSpec",
    "ObjectiveSpec",
    "expand_cells",
    "find_spec",
    "load_results",
    "load_spec",
    "markdown_table",
    "rows_from_results",
    "run_bench",
    "run_cell",
    "write_reports",
]
