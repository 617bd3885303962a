#!/bin/bash
# CUDA tests, then `qllama bench` on all six branches (ExLlamaV2 built meanwhile, CUDA-graph checks first).
# PF_CHECK=1 also runs bench/proto/pf_check.py (needs qllama/_old_gptq_matmul.py, see there).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout 120 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -2
[ -z "$PF_CHECK" ] || { timeout 150 python3 bench/proto/pf_check.py > $OUT/pf_check.log 2>&1; tail -7 $OUT/pf_check.log; }
OUT=$OUT timeout 330 bash bench/bench_device.sh all bench 2>&1 | grep -v '^{' | tail -12
