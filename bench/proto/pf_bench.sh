#!/bin/bash
# The eleventh full run (2026-11-29, fifth session), with the fragment kernel asking L2 ahead by default: the GPU tests
# of gptq_matmul (the prefetch's same-bits test, the 70B shapes, the unmasked splits) while ExLlamaV2 compiles, then
# `qllama bench` on all six branches with its baselines. Repository root, GPU machine, wheels carried in .whl/.
source bench/proto/exllama_env.sh                                  # wheels, environment, ExLlamaV2 compiling ($B, $SRC)
timeout 240 python3 -m pytest -q tests/test_gptq_matmul.py -k "cuda_l2 or cuda_70b or cuda_even" 2>&1 | tail -2
wait $B; tail -1 $OUT/exllama_build.log
timeout 330 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
