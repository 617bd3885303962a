#!/bin/bash
# Next device call, prepared on 2026-11-29 after the seventh run (its device time was spent): the fragment kernel
# (3-16 rows) is what stands between batch 16 and 1.3x the batch-1 step (43-59% of its weight floor). (1) Its 16-row
# launch sweep on the three branches the first sweep left out (4-bit 32g, 3-bit no group, 3-bit 128g: the rule was
# read from main, 4-bit 128g and 3-bit 32g); (2) Nsight Compute on it at 16 rows, all four joined shapes, 4-bit and
# 3-bit 128g (stall reasons, occupancy, DRAM throughput); (3) the CUDA tests. Repository root, fastcore in .whl/.
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 240 python3 bench/proto/gemv_launch_sweep.py --m 16 --branches 4:32,3:-1,3:128 --deadline 200 --workers 14 --out $OUT > $OUT/mma_sweep.log 2>&1
grep " best " $OUT/mma_sweep.log
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
NCU_SET=mma timeout 150 ncu --clock-control none --kernel-name regex:'mma' $S python3 bench/proto/ncu_targets.py > $OUT/ncu_mma.txt 2>&1
grep -E "^  _|Duration|DRAM Throughput|Registers Per|Achieved Occ|Issued Warp|No Eligible|Grid Size|Waves" $OUT/ncu_mma.txt | head -80
timeout 200 python3 -m pytest -q tests/test_gptq_matmul.py tests/test_kernels.py -k cuda -x 2>&1 | tail -2
