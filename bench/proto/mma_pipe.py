"""Prototype: more bytes in flight for the batched-decode fragment kernel (`_mma_kernel`, M = 3..16).

At 16 rows the fragment kernel reads gate/up at ~58% of the weight floor. Compiled for sm_90 it holds 96-127
registers per thread, so an SM keeps 4-5 programs of 4 warps, each warp with one 2 KB block of words requested
ahead: ~32 KB in flight per SM, about what the H200's latency needs at full bandwidth and no more. Options:
  STAGES  no prefetch in registers: the block's loads stay in the loop and Triton's pipeliner (`tl.range(...,
          num_stages=STAGES)`) turns them into asynchronous copies to shared memory, STAGES - 1 blocks ahead
  FOLD    the scale leaves the dequantization: B = q - z (exact in fp16), the block's products go to
          temporary accumulators that are multiplied by the scales of the lane's output columns (no group: once,
          at the end), 64 HMUL2 fewer per block; groups must cover whole blocks (group size a multiple of 128)
  EVEN    no bounds masks on words and activations where the splits divide the units
  AHEAD   (STAGES = 0) how many blocks ahead the words are requested in registers (1: the current kernel)

    PYTHONPATH=.:bench python bench/proto/mma_pipe.py --out $OUT           (GPU: checks, then times)
    TRITON_INTERPRET=1 PYTHONPATH=.:bench python bench/proto/mma_pipe.py --check          (CPU)
    PYTHONPATH=.:bench python bench/proto/mma_pipe.py --sass                 (CPU: compiles for sm_90, counts)

It ran (`mma_pipe*_NVIDIA_H200.json`) importing the helpers of `qllama/gptq_matmul.py` as of commit ee70581; the
module of the commit that adds it (FOLD adopted into `_mma_kernel`) keeps those helpers' behaviour.
"""
import argparse, collections, json, os, re, subprocess, sys, tempfile
import torch
import triton
import triton.language as tl
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import (_zs_load, _zs_split, _consts, _tile_load, _tile_words, _split4, _step, _out4, _xa8, _quad,
                                _sum_splits, _xa_copy, _launch_config, _asm_ok, _workspace, _counters, _mma_ptx, _q_emu,
                                _mma_emu)

@triton.constexpr_function
def _ptx_noscale(bits:int, step:int) -> str:
    "`_mma_ptx` without the multiply by the scale ($19 unused)."
    return "\n".join(l for l in _mma_ptx(bits, step).split("\n") if not l.startswith("mul.rn.f16x2"))

@triton.jit
def _step_ns(w0, w1, w2, w3, a0, a1, a2, a3, c0, c1, c2, c3, bA, bB, bC, z,
             BITS: tl.constexpr, STEP: tl.constexpr, ASM: tl.constexpr, NW: tl.constexpr):
    "`_step` with B = q - z (no scale)."
    if ASM:
        return tl.inline_asm_elementwise(_ptx_noscale(BITS, STEP), "=f,=f,=f,=f" + ",r" * 8 + ",f" * 4 + ",r" * 4,
                                         [w0, w1, w2, w3, a0, a1, a2, a3, c0, c1, c2, c3, bA, bB, bC, bA],
                                         dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)
    else:
        q0, q1 = _q_emu(w0, w1, w2, w3, 2 * STEP, BITS)
        q2, q3 = _q_emu(w0, w1, w2, w3, 2 * STEP + 1, BITS)
        v0 = (q0 - z).to(tl.float32); v1 = (q1 - z).to(tl.float32); v2 = (q2 - z).to(tl.float32); v3 = (q3 - z).to(tl.float32)
        return _mma_emu(a0, a1, a2, a3, v0, v1, v2, v3, c0, c1, c2, c3, NW)

@triton.jit
def _ldq(p):
    "The 4 int32 at `p` (16-byte aligned) by one ld.global.nc.v4: outside Triton's pipeliner, straight into registers."
    return tl.inline_asm_elementwise("ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l", [p],
                                     dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)

