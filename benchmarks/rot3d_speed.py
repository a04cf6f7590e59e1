"""Speed of `equireg data make rot3d` on the default set (50 objects x (40 + 10) views, 64 px), 1 vs 2 workers.

The two configurations are interleaved, ``--repeats`` times each, and the medians reported: the render rate
(images written per second after the screen), the screen time and the whole command's wall time. The load
average is recorded around every measurement, since the machine is shared.

    python benchmarks/rot3d_speed.py --repeats 3 --out docs/results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from equireg.data.rot3d import Rot3dOptions, make_rot3d


def measure(workers: int, options: Rot3dOptions, scratch: Path) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        t0 = time.perf_counter()
        summary = make_rot3d(Path(tmp) / "set", options, workers=workers)
        wall = time.perf_counter() - t0
    return {"workers": workers, "wall_seconds": wall, "screen_seconds": summary.screen_seconds,
            "render_seconds": summary.render_seconds, "images": summary.num_images,
            "render_images_per_second": summary.images_per_second,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=None, help="folder for rot3d_speed.json")
    parser.add_argument("--scratch", type=Path, default=Path("runs"),
                        help="where the sets are written (file creation speed matters: /tmp was 20x slower here)")
    args = parser.parse_args()
    options = Rot3dOptions()
    args.scratch.mkdir(parents=True, exist_ok=True)
    rows = [measure(w, options, args.scratch) for _ in range(args.repeats) for w in args.workers]  # interleaved
    summary = {}
    for w in args.workers:
        mine = [r for r in rows if r["workers"] == w]
        summary[str(w)] = {k: statistics.median(r[k] for r in mine)
                           for k in ("render_images_per_second", "screen_seconds", "wall_seconds")}
    loads = [r[k] for r in rows for k in ("load_before", "load_after")]
    print(f"default set ({options.objects} objects x {options.train_views}+{options.test_views} views, "
          f"{options.size} px), medians of {args.repeats}; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    print("| workers | render img/s | screen s | whole command s |\n|---|---|---|---|")
    for w, s in summary.items():
        print(f"| {w} | {s['render_images_per_second']:.0f} | {s['screen_seconds']:.1f} | {s['wall_seconds']:.1f} |")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rot3d_speed.json").write_text(json.dumps({"medians": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
