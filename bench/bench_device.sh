#!/bin/bash
# One device run of `qllama bench`: install the carried wheels, compile ExLlamaV2's extension in the background,
# run the CUDA-graph checks, then the benchmark. Usage (from the repository root, on the GPU machine):
#   bash bench/bench_device.sh BRANCHES TAG [extra qllama bench arguments]
# Logs and JSON records go to $OUT (or bench/results).
OUT=${OUT:-bench/results}
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/exl .whl/*.whl || exit 1
export PYTHONPATH=/tmp/exl:$PWD PATH=/tmp/exl/bin:$PATH PYTHONUNBUFFERED=1 MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0a
SRC=/tmp/exl/exllamav2/exllamav2_ext
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv
python3 -m qllama.bench --build-exllama --exllama-src $SRC > $OUT/exllama_build.log 2>&1 &
[ -n "$SKIP_GRAPH_CHECK" ] || python3 bench/graph_gpu.py 2>&1 | tee $OUT/graph_gpu.log
python3 -m qllama.bench --branches "$1" --exllama-src $SRC --out $OUT --tag "$2" "${@:3}" 2>&1 | tee $OUT/bench.log
