#!/usr/bin/env bash
# Items 1-5 of benchmarks/run.py on one CUDA GPU with bf16 autocast; prints the table, writes the report.
# Installs nothing and needs no network (random weights only). About 3-5 minutes on one H200.
#
#   benchmarks/gpu.sh                              # report: benchmarks/RESULTS-cuda.md
#   benchmarks/gpu.sh --out "$OUT/RESULTS-cuda.md" # any run.py option passes through (--quick, --only ...)
#   PYTHON=/path/to/python benchmarks/gpu.sh       # a Python that has torch (CUDA) and open_clip
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in .venv/bin/python python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch, open_clip" >/dev/null 2>&1; then
      python="$candidate"
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "gpu.sh: no Python with torch and open_clip found (tried .venv/bin/python, python3, python);" \
    "set PYTHON=/path/to/python" >&2
  exit 2
fi
if ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: $python has torch $("$python" -c 'import torch; print(torch.__version__)') but sees no CUDA GPU" >&2
  exit 2
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false  # never reach for the network
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec "$python" benchmarks/run.py --device cuda --out benchmarks/RESULTS-cuda.md "$@"
