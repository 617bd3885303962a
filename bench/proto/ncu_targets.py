"""Launches for Nsight Compute: 4-bit 128g act-order, o (8192 -> 8192) and gate_up (8192 -> 57344) at M = 1
(fp16x2 kernel), gate_up at M = 16 (fragment kernel), each once (its first call: compile, then the profiled launch).
With `NCU_SET=mma`: the fragment kernel alone at M = 16 on all four joined shapes, 4-bit and 3-bit 128g;
`NCU_SET=gemv`: the fp16x2 kernel alone at M = 1 on the four shapes, 4-bit 128g.

    ncu --clock-control none --kernel-name regex:'gemv|mma' --launch-skip-before-match 0 --section ... \
        python3 bench/proto/ncu_targets.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import random_gptq, JOINED
dev = torch.device('cuda')
SET = os.environ.get('NCU_SET')
TARGETS = ([(b, s, 16) for b in (4, 3) for s in ('qkv', 'o', 'gate_up', 'down')] if SET == 'mma' else
           [(4, s, 1) for s in ('qkv', 'o', 'gate_up', 'down')] if SET == 'gemv' else
           [(4, 'o', 1), (4, 'gate_up', 1), (4, 'gate_up', 16)])
for bits, s, M in TARGETS:
    K, N = JOINED[s]
    p = gm.prepare(*random_gptq(K, N, bits, 128, dev), bits=bits, group_size=128)
    x = torch.randn(M, K, device=dev, dtype=torch.float16)
    print(bits, s, M, gm._launch_config(M, N, K, p, dev)[0], flush=True)
    gm.gptq_matmul(x, p, x_sorted=True); torch.cuda.synchronize()
