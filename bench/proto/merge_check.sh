#!/bin/bash
# Device call of 2026-11-29 (second session), after the decode attention kernel learned to merge its own chunks
# (attention_kernels.MERGE_MAX = 4: no merge launch with <= 4 chunks): ExLlamaV2 compiling meanwhile, (1) every
# kernel test on the GPU, (2) the whole-model check on all six branches, (3) the A/B of the in-kernel merge on the
# whole random 70B (`nomerge` vs `all`, CUDA graphs, 3 alternations), (4) `qllama bench` on all six branches with
# its baselines. The matmul did not change since rope_check.sh / defaults_check.sh: its tests and benchmark are not
# rerun. Repository root, wheels in .whl/.
source bench/proto/exllama_env.sh                                  # wheels, environment, ExLlamaV2 compiling ($B, $SRC)
timeout 100 python3 -m pytest -q tests/test_kernels.py -x 2>&1 | tail -1
for bg in "4 -1" "4 128" "4 32" "3 -1" "3 128" "3 32"; do set -- $bg
  OUT=$OUT timeout 40 python3 bench/model_gpu.py --bits $1 --group-size $2 2>&1 | grep -E "cosine|Error"
done
timeout 200 python3 bench/proto/decode_ab.py --out $OUT --branches main,gptq-4bit-128g-actorder_True,gptq-3bit-32g-actorder_True \
  --variants nomerge,all --reps 3 --tag decode_ab_merge 2>&1 | tail -3
wait $B; tail -1 $OUT/exllama_build.log
timeout 240 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -7
