#!/bin/bash
# One device call after the decode options went on by default and the fragment kernel's launches changed
# (bench/proto/decode_ab.py, gemv_launch_sweep.py --m 16): the CUDA tests and the kernel benchmark while ExLlamaV2
# compiles on 8 cores, then `qllama bench` on all six branches with its baselines. Repository root, GPU machine,
# wheels carried in .whl/.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/exl .whl/*.whl || exit 1
export PYTHONPATH=/tmp/exl:$PWD:$PWD/bench PATH=/tmp/exl/bin:$PATH PYTHONUNBUFFERED=1 MAX_JOBS=8 TORCH_CUDA_ARCH_LIST=9.0a
SRC=/tmp/exl/exllamav2/exllamav2_ext
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
python3 -m qllama.bench --build-exllama --exllama-src $SRC > $OUT/exllama_build.log 2>&1 &
B=$!
timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py tests/test_kernels.py -k cuda -x 2>&1 | tail -2
[ -n "$NO_KERNEL_BENCH" ] || timeout 150 python3 bench/gptq_matmul_gpu.py --no-baselines --out $OUT > $OUT/gptq_matmul.log 2>&1; echo "kernel bench rc=$?"
[ -n "$NO_KERNEL_BENCH" ] || grep -v "^{" $OUT/gptq_matmul.log | grep -E "^ *(main|gptq).* (1|16) " | grep -v "\[dot\]" | head -30
wait $B; tail -1 $OUT/exllama_build.log
timeout 320 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
