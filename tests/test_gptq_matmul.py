"""Heavier checks of `qllama.gptq_matmul`: more shapes, symmetric and not, unit steps, every split, the error cases.

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
from qllama.norm_kernels import silu_mul


def relerr(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()


def gptq_tensors(bits, gs, K, N, v2=False, act_order=True, seed=0, sym=True):
    "AutoGPTQ tensors of a random weight, quantized round-to-nearest (act-order when grouped)."
    g = torch.Generator().manual_seed(seed)
    quant = QuantConfig(bits=bits, group_size=gs, desc_act=act_order and gs != -1, sym=sym,
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


@pytest.mark.parametrize('bits', [4, 3])
def test_layout_holds_every_sorted_row(bits):
    K, N = 352, 24 if bits == 4 else 32                                    # 11 units of 32 rows
    t = gptq_tensors(bits, 32, K, N)
    p = prepare(**t, bits=bits, group_size=32)
    q = unpack_rows(t['qweight'], bits)[p.perm.long()]                     # sorted rows
    w = p.qweight.long() & 0xFFFFFFFF
    assert w.shape[0] == 11 * bits
    vpl = 4 if bits == 4 else 5                                            # values per 16-bit half
    for k in range(K):
        u, r = divmod(k, 32)
        if r < 2 * vpl * bits:                                             # word a, pair i, half h
            a, i, h = r // (2 * vpl), r % (2 * vpl) // 2, r % 2
            got = (w[bits * u + a] >> (16 * h + bits * i)) & (2**bits - 1)
        else:                                                              # 3 bits, rows 30 and 31: one bit per word
            got = sum(((w[3 * u + a] >> (15 if r == 30 else 31)) & 1) << a for a in range(3))
        assert torch.equal(got, q[k]), k


CONFIGS = [(bits, gs, sym) for bits in (4, 3) for gs in (-1, 32, 64, 128) for sym in (True, False)]

@pytest.mark.parametrize('bits,gs,sym', CONFIGS)
def test_matches_reference(bits, gs, sym):
    K, N = (416, 72) if bits == 4 else (416, 96)                         # 416 = 13*32: short last group at 64, 128
    t = gptq_tensors(bits, gs, K, N, seed=bits * 1000 + gs, sym=sym)
    bias = torch.randn(N).half()
    p = prepare(**t, bits=bits, group_size=gs, bias=bias)
    assert p.sym == sym
    for M, launch in [(1, {}), (1, dict(split_k=3, U=1)), (1, dict(U=2, num_warps=1)), (3, dict(U=4)), (5, dict(split_k=2)),
                      (16, dict(num_warps=1)), (16, dict(fold=True, split_k=2)), (16, dict(fold=False)), (16, {}),   # scales folded
                      (70, {}), (520, {}), (9, dict(kernel='dequant', chunk=128))]:   # or not: at 128g the short last block's lanes too
        x = torch.randn(M, K).half()
        ref = gptq_matmul_ref(x, **t, bias=bias, bits=bits)
        y = gptq_matmul(x, p, **launch)
        assert y.dtype == torch.float16 and y.shape == (M, N)
        assert relerr(y, ref) < 1e-2, (M, launch, relerr(y, ref))


def test_concat_joins_along_out():
    t1, t2 = gptq_tensors(4, 32, 128, 40, seed=1, sym=False), gptq_tensors(4, 32, 128, 24, seed=2)
    t2['g_idx'] = t1['g_idx']                                              # one act-order for both, as from one Hessian
    b1 = torch.randn(40).half()
    p = gm.concat([prepare(**t1, bits=4, group_size=32, bias=b1), prepare(**t2, bits=4, group_size=32)])
    assert (p.out_features, p.sym) == (64, False)
    x = torch.randn(2, 128).half()
    want = torch.cat([gptq_matmul_ref(x, **t1, bias=b1, bits=4), gptq_matmul_ref(x, **t2, bias=None, bits=4)], -1)
    for M in (1, 2):
        assert relerr(gptq_matmul(x[:M], p), want[:M]) < 1e-2
    with pytest.raises(ValueError, match='same act-order'):
        gm.concat([prepare(**t1, bits=4, group_size=32), prepare(**gptq_tensors(4, 32, 128, 8, seed=3), bits=4, group_size=32)])


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


def test_leading_dims_noncontiguous_and_sorted():
    t = gptq_tensors(4, 128, 256, 40)
    p = prepare(**t, bits=4, group_size=128)
    x = torch.randn(2, 3, 512).half()[..., ::2]                            # [2, 3, 256], column stride 2
    ref = gptq_matmul_ref(x, **t, bias=None, bits=4)
    y = gptq_matmul(x, p)
    assert y.shape == (2, 3, 40) and relerr(y, ref) < 1e-2
    assert relerr(gptq_matmul(x[..., p.perm.long()], p, x_sorted=True), ref) < 1e-2
    t = gptq_tensors(4, -1, 256, 40)                                       # no perm: x is read where it lies
    p = prepare(**t, bits=4, group_size=-1)
    x = torch.randn(1, 257).half()[:, 1:]                                  # 2-byte offset: pairs need 4-byte alignment
    assert relerr(gptq_matmul(x, p), gptq_matmul_ref(x, **t, bias=None, bits=4)) < 1e-2


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
    with pytest.raises(ValueError, match='multiple of 32'): prepare(**t, bits=4, group_size=16)
    with pytest.raises(ValueError, match='32 rows in each group'): prepare(**{**t, 'g_idx': torch.ones_like(t['g_idx'])}, bits=4, group_size=32)
    with pytest.raises(ValueError, match='fp16'): prepare(**{**t, 'scales': t['scales'].float()}, bits=4, group_size=32)


@pytest.mark.parametrize('bits,gs,sym', [(4, 32, True), (3, 128, False), (3, -1, True)])
@pytest.mark.parametrize('U,split', [(4, 1), (4, 3), (1, 6), (2, 2)])
def test_even_splits_match_masked(bits, gs, sym, U, split):
    "Splits that divide the units exactly run without masks (EVEN) and give the masked kernel's bits."
    t = gptq_tensors(bits, gs, 384, 128, sym=sym)                          # 12 units
    p = prepare(**t, bits=bits, group_size=gs)
    x = torch.randn(2, 384).half()
    cfg, _, _ = gm._launch_config(2, 128, 384, p, x.device, U=U, split_k=split)
    assert cfg['EVEN'] and cfg['SPLIT_K'] * cfg['ITERS'] * U == 12
    y = gptq_matmul(x, p, U=U, split_k=split)
    assert torch.equal(y, gptq_matmul(x, p, U=U, split_k=split, even=False))
    assert relerr(y, gptq_matmul_ref(x, **t, bias=None, bits=bits)) < 1e-2


@pytest.mark.parametrize('bits,gs,sym', [(4, 64, False), (3, 128, True), (4, -1, True)])
@pytest.mark.parametrize('M,launch', [(1, {}), (2, dict(split_k=5, U=1)), (1, dict(U=4, split_k=2)), (1, dict(block_n=64, num_warps=1, split_k=4, U=1))])
def test_swiglu_in_tail_is_silu_mul(bits, gs, sym, M, launch):
    "Batch-1 kernel with [gate | up] columns: the tail's silu(gate) * up equals gate/up then `silu_mul`, bit for bit (masked and even splits)."
    for K, N in ((416, 160), (512, 256)):                                  # 13 units: masks; 16 units, 2 x 128 columns: even splits
        t = gptq_tensors(bits, gs, K, N, seed=K + N, sym=sym)
        p = prepare(**t, bits=bits, group_size=gs, bias=torch.randn(N).half())
        x = torch.randn(M, K).half()
        y = gptq_matmul(x, p, swiglu_out=True, **launch)
        assert y.shape == (M, N // 2) and torch.equal(y, silu_mul(gptq_matmul(x, p, **launch)))


@pytest.mark.parametrize('bits,gs,sym,M,launch', [(4, 128, True, 3, {}), (3, -1, False, 16, dict(split_k=2)), (4, 32, False, 9, dict(fold=False)),
                                                  (3, 128, True, 5, dict(fold=False, split_k=3)), (4, -1, True, 16, dict(num_warps=8)),
                                                  (4, 128, False, 16, dict(split_k=1)), (3, 32, True, 7, dict(split_k=1, num_warps=8))])
def test_swiglu_in_fragment_kernel(bits, gs, sym, M, launch):
    """Fragment kernel with [gate | up] columns (3-16 rows): silu(gate) * up equals gate/up then `silu_mul` bit for bit,
    and written into the next matmul's fragment order (`xa=`) it gives that matmul the same output as its own copy would."""
    K, N = 416, 2 * 160                                                    # 13 units; 160 pairs: part-filled last tiles, and down (K = 160) runs the fragment kernel on a GPU too
    t = gptq_tensors(bits, gs, K, N, seed=N, sym=sym)
    p = prepare(**t, bits=bits, group_size=gs, bias=torch.randn(N).half())
    d = prepare(**gptq_tensors(4, -1, N // 2, 64, seed=1), bits=4, group_size=-1)
    x = torch.randn(M, K).half()
    assert gm.takes_swiglu_out(M, p, x.device, **launch)
    ref = silu_mul(gptq_matmul(x, p, **launch))
    assert torch.equal(gptq_matmul(x, p, swiglu_out=True, **launch), ref)
    fx = gptq_matmul(x, p, swiglu_out=True, xa=gm.xa_target(M, d, x.device), **launch)
    assert isinstance(fx, gm.FragmentX) and torch.equal(gptq_matmul(fx, d), gptq_matmul(ref, d))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('bits,gs,sym', [(b, g, s) for b in (4, 3) for g in (-1, 128, 32) for s in (True, False)])
def test_cuda_70b_shape(bits, gs, sym):
    t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, 8192, 1024, sym=sym).items()}
    p = prepare(**t, bits=bits, group_size=gs)
    for M in (1, 3, 16, 300, 600):                                         # fp16x2, fragment, tl.dot, dequantize + cuBLAS
        x = torch.randn(M, 8192, device='cuda').half()
        assert relerr(gptq_matmul(x, p), gptq_matmul_ref(x, **t, bias=None, bits=bits)) < 1e-2, M
    x = torch.randn(1, 8192, device='cuda').half()                          # unmasked, 128-bit activation loads
    assert gm._launch_config(1, 1024, 8192, p, x.device, split_k=16)[0]['EVEN']
    assert relerr(gptq_matmul(x, p, split_k=16), gptq_matmul_ref(x, **t, bias=None, bits=bits)) < 1e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('bits,gs', [(4, 128), (3, 32)])
