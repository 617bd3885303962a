"""Prototype: the batched-decode fragment kernel (`_mma_kernel`, M = 3..16) with its activations
  XA   read from a copy of x laid out in mma A-fragment order (one 16-byte load per k16 step gives a lane its
       a0..a3: rows g and g + 8, pairs 2st and 2st + 1 of its unit), made by a small launch before the matmul,
       instead of two rows' 16 pairs each, reshuffled into fragments by register moves;
  PFX  loaded one block ahead, like the words with PF (the activations' L2 round trip was exposed every block).

    PYTHONPATH=.:bench python bench/proto/mma_xa.py --out $OUT      (GPU: times; CPU with TRITON_INTERPRET=1: --check)

It ran against `qllama/gptq_matmul.py` as of commit 964f301 (`git show 964f301:qllama/gptq_matmul.py`), whose
`_x16`, `_pick`, `PF` launch key and split-summing `_out` it imports; the notebook's kernel now is `all` (XA, PF,
PFX, FIN2 always on). To rerun it, put that module in place of the current one first.

Times the four joined linears of one 70B layer at M = 16 (CUDA graph, × 80) for each variant, with the XA copy
launches included, after checking every variant against the fp32 reference.
"""
import argparse, json, os, sys
import torch
import triton
import triton.language as tl
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import (_zs_load, _zs_split, _consts, _tile_load, _tile_words, _split4, _step, _out4, _x16, _pick,
                                _launch_config, _asm_ok, _workspace, _counters)

