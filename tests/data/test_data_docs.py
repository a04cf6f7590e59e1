"""The image-folder example of docs/data.md runs as written, on a tiny ImageNet-layout folder."""

from __future__ import annotations

import re
from pathlib import Path

from imagefolders import write_classes

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def test_imagenet_folder_example_runs(tmp_path: Path) -> None:
    block = next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if "CropSpec(224)" in b)
    write_classes(tmp_path / "train", ["n01440764", "n01443537"], per_class=2, size=(40, 50))
    write_classes(tmp_path / "val", ["n01443537"], per_class=1, size=(40, 50))
    code = block.replace('"/data/imagenet"', repr(str(tmp_path))).replace("batches(64", "batches(2")
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/data.md example", "exec"), namespace)
    assert namespace["views"][0].shape == (2, 3, 224, 224)  # type: ignore[index]
    assert namespace["images"].shape == (1, 3, 224, 224)  # type: ignore[attr-defined]
