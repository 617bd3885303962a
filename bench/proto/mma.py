"""The fragment kernel with TW column groups of 4 tiles per warp (TW = 2: 8 tiles, half the activation loads per
weight), a variant of `qllama.gptq_matmul._mma_kernel` (which is TW = 1) that measured slower (see
bench/results/gptq_matmul_README.md). The shared pieces come from the notebook's module."""
import torch, triton
import triton.language as tl
from qllama.gptq_matmul import (_asm_ok, _counters, _workspace, _n_sms, GPTQPacked, _step, _consts, _zs_load, _zs_split, _tile_load, _tile_words, _x16,
                                _pick, _out)

@triton.jit
def _out16(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
           r0, cc, D, M, N, pid_k, stride_ym, FINAL: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr):
    "The accumulators of 4 tiles: tile i's are rows r0, r0 + 8 at columns cc + i, cc + i + D."
    _out(part_ptr, y_ptr, bias_ptr, c00, r0, cc, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c01, r0, cc + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c02, r0 + 8, cc, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c03, r0 + 8, cc + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c10, r0, cc + 1, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c11, r0, cc + 1 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c12, r0 + 8, cc + 1, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c13, r0 + 8, cc + 1 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c20, r0, cc + 2, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c21, r0, cc + 2 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c22, r0 + 8, cc + 2, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c23, r0 + 8, cc + 2 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c30, r0, cc + 3, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c31, r0, cc + 3 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c32, r0 + 8, cc + 3, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)
    _out(part_ptr, y_ptr, bias_ptr, c33, r0 + 8, cc + 3 + D, M, N, pid_k, stride_ym, FINAL, HAS_BIAS, SPLIT_K)

@triton.jit
def _tiles4(c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
            qw_ptr, z_ptr, s_ptr, u, u_ok, grp, c1st, N, n_zw,
            p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15,
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15,
            BITS: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr, ASM: tl.constexpr, NW: tl.constexpr):
    "One block (8 steps) of the 4 tiles whose B columns are the lane's c1st .. c1st + 3: the 16 accumulators after it."
    c4 = c1st[:, None] + tl.arange(0, 4)[None, :]                          # [L, 4]
    c_ok = c4 < N
    sr, zr = _zs_load(z_ptr, s_ptr, grp, c1st, c4, c_ok, u_ok, N, n_zw, SYM)
    z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
    kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
    kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
    wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, u_ok[:, None] & c_ok, N, BITS)
    w00, w01, w02, w03, w10, w11, w12, w13, w20, w21, w22, w23, w30, w31, w32, w33 = _tile_words(wr0, wr1, wr2, wr3)
    for st in tl.static_range(8):
        a0 = _pick(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, 2 * st)
        a2 = _pick(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15, 2 * st + 1)
        a1 = _pick(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, 2 * st)
        a3 = _pick(q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, 2 * st + 1)
        c00, c01, c02, c03 = _step(w00, w01, w02, w03, a0, a1, a2, a3, c00, c01, c02, c03, kA0, kB0, kC0, kS0, z0, s0, BITS, st, ASM, NW)
        c10, c11, c12, c13 = _step(w10, w11, w12, w13, a0, a1, a2, a3, c10, c11, c12, c13, kA1, kB1, kC1, kS1, z1, s1, BITS, st, ASM, NW)
        c20, c21, c22, c23 = _step(w20, w21, w22, w23, a0, a1, a2, a3, c20, c21, c22, c23, kA2, kB2, kC2, kS2, z2, s2, BITS, st, ASM, NW)
        c30, c31, c32, c33 = _step(w30, w31, w32, w33, a0, a1, a2, a3, c30, c31, c32, c33, kA3, kB3, kC3, kS3, z3, s3, BITS, st, ASM, NW)
    return c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33

