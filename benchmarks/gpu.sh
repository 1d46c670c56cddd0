#!/usr/bin/env bash
# The GPU check in one go (at most 10 minutes on one GPU; installs nothing, needs no network, random weights):
#   1. the equivalence tests on CUDA (prompted encoders == open_clip, torch.equal);
#   2. one bf16-autocast training step per backbone (tiny, ViT-B-32, ViT-B-16; visual depth 0, 1, all) as a
#      fraction of the bf16 GEMM rate measured in the same run;
#   3. the evaluation row: JPEG files on disk -> scores (ViT-B-16, 3 grid crops, DataLoader workers) beside the
#      model alone and the data path alone (the decode-bound rate).
# Writes benchmarks/RESULTS-gpu.md (the table; the equivalence result as a note under it). Without CUDA it
# says so and exits 2 before doing anything.
#
#   benchmarks/gpu.sh                               # report: benchmarks/RESULTS-gpu.md
#   benchmarks/gpu.sh --out "$OUT/RESULTS-gpu.md"   # any run.py option passes through
#   PYTHON=/path/to/python benchmarks/gpu.sh        # a Python that has torch (CUDA), open_clip and pytest
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
  echo "gpu.sh: $python has torch $("$python" -c 'import torch; print(torch.__version__)') but sees no CUDA GPU;" \
    "nothing was run" >&2
  exit 2
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false  # never reach for the network
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

start=$SECONDS
# 1. equivalence on CUDA (about a minute)
set +e
equivalence=$(MMPIQA_TEST_DEVICE=cuda timeout 180 "$python" -m pytest tests/test_equivalence.py -q \
  -p no:cacheprovider -o addopts="" 2>&1)
equivalence_rc=$?
set -e
echo "$equivalence" | tail -5

# 2 + 3. training steps and the evaluation row (run.py writes the table); the rest of the 10 minutes at most
summary=$(echo "$equivalence" | tail -1)
note="Equivalence tests on CUDA (\`MMPIQA_TEST_DEVICE=cuda pytest tests/test_equivalence.py\`): exit status"
note="$note $equivalence_rc, $summary"
set +e
timeout $((570 - (SECONDS - start))) "$python" benchmarks/run.py --device cuda --only train,eval \
  --out benchmarks/RESULTS-gpu.md --note "$note" "$@"
bench_rc=$?
set -e
echo "gpu.sh: done in $((SECONDS - start)) s (equivalence rc=$equivalence_rc, benchmarks rc=$bench_rc)"
[ "$equivalence_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
