#!/bin/bash
# Stream-K for the fragment kernel (2026-11-29, third session): A/B against split-K, per shape and branch at 16 rows
# (`stream_ab.py`), then the CUDA tests of gptq_matmul. Repository root, fastcore in .whl/. Not adopted (slower:
# `bench/results/stream_ab_NVIDIA_H200.json`); to run it again, on this machine first:
#   git show 680e631:qllama/gptq_matmul.py | sed 's/^from \.gptq import/from qllama.gptq import/' > bench/proto/gm_head.py
#   git apply bench/proto/stream_k_proto.patch          # the stream-K kernel, into qllama/gptq_matmul.py (680e631's)
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout 380 python3 bench/proto/stream_ab.py --out $OUT --branches ${BRANCHES:-all} --deadline 330 2>&1 | tee $OUT/stream_ab.log | grep -E "best|80 layers|MISMATCH|Error"
timeout 150 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -3
