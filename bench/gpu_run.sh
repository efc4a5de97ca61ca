#!/bin/bash
# On a GPU machine with the offline bundle unpacked in /tmp/site (see bench/RESULTS.md):
#   bash bench/gpu_run.sh compare [bench_gpu.py args]   # raw vLLM vs the whole pipeline, same pages
#   bash bench/gpu_run.sh raw [bench_gpu.py args]       # raw vLLM only (engine settings, resolutions)
#   bash bench/gpu_run.sh engine                        # bench_engine.py: questions each vs together
#   bash bench/gpu_run.sh e2e                           # docintel run on a mixed corpus
# TAG names the result files; logs and JSON go to $OUT (or ./bench-out).
set -uo pipefail
OUT=${OUT:-./bench-out}; mkdir -p "$OUT"; TAG=${TAG:-run}
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 TEKKEN_SRC=$PWD/.gpu/tekken.json PYTHONUNBUFFERED=1
[ -f /tmp/full/params.json ] || python3 -m pipeline.cli demo-model /tmp/full --full >/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
what=${1:-compare}; shift || true
case "$what" in
  compare|raw|pipeline)
    python3 bench/bench_gpu.py "$what" --model /tmp/full --work /tmp/bench_gpu --out "$OUT/$TAG.json" "$@" \
      > "$OUT/$TAG.log" 2>&1; rc=$?
    grep -E '^\{' "$OUT/$TAG.log"; [ $rc = 0 ] || tail -30 "$OUT/$TAG.log" ;;
  engine)
    python3 bench/bench_engine.py --model /tmp/full --pages "${PAGES:-48}" --questions 4 \
      --out "$OUT/bench_engine.json" 2>&1 | tee "$OUT/bench_engine.log" | grep -E '^\{|Error|error' ;;
  e2e)
    python3 -c "import sys; sys.path.insert(0, 'tests'); from docgen import make_corpus; from pathlib import Path; \
      [make_corpus(Path(f'/tmp/corpus/{i}')) for i in range(6)]"
    python3 -m pipeline.cli run jobs/docvqa.yaml --input /tmp/corpus --output "$OUT/out" --model /tmp/full \
      --set ray.progress_bars=false 2>&1 | tee "$OUT/e2e.log" | grep -vE "^\(|INFO|WARNING" | tail -40 ;;
esac
