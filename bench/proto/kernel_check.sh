#!/bin/bash
# One device call: Nsight Compute on the decode kernels, the CUDA correctness tests, the kernel benchmark.
# Usage (repository root, GPU machine, fastcore carried in .whl/): bash bench/proto/kernel_check.sh
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats"
timeout 120 ncu --clock-control none --kernel-name regex:'gemv|mma' $S python3 bench/proto/ncu_targets.py > $OUT/ncu.txt 2>&1
grep -E "^  _|Duration|DRAM Throughput|Registers Per|Achieved Occ|Theoretical Occ|Issued Warp|No Eligible|Grid Size|Waves" $OUT/ncu.txt
st=smsp__warp_issue_stalled; m=""
for r in long_scoreboard short_scoreboard wait math_pipe_throttle lg_throttle mio_throttle not_selected selected barrier dispatch_stall no_instruction branch_resolving; do
  m="$m,${st}_${r}_per_warp_active.pct"; done
timeout 120 ncu --clock-control none --kernel-name regex:'gemv|mma' --metrics ${m:1} python3 bench/proto/ncu_targets.py > $OUT/ncu_stalls.txt 2>&1
grep -E "^  _|stalled" $OUT/ncu_stalls.txt | sed 's/smsp__warp_issue_stalled_//; s/_per_warp_active.pct//'
timeout 150 python3 -m pytest -q tests/test_gptq_matmul.py -k cuda -x 2>&1 | tail -3
timeout 300 python3 bench/gptq_matmul_gpu.py --no-baselines --out $OUT 2>&1 | tee $OUT/gm.log | tail -22
