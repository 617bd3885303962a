#!/bin/bash
# Device call of 2026-11-29 (second session): RoPE moved into the decode attention kernel (`use_kernels(...,
# rope_in_attention=True)`) and down's fragment-kernel launch folds its scales at 128g (8 warps, 2 programs per SM).
# (1) the CUDA tests: the matmul's at the 70B shapes, every kernel test (attention with RoPE at the 70B's heads
# included); (2) the whole-model check (2 layers of 70B width, kernels vs torch reference) on all six branches;
# (3) the A/B of rope_in_attention on the whole random 70B (CUDA graphs, `norope` vs `all`, 3 alternations).
# Repository root, fastcore in .whl/.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
timeout 120 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -1
timeout 120 python3 -m pytest -q tests/test_kernels.py -x 2>&1 | tail -1
for bg in "4 -1" "4 128" "4 32" "3 -1" "3 128" "3 32"; do set -- $bg
  OUT=$OUT timeout 60 python3 bench/model_gpu.py --bits $1 --group-size $2 2>&1 | grep -E "layers of 70B|cosine|Error"
done
timeout 330 python3 bench/proto/decode_ab.py --out $OUT --branches main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True \
  --variants norope,all --reps 3 --tag decode_ab_rope 2>&1 | tail -4
