#!/bin/bash
# One device call after the decode options went on by default and the fragment kernel's launches changed
# (bench/proto/decode_ab.py, gemv_launch_sweep.py --m 16): the CUDA tests and the kernel benchmark while ExLlamaV2
# compiles on 8 cores, then `qllama bench` on all six branches with its baselines. Repository root, GPU machine,
# wheels carried in .whl/.
source bench/proto/exllama_env.sh                                  # wheels, environment, ExLlamaV2 compiling ($B, $SRC)
[ -n "$NO_TESTS" ] || timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py tests/test_kernels.py -k cuda -x 2>&1 | tail -2
[ -n "$NO_KERNEL_BENCH" ] || timeout 150 python3 bench/gptq_matmul_gpu.py --no-baselines --out $OUT > $OUT/gptq_matmul.log 2>&1; echo "kernel bench rc=$?"
[ -n "$NO_KERNEL_BENCH" ] || grep -v "^{" $OUT/gptq_matmul.log | grep -E "^ *(main|gptq).* (1|16) " | grep -v "\[dot\]" | head -30
wait $B; tail -1 $OUT/exllama_build.log
timeout 320 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
