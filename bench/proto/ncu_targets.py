"""Launches for Nsight Compute: 4-bit 128g act-order, o (8192 -> 8192) and gate_up (8192 -> 57344) at M = 1
(fp16x2 kernel), gate_up at M = 16 (fragment kernel), each once (its first call: compile, then the profiled launch).

    ncu --clock-control none --kernel-name regex:'gemv|mma' --launch-skip-before-match 0 --section ... \
        python3 bench/proto/ncu_targets.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, JOINED
dev = torch.device('cuda')
for s, M in (('o', 1), ('gate_up', 1), ('gate_up', 16)):
    K, N = JOINED[s]
    p = gm.prepare(*random_gptq(K, N, 4, 128, dev), bits=4, group_size=128)
    x = torch.randn(M, K, device=dev, dtype=torch.float16)
    print(s, M, gm._launch_config(M, N, K, p, dev)[0], flush=True)
    gm.gptq_matmul(x, p, x_sorted=True); torch.cuda.synchronize()
