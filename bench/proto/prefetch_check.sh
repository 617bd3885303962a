#!/bin/bash
# Device call of 2026-11-29 (fourth session): each GPTQ launch asks L2 for the next linear's first bytes
# (`gptq_matmul(prefetch=)`, `use_kernels(prefetch_next=)`): (1) a dependent 4-layer chain per setting at M = 1 and 16,
# same bits; (2) the whole random 70B's decode steps per setting (`prefetch_ab.py`). Run with prefetch_proto.patch applied.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout ${T1:-200} python3 bench/proto/prefetch_ab.py --out $OUT --no-model ${CHAIN_ARGS} 2>&1 | grep -v Warning | tee $OUT/prefetch_chain.log
timeout ${T2:-330} python3 bench/proto/prefetch_ab.py --out $OUT --no-chain --tag prefetch_model ${MODEL_ARGS:---branches main} 2>&1 | grep -v Warning | tee $OUT/prefetch_model.log
