#!/usr/bin/env bash
# benchmarks/gpu_smoke.py on an offline GPU machine: optional venv from a local wheelhouse, a hard time limit.
#
#   benchmarks/gpu_smoke.sh                                     # the current python (equireg importable)
#   benchmarks/gpu_smoke.sh --wheelhouse /data/wheelhouse       # first make .venv-gpu from local wheels only
#   benchmarks/gpu_smoke.sh --timeout 480 --out smoke.json -- --max-batch 2048   # after --: gpu_smoke.py options
#   PYTHON=.venv/bin/python benchmarks/gpu_smoke.sh -- --dry-run                 # CPU rehearsal, tiny model
#
# How to fill the wheelhouse: docs/performance.md, "GPU smoke benchmark".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
wheelhouse="" venv="$repo/.venv-gpu" limit=480 out="gpu_smoke.json" python="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --timeout) limit="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown option $1 (gpu_smoke.py options go after --)" >&2; exit 2 ;;
  esac
done
if [ -n "$wheelhouse" ]; then
  [ -d "$wheelhouse" ] || { echo "gpu_smoke.sh: wheelhouse $wheelhouse is not a directory" >&2; exit 2; }
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --no-index --find-links "$wheelhouse" -e "$repo"
  python="$venv/bin/python"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
"$python" -c "import torch; print('torch', torch.__version__, '| CUDA build', torch.version.cuda, '| GPU available',
              torch.cuda.is_available())"
status=0
timeout --signal=INT --kill-after=30 "$limit" "$python" "$here/gpu_smoke.py" --out "$out" "$@" || status=$?
if [ "$status" = 124 ]; then
  echo "gpu_smoke.sh: stopped after $limit s (--timeout); raise it or lower gpu_smoke.py's --max-seconds" >&2
fi
exit "$status"
