#!/bin/bash
# 2026-11-29 (seventh session). (1) The early-launch wait returning 0, added to x's addresses (`_wait_before`), against
# the bare `gdc_wait` of commit 7051a2b: the whole random 70B's decode steps (`l2_pf.py --model --model-knob pdl
# --settings auto`), the two versions in alternating processes. (2) The fragment kernel launched early on one layer's
# linear only (`EARLY_LAUNCH` kinds 'mma:qkv', 'mma:o', 'mma:gate_up'), in one process: needs
# bench/proto/early_layer_proto.patch applied (measured slower, not kept); NO_KINDS=1 skips it.
# Repository root, GPU machine, wheels in .whl/
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/w .whl/fastcore*.whl 2>/dev/null
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r qllama /tmp/old/ && git show ${OLD:-7051a2b}:qllama/gptq_matmul.py > /tmp/old/qllama/gptq_matmul.py && ln -s $PWD/nbs /tmp/old/nbs   # fixtures
for r in ${ROUNDS:-1 2}; do
  for v in old new; do
    [ $v = old ] && P=/tmp/w:/tmp/old:$PWD/bench || P=/tmp/w:$PWD:$PWD/bench
    PYTHONPATH=$P timeout 200 python3 bench/proto/l2_pf.py --out $OUT --model --model-knob pdl --model-branches ${BR:-main} \
      --settings auto --reps 1 --tag wait_ab_${v}_$r 2>&1 | grep "step ms" | sed "s/^/$v $r: /"
  done
done
[ -n "${NO_KINDS:-}" ] && exit 0
PYTHONPATH=/tmp/w:$PWD:$PWD/bench timeout ${T2:-300} python3 bench/proto/l2_pf.py --out $OUT --model --model-knob pdl --model-branches ${BR:-main} \
  --settings "${SETTINGS:-auto;gemv+mma:qkv;gemv+mma:o;gemv+mma:gate_up}" --reps ${REPS:-2} --tag ${TAG:-pdl_layer_model} 2>&1 | tail -4
