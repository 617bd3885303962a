#!/bin/bash
# Device call of 2026-11-29 (third session): SwiGLU in the batch-1 gate/up tail (`swiglu_in_tail`, one `silu_mul`
# launch fewer a layer at batch 1). (1) the kernel at the 70B gate/up shape, six branches: same bits as gate/up then
# silu_mul, and the time saved (`swiglu_tail_check.py`); (2) the whole random 70B with every decode option on, with and
# without it, three alternations (`decode_ab.py --variants notail,all`); (3) the CUDA tests of gptq_matmul.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout 90 python3 bench/proto/swiglu_tail_check.py --out $OUT 2>&1 | tee $OUT/swiglu_tail.log
timeout 330 python3 bench/proto/decode_ab.py --out $OUT --branches ${BRANCHES:-main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True} \
  --variants notail,all --reps 3 --tag decode_ab_tail 2>&1 | tee $OUT/decode_ab_tail.log | grep -v Warning
timeout 120 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -2
