#!/bin/bash
# One device call after the M = 1 launch change (bench/proto/gemv_launch_sweep.py): the launcher against its old
# choice per shape (--confirm), `qllama bench` on all six branches with its baselines (ExLlamaV2 compiled meanwhile
# on 8 cores), then the CUDA tests. Repository root, GPU machine, wheels carried in .whl/ (bench/bench_device.sh).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/exl .whl/*.whl || exit 1
export PYTHONPATH=/tmp/exl:$PWD:$PWD/bench PATH=/tmp/exl/bin:$PATH PYTHONUNBUFFERED=1 MAX_JOBS=8 TORCH_CUDA_ARCH_LIST=9.0a
SRC=/tmp/exl/exllamav2/exllamav2_ext
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader; git log --oneline -1 | cut -c1-80
python3 -m qllama.bench --build-exllama --exllama-src $SRC > $OUT/exllama_build.log 2>&1 &
B=$!
timeout 170 python3 bench/proto/gemv_launch_sweep.py --confirm --out $OUT > $OUT/confirm.log 2>&1; grep "layer x 80\|Error" $OUT/confirm.log
wait $B; tail -1 $OUT/exllama_build.log
timeout 310 python3 -m qllama.bench --branches all --exllama-src $SRC --out $OUT --tag bench > $OUT/bench.log 2>&1; echo "bench rc=$?"
grep -v '^{' $OUT/bench.log | tail -9
timeout 80 python3 -m pytest -q tests/test_gptq_matmul.py tests/test_kernels.py -k cuda -x 2>&1 | tail -2
