"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one file run in order in one namespace (a later block may use an earlier one's names), in a scratch
directory, with training cut to one step (``Trainer.fit`` stops after step 1) so examples that train stay fast.
Whatever an example registers is removed afterwards. API summaries that are not runnable are ```text blocks; an
example that needs data from outside (an ImageNet folder) is introduced by an ``<!-- example needs ...: TEST runs
it ... -->`` comment naming the test that runs it on generated data, and is skipped here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- example needs [^>]*-->\n)?```python\n(.*?)```", flags=re.S)
WITH_EXAMPLES = [f for f in FILES if BLOCK.search(f.read_text())]


def _registries() -> list:
    from equireg.augment import VIEW_POLICIES
    from equireg.backbones.factory import BACKBONES
    from equireg.data import DATASETS
    from equireg.equivariance import EQUIV_LOSSES
    from equireg.evaluation import CORRUPTIONS
    from equireg.groups import GROUPS
    from equireg.objectives import OBJECTIVES

    return [VIEW_POLICIES, BACKBONES, DATASETS, EQUIV_LOSSES, CORRUPTIONS, GROUPS, OBJECTIVES]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from equireg.engine import Trainer

    original_fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, stop_after=None: original_fit(self, stop_after=1))
    monkeypatch.chdir(tmp_path)
    registries = _registries()
    saved = [dict(r._factories) if hasattr(r, "_factories") else dict(r) for r in registries]
    yield
    for registry, factories in zip(registries, saved):
        target = registry._factories if hasattr(registry, "_factories") else registry
        target.clear()
        target.update(factories)


def test_every_documentation_file_with_python_is_collected() -> None:
    names = {f.name for f in WITH_EXAMPLES}
    assert {"README.md", "backbones.md", "objectives.md", "comparison.md", "plugins.md"} <= names


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in WITH_EXAMPLES])
def test_python_examples_run(path: Path, isolated: None) -> None:
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for index, (elsewhere, code) in enumerate(BLOCK.findall(path.read_text())):
        if elsewhere:
            test_file = ROOT / re.search(r"(tests/\S+\.py)", elsewhere).group(1)  # type: ignore[union-attr]
            assert test_file.is_file() and path.name in test_file.read_text(), elsewhere
            continue
        exec(compile(code, f"{path.name} example {index + 1}", "exec"), namespace)
