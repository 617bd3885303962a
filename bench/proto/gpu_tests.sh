#!/bin/bash
# Every GPU test of the final code of a session (2026-11-29, seventh): the CUDA tests of tests/test_gptq_matmul.py and
# all of tests/test_kernels.py (on the GPU where one is present), and the whole-model check on all six branches (`bench/model_gpu.py`: 2 layers of 70B width, kernels against the torch
# reference, logits cosine and greedy tokens). Repository root, GPU machine, wheels in .whl/.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/w .whl/fastcore*.whl 2>/dev/null
export PYTHONPATH=/tmp/w:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader; git log --oneline -1 | cut -c1-80
timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda 2>&1 | tail -1
timeout 200 python3 -m pytest -q tests/test_kernels.py 2>&1 | tail -1
for bg in "4 -1" "4 128" "4 32" "3 -1" "3 128" "3 32"; do set -- $bg
  OUT=$OUT timeout 60 python3 bench/model_gpu.py --bits $1 --group-size $2 2>&1 | grep -E "cosine|Error" | tail -2
done
