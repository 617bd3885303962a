#!/bin/bash
# Device call prepared on 2026-11-29 (second session) after the ninth run; ran in the third session (results:
# ncu_mma_balance_NVIDIA_H200.txt, mma_regs_NVIDIA_H200.json: the spread is real, register caps lose everywhere).
# Aimed at batch 16, whose remaining gap is the fragment kernel's small matmuls: q/k/v and o at 16 rows reach 28-34% of DRAM bandwidth with the SMs busy for only 71-76% of their elapsed cycles
# (ncu_mma_16rows_NVIDIA_H200.txt). Two questions, one call:
# (1) Is it per-SM imbalance (400 programs of q/k/v on 132 SMs: a few SMs hold a fourth program, and the split-K
#     finisher runs last on some)? Nsight Compute's per-SM spread of active cycles (min / avg / max) says.
# (2) Does more occupancy help? Register caps (maxnreg 96: 5 programs of 4 warps per SM instead of 4, 80: 6; CPU
#     cross-compile: 17-18 and 31-39 spilled loads/stores at 4 bits) against split-K for 3-8 programs per SM.
# Then the CUDA tests. Repository root, fastcore in .whl/ (carry [".whl"]).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
NCU_SET=mma timeout 120 ncu --clock-control none --kernel-name regex:'mma' \
  --metrics sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max,gpu__time_duration.sum \
  python3 bench/proto/ncu_targets.py > $OUT/ncu_mma_balance.txt 2>&1
grep -E "^  _mma|sm__cycles|gpu__time" $OUT/ncu_mma_balance.txt | head -48
timeout 200 python3 bench/proto/gemv_launch_sweep.py --m 16 --regs 96,80 --branches 4:128,3:128 --shapes qkv,o --deadline 170 \
  --workers 14 --out $OUT > $OUT/mma_regs.log 2>&1
grep -E " best | default |Error" $OUT/mma_regs.log
timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -1
