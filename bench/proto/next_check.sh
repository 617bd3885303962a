#!/bin/bash
# Device call prepared on 2026-11-29 (no device time left that day): the decode options A/B on the whole 70B
# (bench/proto/decode_ab.py: attn_out_sorted, permuted-norm chunks, SwiGLU in down's copy, adds in the next norm, norms writing fragment order), then the fragment
# kernel's launch sweep at M = 16 (bench/proto/gemv_launch_sweep.py --m 16). Repository root, fastcore in .whl/.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
timeout 330 python3 bench/proto/decode_ab.py --branches main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True --out $OUT > $OUT/decode_ab.log 2>&1; tail -7 $OUT/decode_ab.log
timeout 240 python3 bench/proto/gemv_launch_sweep.py --m 16 --branches 4:-1,4:128,3:32 --deadline 200 --workers 14 --out $OUT > $OUT/mma_sweep.log 2>&1
grep " best " $OUT/mma_sweep.log
