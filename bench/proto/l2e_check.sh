#!/bin/bash
# 2026-11-29 (seventh session): an early batch-1 launch asks L2 for its next steps before it waits (`EARLY_L2`, `pfe`):
# the memory is idle while the norm or attention before it runs. The GPU tests of the same bits (early launch with
# the wait feeding x's addresses, and `pfe`), then the whole random 70B under each 'qkv/o/gate_up' MiB setting in one
# process (`l2_pf.py --model --model-knob l2e`). Needs bench/proto/early_l2_proto.patch applied (measured slower, not kept).
# Repository root, GPU machine, wheels in .whl/
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/w .whl/fastcore*.whl 2>/dev/null
export PYTHONPATH=/tmp/w:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
[ -z "${NO_TESTS:-}" ] && timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py -k "cuda_early" 2>&1 | tail -3
timeout ${T2:-480} python3 bench/proto/l2_pf.py --out $OUT --model --model-knob l2e --model-branches ${BR:-main} \
  --settings "${SETTINGS:-0/0/0;0/32/0;10/32/8;10/32/16;0/12/0}" --reps ${REPS:-2} --tag ${TAG:-l2e_model} 2>&1 | tail -8
