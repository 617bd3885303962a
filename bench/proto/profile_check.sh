#!/bin/bash
# Device call of 2026-11-29 (fourth session): where a decode step's time goes now (per kind, per GPTQ shape, the gaps
# between launches; `bench/profile_decode_gpu.py`), and what a launch of the batch-1 kernels' shape costs before it
# moves any bytes (`bench/proto/launch_floor.py`).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout 100 python3 bench/proto/launch_floor.py --out $OUT 2>&1 | grep -v Warning | tee $OUT/launch_floor.log
timeout 400 python3 bench/profile_decode_gpu.py --out $OUT --branches ${BRANCHES:-main gptq-4bit-128g-actorder_True gptq-3bit-128g-actorder_True} 2>&1 | grep -v Warning | tee $OUT/profile_decode.log
