#!/bin/bash
# Device call of 2026-11-29 (fourth session): gate/up's fragment kernel writing silu(gate) * up into down's fragment
# order at 3-16 rows (`swiglu_xa`, one copy launch fewer a layer at batch 16). (1) the MLP at the 70B shapes, six
# branches: down's output the same bits, and the time saved (`swiglu_xa_check.py`); (2) the whole random 70B with every
# decode option on, with and without it (`decode_ab.py --variants nosxa,all`); (3) the new test on the GPU.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
MS=${MS:-3,16} timeout 150 python3 bench/proto/swiglu_xa_check.py --out $OUT ${PARTS:+--parts} 2>&1 | grep -v Warn | tee $OUT/swiglu_xa.log
timeout 240 python3 bench/proto/decode_ab.py --out $OUT --branches ${BRANCHES:-main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True} \
  --variants nosxa,all --reps ${REPS:-2} --tag decode_ab_sxa 2>&1 | tee $OUT/decode_ab_sxa.log | grep -v Warning
timeout 60 python3 -m pytest -q tests/test_gptq_matmul.py -k "swiglu_in_fragment" 2>&1 | tail -2
