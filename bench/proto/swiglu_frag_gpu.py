"""`tests/test_gptq_matmul.py::test_swiglu_in_fragment_kernel`'s cases on the GPU (the test file runs its tensors on the
CPU, under the interpreter): silu(gate) * up from the fragment kernel equals gate/up then `silu_mul` bit for bit, and
written into down's fragment order it gives down the same output.

    PYTHONPATH=.:tests python bench/proto/swiglu_frag_gpu.py
"""
import torch
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import gptq_matmul, prepare
from qllama.norm_kernels import silu_mul
from test_gptq_matmul import gptq_tensors

cases = [(4, 128, True, 3, {}), (3, -1, False, 16, dict(split_k=2)), (4, 32, False, 9, dict(fold=False)),
         (3, 128, True, 5, dict(fold=False, split_k=3)), (4, -1, True, 16, dict(num_warps=8)),
         (4, 128, False, 16, dict(split_k=1)), (3, 32, True, 7, dict(split_k=1, num_warps=8))]
ok = True
for bits, gs, sym, M, launch in cases:
    K, N = 416, 2 * 160
    t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, K, N, seed=N, sym=sym).items()}
    p = prepare(**t, bits=bits, group_size=gs, bias=torch.randn(N).half().cuda())
    d = prepare(**{k: v.cuda() for k, v in gptq_tensors(4, -1, N // 2, 64, seed=1).items()}, bits=4, group_size=-1)
    x = torch.randn(M, K).half().cuda()
    ref = silu_mul(gptq_matmul(x, p, **launch))
    same = torch.equal(gptq_matmul(x, p, swiglu_out=True, **launch), ref)
    fx = gptq_matmul(x, p, swiglu_out=True, xa=gm.xa_target(M, d, x.device), **launch)
    down = isinstance(fx, gm.FragmentX) and torch.equal(gptq_matmul(fx, d), gptq_matmul(ref, d))
    print(bits, gs, sym, M, launch, 'swiglu_out', same, 'into down', down, flush=True)
    ok &= same and down
print('all the same bits' if ok else 'MISMATCH')
