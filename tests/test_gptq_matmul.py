"""Heavier checks of `qllama.gptq_matmul`: more shapes, both layouts, every split, the error cases.

On a machine without a GPU the kernels run in Triton's interpreter (`make test-py` sets TRITON_INTERPRET=1;
it must be set before `qllama.gptq_matmul` is first imported). With a GPU, `test_cuda_*` also run compiled.
"""
import os
import pytest
import torch

if not torch.cuda.is_available(): os.environ.setdefault('TRITON_INTERPRET', '1')

from qllama.config import QuantConfig
from qllama.gptq import QuantLinear, quantize_rtn, unpack_rows, pack_cols
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import gptq_matmul, gptq_matmul_ref, group_order, prepare


def relerr(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()


def gptq_tensors(bits, gs, K, N, v2=False, act_order=True, seed=0):
    "AutoGPTQ tensors of a random weight, quantized round-to-nearest (act-order when grouped)."
    g = torch.Generator().manual_seed(seed)
    quant = QuantConfig(bits=bits, group_size=gs, desc_act=act_order and gs != -1,
                        checkpoint_format='gptq_v2' if v2 else 'gptq')
    perm = torch.randperm(K, generator=g) if quant.desc_act else None
    return quantize_rtn(torch.randn(N, K, generator=g), quant, perm=perm)


@pytest.mark.parametrize('gs', [-1, 32, 64, 128])
def test_group_order_undoes_act_order(gs):
    t = gptq_tensors(4, gs, 320, 16)
    perm = group_order(t['g_idx'], gs)
    if gs == -1: assert perm is None; return
    g = t['g_idx'].long()[perm.long()]
    assert torch.equal(g, torch.arange(320) // gs)
    q = unpack_rows(t['qweight'], 4).double()
    x = torch.randn(3, 320, dtype=torch.float64)
    torch.testing.assert_close(x[:, perm.long()] @ q[perm.long()], x @ q)   # the same sum, reordered


@pytest.mark.parametrize('bits,R', [(4, 16), (4, 8), (3, 8), (3, 16)])
def test_layout_holds_every_sorted_row(bits, R):
    K, N = 352, 24 if bits == 4 else 32
    t = gptq_tensors(bits, 32, K, N)
    p = prepare(**t, bits=bits, group_size=32, R=R)
    vpw = 32 // bits
    q = unpack_rows(t['qweight'], bits)[p.perm.long()]                     # sorted rows
    k = torch.arange(K)
    b, j, r = k // (vpw * R), k % (vpw * R) // R, k % R
    got = (p.qweight[b * R + r] >> (bits * j)[:, None]) & (2**bits - 1)
    assert torch.equal(got, q)
    assert p.qweight.shape[0] == -(-K // (vpw * R)) * R


CONFIGS = [(bits, gs, R) for bits in (4, 3) for gs in (-1, 32, 64, 128) for R in (8, 16)]

@pytest.mark.parametrize('bits,gs,R', CONFIGS)
def test_matches_reference(bits, gs, R):
    K, N = (416, 72) if bits == 4 else (416, 96)                         # 416 = 13*32: short last group at 64, 128
    t = gptq_tensors(bits, gs, K, N, seed=bits * 1000 + gs + R)
    bias = torch.randn(N).half()
    p = prepare(**t, bits=bits, group_size=gs, bias=bias, R=R)
    for M, launch in [(1, {}), (1, dict(split_k=3, prefetch=True)), (2, dict(split_k=2)), (70, {})]:
        x = torch.randn(M, K).half()
        ref = gptq_matmul_ref(x, **t, bias=bias, bits=bits)
        y = gptq_matmul(x, p, **launch)
        assert y.dtype == torch.float16 and y.shape == (M, N)
        assert relerr(y, ref) < 1e-2, (M, launch, relerr(y, ref))


@pytest.mark.parametrize('split_k', [1, 2, 5, 100])
def test_every_split_and_counters_reset(split_k):
    t = gptq_tensors(4, 32, 640, 40)
    p = prepare(**t, bits=4, group_size=32)
    x = torch.randn(1, 640).half()
    ref = gptq_matmul_ref(x, **t, bias=None, bits=4)
    for _ in range(2):                                                     # the second call reuses the counters
        assert relerr(gptq_matmul(x, p, split_k=split_k), ref) < 1e-2
    assert not gm._COUNTERS or all(int(c.abs().sum()) == 0 for c in gm._COUNTERS.values())


def test_v1_zero_of_sixteen():
    "AutoGPTQ v1 stores zero-1, so a stored 15 means a zero of 16 (the 4-bit wrap)."
    t = gptq_tensors(4, 32, 128, 16)
    t['qzeros'] = pack_cols(torch.full((4, 16), 15), 4)
    p = prepare(**t, bits=4, group_size=32)
    x = torch.randn(3, 128).half()
    for M in (1, 3):
        assert relerr(gptq_matmul(x[:M], p), gptq_matmul_ref(x[:M], **t, bias=None, bits=4)) < 1e-2


@pytest.mark.parametrize('bits', [4, 3])
def test_v2_zeros_and_static_groups(bits):
    t = gptq_tensors(bits, 64, 256, 32, v2=True, act_order=False)         # g_idx = i // 64: no permutation
    p = prepare(**t, bits=bits, group_size=64, v2=True)
    assert p.perm is None and p.zero_offset == 0
    x = torch.randn(5, 256).half()
    assert relerr(gptq_matmul(x, p), gptq_matmul_ref(x, **t, bias=None, bits=bits, v2=True)) < 1e-2


def test_leading_dims_noncontiguous_and_gather():
    t = gptq_tensors(4, 128, 256, 40)
    p = prepare(**t, bits=4, group_size=128)
    x = torch.randn(2, 3, 512).half()[..., ::2]                            # [2, 3, 256], column stride 2
    ref = gptq_matmul_ref(x, **t, bias=None, bits=4)
    for gather in (False, True):
        y = gptq_matmul(x, p, gather=gather)
        assert y.shape == (2, 3, 40) and relerr(y, ref) < 1e-2


def test_agrees_with_quantlinear():
    "The hookup for QuantLinear: prepare its buffers once, then gptq_matmul in forward."
    quant = QuantConfig(bits=4, group_size=32, desc_act=True)
    lin = QuantLinear(96, 48, quant)
    for k, v in gptq_tensors(4, 32, 96, 48).items(): getattr(lin, k).copy_(v)
    lin.bias.normal_()
    p = prepare(lin.qweight, lin.qzeros, lin.scales, lin.g_idx, lin.bits, quant.group_size, bias=lin.bias, v2=lin.v2)
    x = torch.randn(4, 96).half()
    assert relerr(gptq_matmul(x, p), lin(x)) < 1e-2


def test_errors():
    t = gptq_tensors(4, 32, 96, 40)
    p = prepare(**t, bits=4, group_size=32)
    with pytest.raises(ValueError, match='95 features'): gptq_matmul(torch.randn(2, 95).half(), p)
    with pytest.raises(ValueError, match='fp16'): gptq_matmul(torch.randn(2, 96, dtype=torch.bfloat16), p)
    with pytest.raises(ValueError, match='3- and 4-bit'): prepare(**t, bits=8, group_size=32)
    with pytest.raises(ValueError, match='multiple of 16'): prepare(**t, bits=4, group_size=24)
    with pytest.raises(ValueError, match='32 rows in each group'): prepare(**{**t, 'g_idx': torch.ones_like(t['g_idx'])}, bits=4, group_size=32)
    with pytest.raises(ValueError, match='fp16'): prepare(**{**t, 'scales': t['scales'].float()}, bits=4, group_size=32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('bits,gs', [(4, -1), (4, 128), (4, 32), (3, -1), (3, 128), (3, 32)])
def test_cuda_70b_shape(bits, gs):
    t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, 8192, 1024).items()}
    p = prepare(**t, bits=bits, group_size=gs)
    for M in (1, 16, 300):
        x = torch.randn(M, 8192, device='cuda').half()
        assert relerr(gptq_matmul(x, p), gptq_matmul_ref(x, **t, bias=None, bits=bits)) < 1e-2
