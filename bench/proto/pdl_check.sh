#!/bin/bash
# 2026-11-29 (sixth session): early launch (programmatic dependent launch) of q/k/v, o and gate/up behind the norm or
# attention before them. The GPU tests of the same bits (eager and graph), then the whole random 70B off against on in
# one process (`l2_pf.py --model --model-knob pdl`; its call with KNOB=pdl_down timed a trial since removed).
# Repository root, GPU machine, wheels in .whl/
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/w .whl/fastcore*.whl 2>/dev/null
export PYTHONPATH=/tmp/w:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
[ -z "${NO_TESTS:-}" ] && timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py -k "cuda_early" 2>&1 | tail -3
timeout ${T2:-420} python3 bench/proto/l2_pf.py --out $OUT --model --model-knob ${KNOB:-pdl} --model-branches ${BR:-main,4b32,3b128} \
  --settings "${SETTINGS:-off;auto}" --reps ${REPS:-2} --tag ${TAG:-pdl_model} 2>&1 | tail -8
