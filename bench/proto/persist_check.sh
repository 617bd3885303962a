#!/bin/bash
# 2026-11-29 (sixth session), three calls: the persistent batch-1 chain prototype (`persist.py`: four matmuls a layer, 8 layers, one
# launch, against one launch each), then the 4-bit 32g gate/up split at 16 rows; then PERSIST_ARGS="--flow --pf 0 --poll 0" NO_SPLIT=1
# and PERSIST_ARGS="--flow --pf none --poll 0,1" NO_SPLIT=1. Repository root, GPU machine, wheels in .whl/
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/w .whl/fastcore*.whl || exit 1
export PYTHONPATH=/tmp/w:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
timeout ${T1:-330} python3 bench/proto/persist.py --out $OUT ${PERSIST_ARGS:-} > $OUT/persist.log 2>&1; echo "persist rc=$?"
tail -${TAILN:-16} $OUT/persist.log
if [ -z "${NO_SPLIT:-}" ]; then
  timeout 150 python3 bench/proto/l2_pf.py --out $OUT --shapes --ms 16 --branches 4b32 --pfds 1 --only-variants \
    --variant gate_up:split_k=1 --variant gate_up:split_k=3 --tag l2_pf_4b32_split > $OUT/split.log 2>&1; echo "split rc=$?"
  tail -8 $OUT/split.log
fi