def test_cuda_even_at_gate_up_and_down(bits, gs):
    "The launcher's unmasked splits at the 70B's gate/up (8192 -> 57344) and down (28672 -> 8192) shapes."
    for K, N in ((8192, 57344), (28672, 8192)):
        t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, K, N).items()}
        p = prepare(**t, bits=bits, group_size=gs)
        x = torch.randn(1, K, device='cuda').half()
        assert gm._launch_config(1, N, K, p, x.device)[0]['EVEN']
        y = gptq_matmul(x, p)
        assert relerr(y, gptq_matmul(x, p, even=False)) < 1e-3
        assert relerr(y, gptq_matmul_ref(x, **t, bias=None, bits=bits)) < 1e-2
        if N > K: assert torch.equal(gptq_matmul(x, p, swiglu_out=True), silu_mul(y))   # gate/up: SwiGLU in the tail, V4 loads


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('bits,gs,sym', [(4, -1, True), (4, 128, False), (3, 32, True), (3, 128, False)])
def test_cuda_l2_prefetch_same_bits(bits, gs, sym):
    "The fragment kernel asking L2 for blocks ahead (`pfd`) is a hint: the same bits at every distance, past the end included."
    K, N = 416, 192                                                        # a short last block; gate/up halves of 96 columns
    t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, K, N, sym=sym).items()}
    p = prepare(**t, bits=bits, group_size=gs, bias=torch.randn(N, device='cuda').half())
    d = prepare(**{k: v.cuda() for k, v in gptq_tensors(4, -1, N // 2, 64, seed=1).items()}, bits=4, group_size=-1)
    for M, launch in ((16, dict(num_warps=4)), (5, dict(num_warps=4, split_k=3)), (16, dict(num_warps=8, split_k=2, fold=gs in (-1, 128)))):
        x = torch.randn(M, K, device='cuda').half()
        ref = gptq_matmul(x, p, pfd=0, **launch)
        assert relerr(ref, gptq_matmul_ref(x, **t, bias=p.bias, bits=bits)) < 1e-2
        for pfd in (1, 2, 5):
            assert torch.equal(gptq_matmul(x, p, pfd=pfd, **launch), ref), (M, launch, pfd)
            fx = gptq_matmul(x, p, swiglu_out=True, xa=gm.xa_target(M, d, x.device), pfd=pfd, **launch)
            assert torch.equal(gptq_matmul(fx, d), gptq_matmul(silu_mul(ref), d)), (M, launch, pfd)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('bits,gs', [(4, -1), (4, 128), (3, 32)])
def test_cuda_early_launch_same_bits(bits, gs):
    """Launched early (`pdl=True`: programmatic dependent launch on Hopper) behind the norm that writes its input, in
    sorted order or the fragment kernel's, eager and captured in a CUDA graph: the same bits as a plain launch."""
    from qllama.norm_kernels import rms_norm
    K, N = 1024, 1024                                                      # the batch-1 launch unmasked (EVEN): x read 128 bits at a time
    t = {k: v.cuda() for k, v in gptq_tensors(bits, gs, K, N).items()}
    p = prepare(**t, bits=bits, group_size=gs)
    assert gm._launch_config(1, N, K, p, torch.device('cuda'))[0]['EVEN']
    w = torch.rand(K, device='cuda').half() + 0.5
    src = p.perm
    for M in (1, 2, 5, 16):
        x = torch.randn(M, K, device='cuda').half()
        xa = gm.xa_target(M, p, x.device)                                  # the fragment kernel's input buffer (3-16 rows)
        def run(pdl, frag):
            h = rms_norm(x, w, 1e-5, src, xa=xa if frag else None)
            return gptq_matmul(h, p, x_sorted=src is not None, pdl=pdl)
        for frag in ((False, True) if xa is not None else (False,)):
            ref = run(False, frag).clone()
            assert relerr(ref, gptq_matmul_ref((x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5) * w.float()).half(),
                                               **t, bias=None, bits=bits)) < 1e-2
            assert torch.equal(run(True, frag), ref), (M, frag)
            run(True, frag); torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g): out = run(True, frag)
            for _ in range(3): g.replay()
            torch.cuda.synchronize()
            assert torch.equal(out, ref), (M, frag, 'graph')
        if M <= 2:                                                         # gate/up's tail makes silu * up, down launched early behind it
            d = prepare(**{k: v.cuda() for k, v in gptq_tensors(4, -1, N // 2, 256, seed=1).items()}, bits=4, group_size=-1)
            def chain(pdl): return gptq_matmul(gptq_matmul(rms_norm(x, w, 1e-5, src), p, x_sorted=src is not None, swiglu_out=True, pdl=pdl), d, pdl=pdl)
            assert torch.equal(chain(True), chain(False)), (M, 'down')