@triton.jit
def _mma_kernel(x_ptr, qw_ptr, z_ptr, s_ptr, bias_ptr, y_ptr, part_ptr, cnt_ptr,
                M, N, K, n_units, n_groups, stride_xm, stride_ym, n_zw,
                BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr,
                ZERO_OFFSET: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                NW: tl.constexpr, TW: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr):
    """y = x @ W + bias for 16 rows and 32*TW*NW columns over ITERS blocks of 4 units, by mma.sync on fragments
    dequantized in registers (program ids: N tile, M tile, split). One element per thread: lane t of warp w owns
    unit 4b + t%4 of every block b and the 4*TW adjacent columns 4*TW*(t//4) .. of its warp's 32*TW; tile i of the
    warp is the 8 columns 4*TW*g + i.

    x_ptr int32 [M, K/2] activation pairs (row stride stride_xm); the other pointers as in `_gemv_kernel`.
    """
    L: tl.constexpr = 32 * NW
    pid_n = tl.program_id(0); pid_m = tl.program_id(1); pid_k = tl.program_id(2)
    e = tl.arange(0, L)
    lane = e % 32
    g = lane // 4; j = lane % 4
    wbase = pid_n * (L * TW) + (e // 32) * (32 * TW)                       # the warp's 32*TW columns
    c1st = wbase + 4 * TW * g                                              # the lane's first B column
    r0 = pid_m * 16 + g; r1 = r0 + 8
    x0p = x_ptr + r0 * stride_xm; x1p = x_ptr + r1 * stride_xm
    lim = K // 2
    zero = tl.zeros([L], tl.float32)
    c00 = zero; c01 = zero; c02 = zero; c03 = zero; c10 = zero; c11 = zero; c12 = zero; c13 = zero
    c20 = zero; c21 = zero; c22 = zero; c23 = zero; c30 = zero; c31 = zero; c32 = zero; c33 = zero
    d00 = zero; d01 = zero; d02 = zero; d03 = zero; d10 = zero; d11 = zero; d12 = zero; d13 = zero
    d20 = zero; d21 = zero; d22 = zero; d23 = zero; d30 = zero; d31 = zero; d32 = zero; d33 = zero
    for it in range(ITERS):
        u = (pid_k * ITERS + it) * 4 + j                                   # [L] the lane's unit
        u_ok = u < n_units
        if GROUPED:
            grp = tl.minimum(u // UPG, n_groups - 1)
        else:
            grp = tl.zeros([L], tl.int32)
        p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 = _x16(x0p, u, u_ok & (r0 < M), lim)
        q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = _x16(x1p, u, u_ok & (r1 < M), lim)
        c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = _tiles4(
            c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33, qw_ptr, z_ptr, s_ptr, u, u_ok, grp,
            c1st, N, n_zw, p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15,
            q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, BITS, SYM, ZERO_OFFSET, ASM, NW)
        if TW == 2:
            d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33 = _tiles4(
                d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33, qw_ptr, z_ptr, s_ptr, u, u_ok, grp,
                c1st + 4, N, n_zw, p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15,
                q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15, BITS, SYM, ZERO_OFFSET, ASM, NW)
    cc = wbase + 8 * TW * j                                                # C lanes hold B lanes 2j, 2j+1: columns cc + i, cc + i + 4*TW
    D: tl.constexpr = 4 * TW
    final = SPLIT_K == 1
    if SPLIT_K > 1:
        _out16(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
               r0, cc, D, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        if TW == 2:
            _out16(part_ptr, y_ptr, bias_ptr, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33,
                   r0, cc + 4, D, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        tl.debug_barrier()                                                 # every thread's partials are written...
        tile = pid_m * tl.num_programs(0) + pid_n
        count = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")            # ...before this release; the last arrival sums them
        final = count == SPLIT_K - 1
        if final:
            tl.atomic_xchg(cnt_ptr + tile, 0)
    if final:
        _out16(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
               r0, cc, D, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        if TW == 2:
            _out16(part_ptr, y_ptr, bias_ptr, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33,
                   r0, cc + 4, D, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)

def mma_matmul(x, p:GPTQPacked, x_sorted=False, NW=4, split_k=None, occ=4, TW=1):
    K, N = p.in_features, p.out_features
    x2 = x.reshape(-1, K)
    if p.perm is not None and not x_sorted: x2 = x2.index_select(1, p.perm)
    x2 = x2.contiguous()
    M = x2.shape[0]
    n_units = -(-K // 32); n_blocks = -(-n_units // 4)
    upg = p.group_size // 32 if p.group_size != -1 else 1
    tiles = -(-N // (32 * NW * TW)) * -(-M // 16)
    split = split_k or max(1, min(n_blocks, round(occ * _n_sms(x.device) / tiles)))
    iters = -(-n_blocks // split); split = -(-n_blocks // iters)
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    part = _workspace(x.device, split * M * N) if split > 1 else y
    cnt = _counters(x.device, tiles) if split > 1 else y
    bias = y if p.bias is None else p.bias
    xp = x2.view(torch.int32)
    _mma_kernel[(-(-N // (32 * NW * TW)), -(-M // 16), split)](
        xp, p.qweight, p.zeros, p.scales, bias, y, part, cnt, M, N, K, n_units, p.scales.shape[0], xp.stride(0), y.stride(0),
        p.zeros.shape[1], BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1, SYM=p.sym, ZERO_OFFSET=p.zero_offset,
        HAS_BIAS=p.bias is not None, ASM=_asm_ok(x.device), NW=NW, TW=TW, SPLIT_K=split, ITERS=iters, num_warps=NW)
    return y.reshape(*x.shape[:-1], N)
