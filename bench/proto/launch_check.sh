#!/bin/bash
# One device call after the M = 1 launch change (bench/proto/gemv_launch_sweep.py): the launcher against its old
# choice per shape (--confirm), `qllama bench` on all six branches with its baselines (ExLlamaV2 compiled meanwhile
# on 8 cores), then the CUDA tests. Repository root, GPU machine, wheels carried in .whl/ (bench/bench_device.sh).
source bench/proto/exllama_env.sh                                  # wheels, environment, ExLlamaV2 compiling ($B, $SRC)
timeout 170 python3 bench/proto/gemv_launch_sweep.py --confirm --out $OUT > $OUT/confirm.log 2>&1; grep "layer x 80\|Error" $OUT/confirm.log
wait $B; tail -1 $OUT/exllama_build.log
timeout 310 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
timeout 80 python3 -m pytest -q tests/test_gptq_matmul.py tests/test_kernels.py -k cuda -x 2>&1 | tail -2
