#!/usr/bin/env bash
# The device session (benchmarks/gpu_session.py) with what the device lacks: the wheels of the
# notebook stack and Fashion-MNIST, carried in .carry/ (fill it here with
# benchmarks/gpu_carry.sh). On the device, as the device tool's one `run` call:
#   bash benchmarks/gpu_session.sh                      (carry: [".carry"], timeout_s: 600)
# On a CPU, the same code at toy size (tests/test_gpu_session.py):
#   bash benchmarks/gpu_session.sh --device cpu --tiny --out DIR
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=${BPRIOR_CARRY:-.carry}
PYTHON=${PYTHON:-python3}
if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/bprior-site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/bprior-site
fi
if [ -d "$CARRY/fashion-mnist" ]; then
  BPRIOR_DATA="$(cd "$CARRY/fashion-mnist" && pwd)"
  export BPRIOR_DATA
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_session.py "$@"