@triton.jit
def _xa_kernel(x_ptr, xa_ptr, M, P, n_units, n_pad, stride_xm, BLOCK: tl.constexpr):
    """xa[t, b, st, g, j, w] = x[16t + g + 8(w % 2), pair 16(4b + j) + 2st + w // 2]: block b's step st as one
    contiguous 512 bytes, lane 4g + j's quad at 16 (4g + j) (program ids: t, block of BLOCK flat indices).
    x_ptr int32 [M, P] pairs (row stride stride_xm); xa_ptr int32 [tiles, n_pad / 4, 8, 8, 4, 4], zero past row M,
    pair P or unit n_units."""
    t = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    w = i % 4; j = (i // 4) % 4; g = (i // 16) % 8; st = (i // 128) % 8; b = i // 1024
    u = 4 * b + j
    row = 16 * t + g + 8 * (w % 2)
    pair = 16 * u + 2 * st + w // 2
    ok = (row < M) & (pair < P) & (u < n_units)
    v = tl.load(x_ptr + row * stride_xm + pair, mask=ok, other=0)
    tl.store(xa_ptr + t * (n_pad * 256) + i, v, mask=i < n_pad * 256)

@triton.jit
def _xa8(xb, u):
    "The 8 A-fragment quads [L, 4] of the lane's unit `u` (one per k16 step); `xb` its tile's xa plus 4 * lane."
    p = xb[:, None] + ((u // 4) * 1024)[:, None] + tl.arange(0, 4)[None, :]
    return (tl.load(p), tl.load(p + 128), tl.load(p + 256), tl.load(p + 384),
            tl.load(p + 512), tl.load(p + 640), tl.load(p + 768), tl.load(p + 896))

@triton.jit
def _quad(f0, f1, f2, f3, f4, f5, f6, f7, ST: tl.constexpr):
    if ST < 4:
        return f0 if ST == 0 else (f1 if ST == 1 else (f2 if ST == 2 else f3))
    else:
        return f4 if ST == 4 else (f5 if ST == 5 else (f6 if ST == 6 else f7))

@triton.jit
def _sum_splits(part_ptr, y_ptr, bias_ptr, r0, cc, M, N, stride_ym, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr):
    "y at rows r0, r0 + 8 and the lane's 8 columns cc ..: the splits' partials summed, every load issued before any store."
    cols = cc[:, None] + tl.arange(0, 8)[None, :]                          # [L, 8]
    ok0 = (r0 < M)[:, None] & (cols < N); ok1 = (r0 + 8 < M)[:, None] & (cols < N)
    a = tl.zeros(cols.shape, tl.float32); b = tl.zeros(cols.shape, tl.float32)
    for sk in range(SPLIT_K):
        a += tl.load(part_ptr + (sk * M + r0)[:, None] * N + cols, mask=ok0, other=0.0, cache_modifier=".cg")
        b += tl.load(part_ptr + (sk * M + r0 + 8)[:, None] * N + cols, mask=ok1, other=0.0, cache_modifier=".cg")
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
        a += bias; b += bias
    tl.store(y_ptr + r0[:, None] * stride_ym + cols, a.to(y_ptr.dtype.element_ty), mask=ok0)
    tl.store(y_ptr + (r0 + 8)[:, None] * stride_ym + cols, b.to(y_ptr.dtype.element_ty), mask=ok1)

@triton.jit
def _mma2_kernel(x_ptr, qw_ptr, z_ptr, s_ptr, bias_ptr, y_ptr, part_ptr, cnt_ptr,
                 M, N, K, n_units, n_groups, stride_xm, stride_ym, n_zw, n_pad,
                 BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr,
                 ZERO_OFFSET: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                 NW: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr, PF: tl.constexpr,
                 XA: tl.constexpr, PFX: tl.constexpr, FIN2: tl.constexpr = False):
    "`_mma_kernel` with XA (x_ptr: int32 [tiles, 8, n_pad, 8, 4] from `_xa_kernel`) and PFX (activations a block ahead)."
    L: tl.constexpr = 32 * NW
    pid_n = tl.program_id(0); pid_m = tl.program_id(1); pid_k = tl.program_id(2)
    e = tl.arange(0, L)
    lane = e % 32
    g = lane // 4; j = lane % 4
    wbase = pid_n * L + (e // 32) * 32
    c1st = wbase + 4 * g
    c4 = c1st[:, None] + tl.arange(0, 4)[None, :]
    c_ok = c4 < N
    r0 = pid_m * 16 + g; r1 = r0 + 8
    x0p = x_ptr + r0 * stride_xm; x1p = x_ptr + r1 * stride_xm
    xb = x_ptr + pid_m * (n_pad * 256) + 4 * lane                         # XA: the lane's quads of its tile
    lim = K // 2
    zero = tl.zeros([L], tl.float32)
    c00 = zero; c01 = zero; c02 = zero; c03 = zero; c10 = zero; c11 = zero; c12 = zero; c13 = zero
    c20 = zero; c21 = zero; c22 = zero; c23 = zero; c30 = zero; c31 = zero; c32 = zero; c33 = zero
    ub = pid_k * ITERS * 4
    ulim = tl.minimum(n_units, ub + ITERS * 4)
    u = ub + j
    if not GROUPED:
        sr, zr = _zs_load(z_ptr, s_ptr, tl.zeros([L], tl.int32), c1st, c4, c_ok, e >= 0, N, n_zw, SYM)
        z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
        kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
        kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
    else:
        sr, zr = _zs_load(z_ptr, s_ptr, tl.minimum(u // UPG, n_groups - 1), c1st, c4, c_ok, u < ulim, N, n_zw, SYM)
    if PF:
        wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, (u < ulim)[:, None] & c_ok, N, BITS)
    if PFX:
        if XA:
            f0, f1, f2, f3, f4, f5, f6, f7 = _xa8(xb, u)
        else:
            u_ok = u < n_units
            p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 = _x16(x0p, u, u_ok & (r0 < M), lim)
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = _x16(x1p, u, u_ok & (r1 < M), lim)
    for it in range(ITERS):
        un = u + 4
        if PF:
            wn0, wn1, wn2, wn3 = _tile_load(qw_ptr, un, c4, (un < ulim)[:, None] & c_ok, N, BITS)
        if PFX:
            if XA:
                h0, h1, h2, h3, h4, h5, h6, h7 = _xa8(xb, un)
            else:
                un_ok = un < n_units
                pn0, pn1, pn2, pn3, pn4, pn5, pn6, pn7, pn8, pn9, pn10, pn11, pn12, pn13, pn14, pn15 = _x16(x0p, un, un_ok & (r0 < M), lim)
                qn0, qn1, qn2, qn3, qn4, qn5, qn6, qn7, qn8, qn9, qn10, qn11, qn12, qn13, qn14, qn15 = _x16(x1p, un, un_ok & (r1 < M), lim)
        u_ok = u < n_units
        if GROUPED:
            sn, zn = _zs_load(z_ptr, s_ptr, tl.minimum(un // UPG, n_groups - 1), c1st, c4, c_ok, un < ulim, N, n_zw, SYM)
            z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
            kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
            kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
            sr, zr = sn, zn
        if PF:
            w00, w01, w02, w03, w10, w11, w12, w13, w20, w21, w22, w23, w30, w31, w32, w33 = _tile_words(wr0, wr1, wr2, wr3)
            wr0, wr1, wr2, wr3 = wn0, wn1, wn2, wn3
        else:
            wc0, wc1, wc2, wc3 = _tile_load(qw_ptr, u, c4, (u < ulim)[:, None] & c_ok, N, BITS)
            w00, w01, w02, w03, w10, w11, w12, w13, w20, w21, w22, w23, w30, w31, w32, w33 = _tile_words(wc0, wc1, wc2, wc3)
        if not PFX:
            if XA:
                f0, f1, f2, f3, f4, f5, f6, f7 = _xa8(xb, u)
            else:
                p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 = _x16(x0p, u, u_ok & (r0 < M), lim)
                q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = _x16(x1p, u, u_ok & (r1 < M), lim)
        for st in tl.static_range(8):
            if XA:
                a0, a1, a2, a3 = _split4(_quad(f0, f1, f2, f3, f4, f5, f6, f7, st))
            else:
                a0 = _pick(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, 2 * st)
                a2 = _pick(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, 2 * st + 1)
                a1 = _pick(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, 2 * st)
                a3 = _pick(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, 2 * st + 1)
            c00, c01, c02, c03 = _step(w00, w01, w02, w03, a0, a1, a2, a3, c00, c01, c02, c03, kA0, kB0, kC0, kS0, z0, s0, BITS, st, ASM, NW)
            c10, c11, c12, c13 = _step(w10, w11, w12, w13, a0, a1, a2, a3, c10, c11, c12, c13, kA1, kB1, kC1, kS1, z1, s1, BITS, st, ASM, NW)
            c20, c21, c22, c23 = _step(w20, w21, w22, w23, a0, a1, a2, a3, c20, c21, c22, c23, kA2, kB2, kC2, kS2, z2, s2, BITS, st, ASM, NW)
            c30, c31, c32, c33 = _step(w30, w31, w32, w33, a0, a1, a2, a3, c30, c31, c32, c33, kA3, kB3, kC3, kS3, z3, s3, BITS, st, ASM, NW)
        if PFX:
            if XA:
                f0, f1, f2, f3, f4, f5, f6, f7 = h0, h1, h2, h3, h4, h5, h6, h7
            else:
                p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 = pn0, pn1, pn2, pn3, pn4, pn5, pn6, pn7, pn8, pn9, pn10, pn11, pn12, pn13, pn14, pn15
                q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = qn0, qn1, qn2, qn3, qn4, qn5, qn6, qn7, qn8, qn9, qn10, qn11, qn12, qn13, qn14, qn15
        u = un
    cc = wbase + 8 * j
    final = SPLIT_K == 1
    if SPLIT_K > 1:
        _out4(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, r0, cc, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c10, c11, c12, c13, r0, cc + 1, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c20, c21, c22, c23, r0, cc + 2, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c30, c31, c32, c33, r0, cc + 3, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        tl.debug_barrier()
        tile = pid_m * tl.num_programs(0) + pid_n
        count = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        final = count == SPLIT_K - 1
        if final:
            tl.atomic_xchg(cnt_ptr + tile, 0)
    if FIN2 and SPLIT_K > 1:
        if final:
            _sum_splits(part_ptr, y_ptr, bias_ptr, r0, cc, M, N, stride_ym, HAS_BIAS, SPLIT_K)
    elif final:
        _out4(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, r0, cc, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c10, c11, c12, c13, r0, cc + 1, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c20, c21, c22, c23, r0, cc + 2, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c30, c31, c32, c33, r0, cc + 3, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)

def xa_copy(x2, n_pad):
    "int32 [tiles, n_pad / 4, 8, 8, 4, 4]: fp16 x [M, K] in A-fragment order (`_xa_kernel`); n_pad a multiple of 4."
    M, K = x2.shape
    xp = x2.view(torch.int32)
    tiles = -(-M // 16)
    xa = torch.empty(tiles * n_pad * 256, dtype=torch.int32, device=x2.device)
    B = 1024
    _xa_kernel[(tiles, -(-n_pad * 256 // B))](xp, xa, M, K // 2, -(-K // 32), n_pad, xp.stride(0), BLOCK=B, num_warps=4)
    return xa

def mma2(x, p, XA=False, PFX=False, PF=None, FIN2=False, x_sorted=True, **launch):
    "gptq_matmul's fragment path (M <= 16) with the prototype's options."
    K, N = p.in_features, p.out_features
    x2 = x.reshape(-1, K)
    if p.perm is not None and not x_sorted: x2 = gm._gather(x2, p.perm)
    M = x2.shape[0]
    cfg, tiles, upg = _launch_config(M, N, K, p, x.device, kernel='mma', **launch)
    pf = cfg['PF'] if PF is None else PF
    n_units = -(-K // 32)
    n_pad = cfg['SPLIT_K'] * cfg['ITERS'] * 4 + 4                          # every unit a split (or its prefetch) reads
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    split = cfg['SPLIT_K'] > 1
    part = _workspace(x.device, cfg['SPLIT_K'] * M * N) if split else y
    cnt = _counters(x.device, tiles) if split else y
    xin = xa_copy(x2, n_pad) if XA else x2.view(torch.int32)
    _mma2_kernel[(-(-N // cfg['BLOCK_N']), -(-M // 16), cfg['SPLIT_K'])](
        xin, p.qweight, p.zeros, p.scales, y if p.bias is None else p.bias, y, part, cnt, M, N, K, n_units, p.scales.shape[0],
        x2.view(torch.int32).stride(0), y.stride(0), p.zeros.shape[1], n_pad, BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1,
        SYM=p.sym, ZERO_OFFSET=p.zero_offset, HAS_BIAS=p.bias is not None, ASM=_asm_ok(x.device), NW=cfg['num_warps'],
        SPLIT_K=cfg['SPLIT_K'], ITERS=cfg['ITERS'], PF=pf, XA=XA, PFX=PFX, FIN2=FIN2, num_warps=cfg['num_warps'])
    return y

VARIANTS = {'cur': dict(), 'pfx': dict(PFX=True), 'xa': dict(XA=True), 'xa_pfx': dict(XA=True, PFX=True),
            'xa_pf_pfx': dict(XA=True, PF=True, PFX=True), 'all': dict(XA=True, PF=True, PFX=True, FIN2=True)}

def check(dev='cpu'):
    from gptq_matmul_gpu import random_gptq, relerr
    torch.manual_seed(0)
    cases = [(4, 128, 256, 256, 5), (3, -1, 320, 128, 16), (4, 32, 192, 256, 9), (3, 64, 256, 384, 3)]
    if dev != 'cpu': cases += [(4, 128, 8192, 8192, 16), (3, 32, 8192, 1024, 7)]
    for bits, gs, K, N, M in cases:
        for sym in ((True, False) if dev == 'cpu' else (True,)):
            qw, qz, sc, gi = random_gptq(K, N, bits, gs, torch.device(dev), sym=sym)
            p = gm.prepare(qw, qz, sc, gi, bits, gs)
            x = torch.randn(M, K, device=dev).half()
            ref = gm.gptq_matmul_ref(x, qw, qz, sc, gi, None, bits)
            for name, v in VARIANTS.items():
                for sk in ((1, 2) if dev == 'cpu' else (None,)):
                    e = relerr(mma2(x, p, x_sorted=False, split_k=sk, **v), ref)
                    assert e < 2e-3, (bits, gs, sym, name, sk, e)
            print('ok', bits, gs, K, N, M, sym, flush=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--sweep', action='store_true', help='warps and split-K per shape for xa_pf_pfx')
    ap.add_argument('--branches', default='4:128,4:-1,3:128,4:32')
    a = ap.parse_args()
    if a.check: return check()
    if a.sweep: return sweep(a)
    from gptq_matmul_gpu import JOINED, branch_name, random_gptq, relerr, graph_time
    dev = torch.device('cuda'); torch.manual_seed(0)
    card = torch.cuda.get_device_name(dev)
    check('cuda')
    recs, table = [], []
    for bg in a.branches.split(','):
        bits, gs = map(int, bg.split(':'))
        br = branch_name(bits, gs)
        layers = []
        for rep in range(2):                                               # 2 distinct layers cycled: weights never in L2
            ps = {}
            for name, (K, N) in JOINED.items():
                qw, qz, sc, gi = random_gptq(K, N, bits, gs, dev)
                ps[name] = gm.prepare(qw, qz, sc, gi, bits, gs)
            layers.append(ps)
        xs = {K: torch.randn(16, K, device=dev, dtype=torch.float16) for K, _ in JOINED.values()}
        row = {}
        for name, v in VARIANTS.items():
            fns = [(lambda ps=ps, n=n, v=v: mma2(xs[ps[n].in_features], ps[n], **v)) for ps in layers for n in JOINED]
            ms = graph_time(fns) / len(layers) * 80
            row[name] = ms
            recs.append(dict(card=card, branch=br, metric=f'linears_M16_{name}', value=ms, unit='ms', layers=80))
        per = {}
        for n in JOINED:                                                    # per shape: cur vs best
            for name, v in VARIANTS.items():
                per[(n, name)] = graph_time([(lambda ps=ps, v=v: mma2(xs[ps[n].in_features], ps[n], **v)) for ps in layers]) / len(layers) * 1000
                recs.append(dict(card=card, branch=br, metric=f'{n}_M16_{name}', value=per[(n, name)], unit='us'))
        print(br, ' '.join(f'{k} {v:.2f}' for k, v in row.items()), '|', ' '.join(f'{n}:{k} {v:.1f}' for (n, k), v in per.items()), flush=True)
        table.append((br, row))
        del layers; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"mma_xa_{card.replace(' ', '_')}.json"), 'w') as f: json.dump(recs, f, indent=1)
    ks = list(VARIANTS)
    print('\nM=16 linears of a token (ms, x80)\n' + f"{'branch':32}" + ''.join(f'{k:>10}' for k in ks))
    for br, row in table: print(f"{br:32}" + ''.join(f'{row[k]:10.2f}' for k in ks))

def sweep(a):
    "Per shape at M = 16: num_warps x programs per SM for XA + PF + PFX (and the default launch), us per call."
    from gptq_matmul_gpu import JOINED, branch_name, random_gptq, graph_time
    dev = torch.device('cuda'); torch.manual_seed(0)
    card = torch.cuda.get_device_name(dev)
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    recs = []
    for bg in a.branches.split(','):
        bits, gs = map(int, bg.split(':'))
        br = branch_name(bits, gs)
        for name, (K, N) in JOINED.items():
            ps = []
            for rep in range(2):
                qw, qz, sc, gi = random_gptq(K, N, bits, gs, dev)
                ps.append(gm.prepare(qw, qz, sc, gi, bits, gs))
            x = torch.randn(16, K, device=dev, dtype=torch.float16)
            res = {}
            res['default'] = graph_time([(lambda p=p: mma2(x, p, XA=True, PF=True, PFX=True)) for p in ps]) / 2 * 1000
            res['default_fin2'] = graph_time([(lambda p=p: mma2(x, p, XA=True, PF=True, PFX=True, FIN2=True)) for p in ps]) / 2 * 1000
            for nw in (4, 8):
                tiles = -(-N // (32 * nw))
                for per_sm in (1, 2, 4, 8):
                    sk = max(1, min(-(-K // 128), round(per_sm * sms / tiles)))
                    if (nw, sk) in res: continue
                    res[(nw, sk)] = graph_time([(lambda p=p: mma2(x, p, XA=True, PF=True, PFX=True, FIN2=True, num_warps=nw, split_k=sk)) for p in ps]) / 2 * 1000
            for k, v in res.items():
                recs.append(dict(card=card, branch=br, metric=f'{name}_M16_sweep', config=str(k), value=v, unit='us'))
            best = min((v, k) for k, v in res.items())
            print(br, name, f"default {res['default']:.1f} best {best[0]:.1f} at (warps, split) {best[1]} |",
                  ' '.join(f'{k}:{v:.1f}' for k, v in res.items() if k != 'default'), flush=True)
            del ps; torch.cuda.empty_cache()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"mma_xa_sweep_{card.replace(' ', '_')}.json"), 'w') as f: json.dump(recs, f, indent=1)

if __name__ == '__main__':
    sys.exit(main())
