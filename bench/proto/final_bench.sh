#!/bin/bash
# The thirteenth full run (2026-11-29, seventh session; the twelfth's kernels with the early-launch wait feeding x's
# addresses): the GPU tests of the early launch and the 70B shapes while ExLlamaV2 compiles, then `qllama bench` on
# all six branches with its baselines. PROFILE=1: instead, where a decode step's time goes now
# (`bench/profile_decode_gpu.py` on BRANCHES). Repository root, GPU machine, wheels carried in .whl/.
if [ -n "${PROFILE:-}" ]; then
  OUT=${OUT:-/tmp/out}; mkdir -p $OUT
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
  export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
  git log --oneline -1 | cut -c1-80
  timeout 500 python3 bench/profile_decode_gpu.py --out $OUT --tag ${TAG:-profile_decode_pdl} \
    --branches ${BRANCHES:-main gptq-3bit-128g-actorder_True} 2>&1 | grep -v Warning | tee $OUT/profile_decode.log
  exit 0
fi
exec bash bench/proto/pdl_bench.sh                                 # the twelfth run's steps, unchanged
