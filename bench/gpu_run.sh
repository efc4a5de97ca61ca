#!/bin/bash
# On a GPU machine with the offline bundle unpacked in /tmp/site (see bench/RESULTS.md):
#   bash bench/gpu_run.sh compare [bench_gpu.py args]   # raw vLLM vs the whole pipeline, same pages
#   bash bench/gpu_run.sh raw [bench_gpu.py args]       # raw vLLM only (engine settings, resolutions)
#   bash bench/gpu_run.sh engine                        # bench_engine.py: questions each vs together
#   bash bench/gpu_run.sh e2e                           # docintel run on a mixed corpus
#   bash bench/gpu_run.sh reader [reader_check.py args] # the tiny reader answers right on this stack
#   bash bench/gpu_run.sh parity [check_vllm_parity.py args]  # vLLM (bf16, patched) vs the torch reader
# TAG names the result files; logs and JSON go to $OUT (or ./bench-out).
# compare, raw and pipeline first run the reader's check (bench/reader_check.py, docvqa on GATE_PAGES
# held-out pages and their twins) on this machine and stack, and stop with exit 4 when it fails: a
# speed figure is never recorded from a stack that answers wrong. GATE=0 skips it (say so beside
# any figure it gives).
set -uo pipefail
OUT=${OUT:-./bench-out}; mkdir -p "$OUT"; TAG=${TAG:-run}
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
# the full tokenizer for the demo model: a bundle that keeps mistral_common's data needs nothing here
[ -f "$PWD/.gpu/tekken.json" ] && export TEKKEN_SRC=$PWD/.gpu/tekken.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
what=${1:-compare}; shift || true
case "$what" in compare|raw|pipeline|engine|e2e)
  [ -f /tmp/full/params.json ] || python3 -m pipeline.cli demo-model /tmp/full --full >/dev/null ;;
esac
reader_gate() {
  [ "${GATE:-1}" = 0 ] && { echo "reader gate skipped (GATE=0)"; return; }
  python3 bench/reader_check.py --out "$OUT/reader-gate" --tasks docvqa --pages "${GATE_PAGES:-24}" \
    > "$OUT/reader-gate.log" 2>&1; local rc=$?
  grep -E '^\{|reader check' "$OUT/reader-gate.log"
  [ $rc = 0 ] || { tail -30 "$OUT/reader-gate.log"; echo "no speed run: the reader check failed on this stack"; exit 4; }
}
case "$what" in
  reader)
    python3 bench/reader_check.py --out "$OUT/${TAG}" "$@" > "$OUT/$TAG.log" 2>&1; rc=$?
    grep -E '^\{|reader check' "$OUT/$TAG.log"; [ $rc = 0 ] || tail -30 "$OUT/$TAG.log"; exit $rc ;;
  parity)
    python3 tools/reader/check_vllm_parity.py --out "$OUT/$TAG.json" "$@" > "$OUT/$TAG.log" 2>&1; rc=$?
    tail -40 "$OUT/$TAG.log"; exit $rc ;;
  compare|raw|pipeline)
    reader_gate
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
