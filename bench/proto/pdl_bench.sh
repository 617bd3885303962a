#!/bin/bash
# The twelfth full run (2026-11-29, sixth session), with the batch-1 kernel launched early (PDL) behind the norms and attention: the GPU
# tests of the early launch and the 70B shapes while ExLlamaV2 compiles, then
# `qllama bench` on all six branches with its baselines. Repository root, GPU machine, wheels carried in .whl/.
source bench/proto/exllama_env.sh                                  # wheels, environment, ExLlamaV2 compiling ($B, $SRC)
timeout 240 python3 -m pytest -q tests/test_gptq_matmul.py -k "cuda_early or cuda_70b" 2>&1 | tail -2
wait $B; tail -1 $OUT/exllama_build.log
timeout 330 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