@triton.jit
def _xa8q(xb, u, ASM: tl.constexpr):
    "`_xa8` as 8 quads, each already split: (a0, a1, a2, a3) x 8."
    p = xb + (u // 4) * 1024
    if ASM:
        return (_ldq(p), _ldq(p + 128), _ldq(p + 256), _ldq(p + 384), _ldq(p + 512), _ldq(p + 640), _ldq(p + 768), _ldq(p + 896))
    else:
        f0, f1, f2, f3, f4, f5, f6, f7 = _xa8(xb, u)
        return (_split4(f0), _split4(f1), _split4(f2), _split4(f3), _split4(f4), _split4(f5), _split4(f6), _split4(f7))

@triton.jit
def _oscales(s_ptr, grp, cc, N, ok):
    "fp32 scales of group `grp` at the lane's 8 output columns cc .. cc + 7, as 8 [L] tensors."
    cols = cc[:, None] + tl.arange(0, 8)[None, :]
    s = tl.load(s_ptr + grp[:, None] * N + cols, mask=ok[:, None] & (cols < N), other=0.0).to(tl.float32)
    lo, hi = tl.split(tl.permute(tl.reshape(s, [s.shape[0], 2, 4]), (0, 2, 1)))   # cols 0-3, 4-7: [L, 4] each
    s0, s1, s2, s3 = _split4(lo)
    s4, s5, s6, s7 = _split4(hi)
    return s0, s1, s2, s3, s4, s5, s6, s7

@triton.jit
def _block(wr0, wr1, wr2, wr3, f0, f1, f2, f3, f4, f5, f6, f7,
           c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
           kA0, kB0, kC0, kS0, kA1, kB1, kC1, kS1, kA2, kB2, kC2, kS2, kA3, kB3, kC3, kS3,
           z0, z1, z2, z3, s0, s1, s2, s3, BITS: tl.constexpr, ASM: tl.constexpr, NW: tl.constexpr, NOSCALE: tl.constexpr,
           XQ: tl.constexpr = False):
    "The 8 k16 steps of one block on its 4 tiles (XQ: the quads f0 .. f7 come split, as tuples)."
    w00, w01, w02, w03, w10, w11, w12, w13, w20, w21, w22, w23, w30, w31, w32, w33 = _tile_words(wr0, wr1, wr2, wr3)
    for st in tl.static_range(8):
        if XQ:
            a0, a1, a2, a3 = _quad(f0, f1, f2, f3, f4, f5, f6, f7, st)
        else:
            a0, a1, a2, a3 = _split4(_quad(f0, f1, f2, f3, f4, f5, f6, f7, st))
        if NOSCALE:
            c00, c01, c02, c03 = _step_ns(w00, w01, w02, w03, a0, a1, a2, a3, c00, c01, c02, c03, kA0, kB0, kC0, z0, BITS, st, ASM, NW)
            c10, c11, c12, c13 = _step_ns(w10, w11, w12, w13, a0, a1, a2, a3, c10, c11, c12, c13, kA1, kB1, kC1, z1, BITS, st, ASM, NW)
            c20, c21, c22, c23 = _step_ns(w20, w21, w22, w23, a0, a1, a2, a3, c20, c21, c22, c23, kA2, kB2, kC2, z2, BITS, st, ASM, NW)
            c30, c31, c32, c33 = _step_ns(w30, w31, w32, w33, a0, a1, a2, a3, c30, c31, c32, c33, kA3, kB3, kC3, z3, BITS, st, ASM, NW)
        else:
            c00, c01, c02, c03 = _step(w00, w01, w02, w03, a0, a1, a2, a3, c00, c01, c02, c03, kA0, kB0, kC0, kS0, z0, s0, BITS, st, ASM, NW)
            c10, c11, c12, c13 = _step(w10, w11, w12, w13, a0, a1, a2, a3, c10, c11, c12, c13, kA1, kB1, kC1, kS1, z1, s1, BITS, st, ASM, NW)
            c20, c21, c22, c23 = _step(w20, w21, w22, w23, a0, a1, a2, a3, c20, c21, c22, c23, kA2, kB2, kC2, kS2, z2, s2, BITS, st, ASM, NW)
            c30, c31, c32, c33 = _step(w30, w31, w32, w33, a0, a1, a2, a3, c30, c31, c32, c33, kA3, kB3, kC3, kS3, z3, s3, BITS, st, ASM, NW)
    return c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33

@triton.jit
def _mma3_kernel(x_ptr, qw_ptr, z_ptr, s_ptr, bias_ptr, y_ptr, part_ptr, cnt_ptr,
                 M, N, K, n_units, n_groups, n_pad, stride_ym, n_zw,
                 BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr,
                 ZERO_OFFSET: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                 NW: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr,
                 STAGES: tl.constexpr, FOLD: tl.constexpr, EVEN: tl.constexpr, XASM: tl.constexpr, AHEAD: tl.constexpr):
    "`_mma_kernel` with the options of this prototype (STAGES 0: words and activations one block ahead in registers)."
    L: tl.constexpr = 32 * NW
    pid_n = tl.program_id(0); pid_m = tl.program_id(1); pid_k = tl.program_id(2)
    e = tl.arange(0, L)
    lane = e % 32
    g = lane // 4; j = lane % 4
    wbase = pid_n * L + (e // 32) * 32
    c1st = wbase + 4 * g
    c4 = c1st[:, None] + tl.arange(0, 4)[None, :]
    c_ok = c4 < N
    r0 = pid_m * 16 + g
    cc = wbase + 8 * j                                                     # the lane's 8 output columns cc .. cc + 7
    xb = x_ptr + pid_m * (n_pad * 256) + 4 * lane
    zero = tl.zeros([L], tl.float32)
    c00 = zero; c01 = zero; c02 = zero; c03 = zero; c10 = zero; c11 = zero; c12 = zero; c13 = zero
    c20 = zero; c21 = zero; c22 = zero; c23 = zero; c30 = zero; c31 = zero; c32 = zero; c33 = zero
    ub = pid_k * ITERS * 4
    ulim = tl.minimum(n_units, ub + ITERS * 4)
    u0 = ub + j
    NOSCALE: tl.constexpr = FOLD
    # per-column constants: with FOLD only the zero points enter the dequantization
    if not GROUPED or (FOLD and SYM):
        sr, zr = _zs_load(z_ptr, s_ptr, tl.zeros([L], tl.int32), c1st, c4, c_ok, e >= 0, N, n_zw, SYM)
        z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
        if FOLD:
            one = tl.full([L], 1.0, tl.float16)
            s0 = one; s1 = one; s2 = one; s3 = one
        kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
        kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
    if STAGES == 0:
        u = u0
        if GROUPED and not (FOLD and SYM):
            sr, zr = _zs_load(z_ptr, s_ptr, tl.minimum(u // UPG, n_groups - 1), c1st, c4, c_ok, u < ulim, N, n_zw, SYM)
        if EVEN:
            wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, c_ok, N, BITS)
        else:
            wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, (u < ulim)[:, None] & c_ok, N, BITS)
        f0, f1, f2, f3, f4, f5, f6, f7 = _xa8(xb, u)
        if AHEAD == 2:                                                     # the second block's words too
            wm0, wm1, wm2, wm3 = _tile_load(qw_ptr, u + 4, c4, (u + 4 < ulim)[:, None] & c_ok, N, BITS)
        for it in range(ITERS):
            un = u + 4
            if AHEAD == 2:
                wn0, wn1, wn2, wn3 = _tile_load(qw_ptr, u + 8, c4, (u + 8 < ulim)[:, None] & c_ok, N, BITS)
            elif EVEN:
                wn0, wn1, wn2, wn3 = _tile_load(qw_ptr, tl.minimum(un, n_units - 1), c4, c_ok, N, BITS)
            else:
                wn0, wn1, wn2, wn3 = _tile_load(qw_ptr, un, c4, (un < ulim)[:, None] & c_ok, N, BITS)
            h0, h1, h2, h3, h4, h5, h6, h7 = _xa8(xb, un)
            if GROUPED and not (FOLD and SYM):
                sn, zn = _zs_load(z_ptr, s_ptr, tl.minimum(un // UPG, n_groups - 1), c1st, c4, c_ok, un < ulim, N, n_zw, SYM)
                z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
                if FOLD:
                    one = tl.full([L], 1.0, tl.float16)
                    s0 = one; s1 = one; s2 = one; s3 = one
                kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
                kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
                sr, zr = sn, zn
            if FOLD and GROUPED:
                o0, o1, o2, o3, o4, o5, o6, o7 = _oscales(s_ptr, tl.minimum(u // UPG, n_groups - 1), cc, N, u < ulim)
                t00, t01, t02, t03, t10, t11, t12, t13, t20, t21, t22, t23, t30, t31, t32, t33 = _block(
                    wr0, wr1, wr2, wr3, f0, f1, f2, f3, f4, f5, f6, f7,
                    zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero,
                    kA0, kB0, kC0, kS0, kA1, kB1, kC1, kS1, kA2, kB2, kC2, kS2, kA3, kB3, kC3, kS3,
                    z0, z1, z2, z3, s0, s1, s2, s3, BITS, ASM, NW, NOSCALE)
                c00 += t00 * o0; c01 += t01 * o4; c02 += t02 * o0; c03 += t03 * o4
                c10 += t10 * o1; c11 += t11 * o5; c12 += t12 * o1; c13 += t13 * o5
                c20 += t20 * o2; c21 += t21 * o6; c22 += t22 * o2; c23 += t23 * o6
                c30 += t30 * o3; c31 += t31 * o7; c32 += t32 * o3; c33 += t33 * o7
            else:
                c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = _block(
                    wr0, wr1, wr2, wr3, f0, f1, f2, f3, f4, f5, f6, f7,
                    c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
                    kA0, kB0, kC0, kS0, kA1, kB1, kC1, kS1, kA2, kB2, kC2, kS2, kA3, kB3, kC3, kS3,
                    z0, z1, z2, z3, s0, s1, s2, s3, BITS, ASM, NW, NOSCALE)
            if AHEAD == 2:
                wr0, wr1, wr2, wr3 = wm0, wm1, wm2, wm3
                wm0, wm1, wm2, wm3 = wn0, wn1, wn2, wn3
            else:
                wr0, wr1, wr2, wr3 = wn0, wn1, wn2, wn3
            f0, f1, f2, f3, f4, f5, f6, f7 = h0, h1, h2, h3, h4, h5, h6, h7
            u = un
    else:
        for it in tl.range(0, ITERS, num_stages=STAGES):
            u = u0 + 4 * it
            if EVEN:
                wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, c_ok, N, BITS)
            else:
                wr0, wr1, wr2, wr3 = _tile_load(qw_ptr, u, c4, (u < ulim)[:, None] & c_ok, N, BITS)
            if XASM:
                f0, f1, f2, f3, f4, f5, f6, f7 = _xa8q(xb, u, ASM)
            else:
                f0, f1, f2, f3, f4, f5, f6, f7 = _xa8(xb, u)
            if GROUPED and not (FOLD and SYM):
                sr, zr = _zs_load(z_ptr, s_ptr, tl.minimum(u // UPG, n_groups - 1), c1st, c4, c_ok, u < ulim, N, n_zw, SYM)
                z0, z1, z2, z3, s0, s1, s2, s3 = _zs_split(sr, zr, c1st, BITS, SYM, ZERO_OFFSET)
                if FOLD:
                    one = tl.full([L], 1.0, tl.float16)
                    s0 = one; s1 = one; s2 = one; s3 = one
                kA0, kB0, kC0, kS0 = _consts(z0, s0, BITS); kA1, kB1, kC1, kS1 = _consts(z1, s1, BITS)
                kA2, kB2, kC2, kS2 = _consts(z2, s2, BITS); kA3, kB3, kC3, kS3 = _consts(z3, s3, BITS)
            if FOLD and GROUPED:
                o0, o1, o2, o3, o4, o5, o6, o7 = _oscales(s_ptr, tl.minimum(u // UPG, n_groups - 1), cc, N, u < ulim)
                t00, t01, t02, t03, t10, t11, t12, t13, t20, t21, t22, t23, t30, t31, t32, t33 = _block(
                    wr0, wr1, wr2, wr3, f0, f1, f2, f3, f4, f5, f6, f7,
                    zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero,
                    kA0, kB0, kC0, kS0, kA1, kB1, kC1, kS1, kA2, kB2, kC2, kS2, kA3, kB3, kC3, kS3,
                    z0, z1, z2, z3, s0, s1, s2, s3, BITS, ASM, NW, NOSCALE, XASM)
                c00 += t00 * o0; c01 += t01 * o4; c02 += t02 * o0; c03 += t03 * o4
                c10 += t10 * o1; c11 += t11 * o5; c12 += t12 * o1; c13 += t13 * o5
                c20 += t20 * o2; c21 += t21 * o6; c22 += t22 * o2; c23 += t23 * o6
                c30 += t30 * o3; c31 += t31 * o7; c32 += t32 * o3; c33 += t33 * o7
            else:
                c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = _block(
                    wr0, wr1, wr2, wr3, f0, f1, f2, f3, f4, f5, f6, f7,
                    c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33,
                    kA0, kB0, kC0, kS0, kA1, kB1, kC1, kS1, kA2, kB2, kC2, kS2, kA3, kB3, kC3, kS3,
                    z0, z1, z2, z3, s0, s1, s2, s3, BITS, ASM, NW, NOSCALE, XASM)
    if FOLD and not GROUPED:                                               # one scale per column: once, at the end
        o0, o1, o2, o3, o4, o5, o6, o7 = _oscales(s_ptr, tl.zeros([L], tl.int32), cc, N, e >= 0)
        c00 *= o0; c01 *= o4; c02 *= o0; c03 *= o4
        c10 *= o1; c11 *= o5; c12 *= o1; c13 *= o5
        c20 *= o2; c21 *= o6; c22 *= o2; c23 *= o6
        c30 *= o3; c31 *= o7; c32 *= o3; c33 *= o7
    if SPLIT_K > 1:
        _out4(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, r0, cc, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c10, c11, c12, c13, r0, cc + 1, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c20, c21, c22, c23, r0, cc + 2, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c30, c31, c32, c33, r0, cc + 3, M, N, pid_k, stride_ym, False, HAS_BIAS, SPLIT_K)
        tl.debug_barrier()
        tile = pid_m * tl.num_programs(0) + pid_n
        count = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if count == SPLIT_K - 1:
            tl.atomic_xchg(cnt_ptr + tile, 0)
            _sum_splits(part_ptr, y_ptr, bias_ptr, r0, cc, M, N, stride_ym, HAS_BIAS, SPLIT_K)
    else:
        _out4(part_ptr, y_ptr, bias_ptr, c00, c01, c02, c03, r0, cc, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c10, c11, c12, c13, r0, cc + 1, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c20, c21, c22, c23, r0, cc + 2, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)
        _out4(part_ptr, y_ptr, bias_ptr, c30, c31, c32, c33, r0, cc + 3, M, N, pid_k, stride_ym, True, HAS_BIAS, SPLIT_K)

def fold_ok(p): return p.group_size == -1 or p.group_size % 128 == 0

def mma3(x, p, STAGES=0, FOLD=False, EVEN=False, XASM=False, AHEAD=1, per_sm=None, x_sorted=True, **launch):
    "gptq_matmul's fragment path (M <= 16) with this prototype's options (FOLD ignored where groups split a block)."
    K, N = p.in_features, p.out_features
    x2 = x.reshape(-1, K)
    if p.perm is not None and not x_sorted: x2 = gm._gather(x2, p.perm)
    M = x2.shape[0]
    n_units = -(-K // 32)
    if per_sm is not None:                                                 # programs per SM instead of the launcher's
        tiles = -(-N // 128) * -(-M // 16)
        launch['split_k'] = max(1, min(-(-n_units // 4), round(per_sm * gm._n_sms(x.device) / tiles)))
    cfg, tiles, upg = _launch_config(M, N, K, p, x.device, kernel='mma', **launch)
    even = EVEN and n_units % (cfg['SPLIT_K'] * cfg['ITERS'] * 4) == 0 and n_units == cfg['SPLIT_K'] * cfg['ITERS'] * 4
    n_pad = (cfg['SPLIT_K'] * cfg['ITERS'] + 1) * 4
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    split = cfg['SPLIT_K'] > 1
    part = _workspace(x.device, cfg['SPLIT_K'] * M * N) if split else y
    cnt = _counters(x.device, tiles) if split else y
    xa = _xa_copy(x2.view(torch.int32), K, n_pad)
    _mma3_kernel[(-(-N // cfg['BLOCK_N']), -(-M // 16), cfg['SPLIT_K'])](
        xa, p.qweight, p.zeros, p.scales, y if p.bias is None else p.bias, y, part, cnt, M, N, K, n_units, p.scales.shape[0],
        n_pad, y.stride(0), p.zeros.shape[1], BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1, SYM=p.sym,
        ZERO_OFFSET=p.zero_offset, HAS_BIAS=p.bias is not None, ASM=_asm_ok(x.device), NW=cfg['num_warps'],
        SPLIT_K=cfg['SPLIT_K'], ITERS=cfg['ITERS'], STAGES=STAGES, FOLD=FOLD and fold_ok(p), EVEN=even, XASM=XASM, AHEAD=AHEAD,
        num_warps=cfg['num_warps'])
    return y

VARIANTS = {'cur': dict(), 'even': dict(EVEN=True), 'fold': dict(FOLD=True), 'fold_even': dict(FOLD=True, EVEN=True),
            'pipe3': dict(STAGES=3), 'pipe3_fold': dict(STAGES=3, FOLD=True),
            'pipe3x': dict(STAGES=3, XASM=True), 'pipe4x': dict(STAGES=4, XASM=True), 'pipe5x': dict(STAGES=5, XASM=True),
            'pipe4x_fold': dict(STAGES=4, XASM=True, FOLD=True), 'pipe4x_fold_even': dict(STAGES=4, XASM=True, FOLD=True, EVEN=True),
            'a2': dict(AHEAD=2), 'fold_a2': dict(FOLD=True, AHEAD=2)}

def check(dev='cpu', variants=VARIANTS):
    from gptq_matmul_gpu import random_gptq, relerr
    torch.manual_seed(0)
    cases = [(4, 128, 256, 256, 5), (3, -1, 320, 128, 16), (4, 32, 192, 256, 9), (3, 128, 512, 384, 3), (4, -1, 256, 128, 16)]
    if dev != 'cpu': cases = [(4, 128, 256, 256, 5), (3, 128, 512, 384, 3), (4, 128, 8192, 8192, 16), (3, -1, 8192, 1024, 7), (4, -1, 28672, 8192, 16)]
    for bits, gs, K, N, M in cases:
        for sym in ((True, False) if dev == 'cpu' or K < 8192 else (True,)):
            qw, qz, sc, gi = random_gptq(K, N, bits, gs, torch.device(dev), sym=sym)
            p = gm.prepare(qw, qz, sc, gi, bits, gs)
            x = torch.randn(M, K, device=dev).half()
            ref = gm.gptq_matmul_ref(x, qw, qz, sc, gi, None, bits)
            for name, v in variants.items():
                for sk in ((1, 2) if dev == 'cpu' else (None,)):
                    e = relerr(mma3(x, p, x_sorted=False, split_k=sk, **v), ref)
                    assert e < 2e-3, (bits, gs, sym, name, sk, e)
            print('ok', bits, gs, K, N, M, sym, flush=True)

def sass(a):
    "Compile every variant for sm_90 on the CPU: registers, shared memory, SASS instructions in the main loop."
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    bin_ = os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin')
    sig = dict(x_ptr='*i32', qw_ptr='*i32', z_ptr='*i32', s_ptr='*fp16', bias_ptr='*fp16', y_ptr='*fp16', part_ptr='*fp32',
               cnt_ptr='*i32', M='i32', N='i32', K='i32', n_units='i32', n_groups='i32', n_pad='i32', stride_ym='i32', n_zw='i32')
    for bits, gs in [(4, 128), (4, -1), (3, -1), (4, 32)]:
        for name, v in VARIANTS.items():
            if v.get('FOLD') and gs == 32 or (a.only and name not in a.only.split(',')): continue
            c = dict(BITS=bits, UPG=gs // 32 if gs != -1 else 1, GROUPED=gs != -1, SYM=True, ZERO_OFFSET=0, HAS_BIAS=False,
                     ASM=True, NW=4, SPLIT_K=4, ITERS=16, STAGES=v.get('STAGES', 0), FOLD=v.get('FOLD', False), EVEN=v.get('EVEN', False),
                     XASM=v.get('XASM', False), AHEAD=v.get('AHEAD', 1))
            s = {**sig, **{k: 'constexpr' for k in c}}
            k = triton.compile(ASTSource(_mma3_kernel, s, c, {(i,): [['tt.divisibility', 16]] for i in range(16)}),
                               target=GPUTarget('cuda', 90, 32), options=dict(num_warps=4, num_stages=3))
            with tempfile.NamedTemporaryFile(suffix='.cubin', delete=False) as f: f.write(k.asm['cubin']); path = f.name
            res = subprocess.run([f'{bin_}/cuobjdump', '-res-usage', path], capture_output=True, text=True).stdout
            regs = int(re.search(r'REG:(\d+)', res).group(1)); shared = int(re.search(r'SHARED:(\d+)', res).group(1))
            out = subprocess.run([f'{bin_}/nvdisasm', '-c', path], capture_output=True, text=True).stdout
            lines = out.splitlines()
            # the main loop: the longest span between a label and a backward branch to it
            best = []
            for i, l in enumerate(lines):
                m = re.search(r'BRA `?\(?(\.L_x_\d+)', l)
                if m:
                    start = next((t for t in range(i) if lines[t].startswith(m.group(1) + ':')), None)
                    if start is not None and i - start > len(best): best = lines[start:i + 1]
            ops = collections.Counter(re.search(r'\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)', l).group(1)
                                      for l in best if re.search(r'\*/\s+(?:@!?U?P\w+\s+)?[A-Z]', l))
            print(f"{bits}-bit {gs:4}g {name:16} regs {regs:3}  shared {k.metadata.shared:6}  loop {sum(ops.values()):4} SASS  "
                  + ' '.join(f'{o}:{n}' for o, n in ops.most_common(9)), flush=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--sass', action='store_true')
    ap.add_argument('--only', default='', help='these variants only')
    ap.add_argument('--branches', default='4:-1,4:128,3:-1,4:32')
    ap.add_argument('--per-sm', default='1,2,4,8')
    ap.add_argument('--top', type=int, default=2, help='variants swept over programs per SM, per branch')
    a = ap.parse_args()
    if a.check: return check()
    if a.sass: return sass(a)
    from gptq_matmul_gpu import JOINED, branch_name, random_gptq, relerr, graph_time, copy_bandwidth
    dev = torch.device('cuda'); torch.manual_seed(0)
    card = torch.cuda.get_device_name(dev)
    variants = {k: v for k, v in VARIANTS.items() if not a.only or k in a.only.split(',')}
    check('cuda', variants)
    bw = copy_bandwidth(dev)
    print(f'copy {bw:.0f} GB/s', flush=True)
    recs, table = [dict(card=card, metric='copy_bandwidth', value=bw, unit='GB/s')], []
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
        floor = {n: gm.gptq_matmul_bytes(K, N, bits, gs, 16) / bw / 1e3 for n, (K, N) in JOINED.items()}   # us
        per = {}
        def t(n, name, psm):
            v = variants[name] if name != 'module' else None
            f = (lambda ps: gm.gptq_matmul(xs[ps[n].in_features], ps[n], x_sorted=True)) if v is None else \
                (lambda ps: mma3(xs[ps[n].in_features], ps[n], per_sm=psm, **v))
            per[(n, name, psm)] = r = graph_time([(lambda ps=ps: f(ps)) for ps in layers]) / len(layers) * 1000
            recs.append(dict(card=card, branch=br, metric=f'{n}_M16_{name}', per_sm=psm, value=r, unit='us',
                             floor=floor[n], fraction_of_floor=floor[n] / r))
            return r
        names = ['module'] + [k for k, v in variants.items() if not (v.get('FOLD') and gs not in (-1, 128))]
        for name in names:
            for n in JOINED: t(n, name, None)
        tot = {name: sum(per[(n, name, None)] for n in JOINED) * 80 / 1000 for name in names}
        top = sorted((k for k in names if k != 'module'), key=tot.get)[:a.top]
        for name in top:
            for n in JOINED:
                for psm in map(float, a.per_sm.split(',')):
                    t(n, name, psm)
        best = {n: min((v, k[1], k[2]) for k, v in per.items() if k[0] == n) for n in JOINED}
        for name in names:
            recs.append(dict(card=card, branch=br, metric=f'linears_M16_{name}', value=tot[name], unit='ms', layers=80,
                             floor=sum(floor.values()) * 80 / 1000, fraction_of_floor=sum(floor.values()) * 80 / 1000 / tot[name]))
        print(br, ' '.join(f'{k} {v:.2f}' for k, v in tot.items()), flush=True)
        for n in JOINED:
            print(f'    {n:8} floor {floor[n]:.1f} us |', ' '.join(f"{k}:{per[(n, k, None)]:.1f}" for k in names),
                  '| best', f"{best[n][0]:.1f} {best[n][1]} per_sm={best[n][2]}", flush=True)
        table.append((br, tot, sum(b[0] for b in best.values()) * 80 / 1000, sum(floor.values()) * 80 / 1000))
        del layers; torch.cuda.empty_cache()
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, f"mma_pipe_{card.replace(' ', '_')}.json"), 'w') as f: json.dump(recs, f, indent=1)
    ks = ['module'] + list(variants)
    print('\nM=16 linears of a token (ms, x80; best: per shape, the best variant and programs per SM)\n'
          + f"{'branch':30}{'floor':>7}" + ''.join(f'{k[:10]:>11}' for k in ks) + f"{'best':>8}")
    for br, tot, b, fl in table:
        print(f"{br:30}{fl:7.2f}" + ''.join(f"{tot[k]:11.2f}" if k in tot else f"{'-':>11}" for k in ks) + f"{b:8.2f}")

if __name__ == '__main__':
    sys.exit(main())
