#!/bin/bash
# Device call after next_check.sh (2026-11-29, third session): next_check's ncu showed a 25% spread of active cycles
# between SMs for the fragment kernel's q/k/v (4-bit 128g: 400 programs on 132 SMs) and the register caps lose
# everywhere. (1) Is the spread the last partial wave? Time per tile against tiles, launches fixed
# (`balance_probe.py`, M = 16 and 1). (2) The same ncu per-SM spread for the batch-1 kernel (4-bit 128g, four shapes).
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/fastcore*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/bench PYTHONUNBUFFERED=1
timeout 330 python3 bench/proto/balance_probe.py --out $OUT --deadline 280 2>&1 | tee $OUT/balance_probe.log | tail -80
NCU_SET=gemv timeout 100 ncu --clock-control none --kernel-name regex:'gemv' \
  --metrics sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max,gpu__time_duration.sum,launch__grid_size,launch__occupancy_limit_registers \
  python3 bench/proto/ncu_targets.py > $OUT/ncu_gemv_balance.txt 2>&1
grep -E "^  _gemv|sm__cycles|gpu__time|launch__" $OUT/ncu_gemv_balance.txt | head -40
