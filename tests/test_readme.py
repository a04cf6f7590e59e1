"""The README's Python examples run as written (the training example is exercised by tests/engine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int) -> None:
    code = BLOCKS[index]
    if "Trainer(cfg).fit()" in code:  # heavy: run only the group part of that example
        code = code.split("from equireg.config")[0]
    exec(compile(code, f"README block {index}", "exec"), {"__name__": "readme_example"})
