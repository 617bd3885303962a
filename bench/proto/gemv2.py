"""Prototype of the second GPTQ decode kernel: pairs of weights dequantized and multiplied as fp16x2.

Layout ("units" of 32 sorted rows): at 4 bits a unit is 4 words per column, word a holding rows 8a + 2i at bits
4i and rows 8a + 2i + 1 at bits 16 + 4i (i < 4); at 3 bits a unit is 3 words, word a holding rows 10a + 2i at bits
3i and 10a + 2i + 1 at bits 16 + 3i (i < 5), and bit a of rows 30 and 31 at bits 15 and 31.
So `(w >> s) & mask | 0x64006400` is an fp16x2 of two rows (2p, 2p + 1), whose activations are the fp16x2 pair p.
"""
from __future__ import annotations
import math, os
import torch, triton
import triton.language as tl
from qllama.gptq import unpack_rows, unpack_cols
from qllama.gptq_matmul import group_order, _pack_nibbles

def _i32(w): return torch.where(w >= 2**31, w - 2**32, w).int()

def pack_units(q:torch.Tensor, bits:int) -> torch.Tensor:
    "int [K, N] sorted rows (values < 2**bits) -> int32 [K/32 * WPU, N] (WPU = 4 at 4 bits, 3 at 3 bits)."
    K, N = q.shape
    u = -(-K // 32)
    qp = torch.zeros(u * 32, N, dtype=torch.int64, device=q.device)
    qp[:K] = q
    qp = qp.view(u, 32, N)
    if bits == 4:
        v = qp.view(u, 4, 4, 2, N)                      # [unit, word a, pair i, lane, N]: row 8a + 2i + lane
        sh = (torch.arange(4, device=q.device) * 4).view(1, 1, 4, 1, 1) + (torch.arange(2, device=q.device) * 16).view(1, 1, 1, 2, 1)
        w = (v << sh).sum((2, 3))                       # [unit, 4, N]
        return _i32(w).view(u * 4, N)
    if bits == 3:
        main = qp[:, :30].reshape(u, 3, 5, 2, N)        # row 10a + 2i + lane
        sh = (torch.arange(5, device=q.device) * 3).view(1, 1, 5, 1, 1) + (torch.arange(2, device=q.device) * 16).view(1, 1, 1, 2, 1)
        w = (main << sh).sum((2, 3))                    # [unit, 3, N]
        a = torch.arange(3, device=q.device).view(1, 3, 1)
        w = w + (((qp[:, 30:31] >> a) & 1) << 15) + (((qp[:, 31:32] >> a) & 1) << 31)
        return _i32(w).view(u * 3, N)
    raise ValueError(bits)

# ---- the dequantize-and-dot of one unit, as PTX (GPU) or as Triton ops (the CPU interpreter) ----
def _h2(v:float) -> str:
    "PTX literal of the fp16x2 pair (v, v)."
    import numpy as np
    b = int(np.array([v], dtype=np.float16).view(np.uint16)[0])
    assert float(np.float16(v)) == v
    return f"0x{b:04X}{b:04X}"

def _asm4():
    "One 4-bit unit: 4 words, 16 activation pairs -> fp32 sum of x * (q - 8) / 8."
    s = ["{", ".reg .b32 t, u, acc, k1, k2, k3, k4;", ".reg .f16 lo, hi;", ".reg .f32 flo, fhi;",
         f"mov.b32 k1, {_h2(1/8)};", f"mov.b32 k2, {_h2(-129)};",    # (1024 + q) / 8 - 129 = (q - 8) / 8
         f"mov.b32 k3, {_h2(1/128)};", f"mov.b32 k4, {_h2(-9)};",     # (1024 + 16 q) / 128 - 9 = (q - 8) / 8
         "mov.b32 acc, 0;"]
    for a in range(4):
        w = f"${1 + a}"
        s.append(f"shr.u32 u, {w}, 8;")
        for src, i in ((w, 0), (w, 1), ('u', 2), ('u', 3)):
            mask, k_mul, k_add = ('0x000F000F', 'k1', 'k2') if i % 2 == 0 else ('0x00F000F0', 'k3', 'k4')
            s.append(f"lop3.b32 t, {src}, {mask}, 0x64006400, 0xEA;")   # (src & mask) | magic
            s.append(f"fma.rn.f16x2 t, t, {k_mul}, {k_add};")            # (q - 8) / 8, exact
            s.append(f"fma.rn.f16x2 acc, t, ${5 + 4 * a + i}, acc;")
    s += ["mov.b32 {lo, hi}, acc;", "cvt.f32.f16 flo, lo;", "cvt.f32.f16 fhi, hi;", "add.f32 flo, flo, fhi;",
          "mov.b32 $0, flo;", "}"]
    return "\n".join(s)

def _asm3():
    "One 3-bit unit: 3 words, 16 activation pairs -> fp32 sum of x * (q - 4) / 4."
    s = ["{", ".reg .b32 t, u, acc, m0, a0, m1, a1, m2, a2;", ".reg .f16 lo, hi;", ".reg .f32 flo, fhi;",
         f"mov.b32 m0, {_h2(1/4)};", f"mov.b32 a0, {_h2(-257)};",     # (1024 + q) / 4 - 257 = (q - 4) / 4
         f"mov.b32 m1, {_h2(1/32)};", f"mov.b32 a1, {_h2(-33)};",     # (1024 + 8 q) / 32 - 33
         f"mov.b32 m2, {_h2(1/256)};", f"mov.b32 a2, {_h2(-5)};",     # (1024 + 64 q) / 256 - 5
         "mov.b32 acc, 0;"]
    for a in range(3):
        w = f"${1 + a}"
        s.append(f"shr.u32 u, {w}, 9;")
        for i, (src, mask, km, ka) in enumerate(((w, '0x00070007', 'm0', 'a0'), (w, '0x00380038', 'm1', 'a1'),
                                                  (w, '0x01C001C0', 'm2', 'a2'), ('u', '0x00070007', 'm0', 'a0'),
                                                  ('u', '0x00380038', 'm1', 'a1'))):
            s.append(f"lop3.b32 t, {src}, {mask}, 0x64006400, 0xEA;")
            s.append(f"fma.rn.f16x2 t, t, {km}, {ka};")
            s.append(f"fma.rn.f16x2 acc, t, ${4 + 5 * a + i}, acc;")
    # rows 30 and 31: bit a of each in bits 15 and 31 of word a
    s += ["shr.u32 u, $1, 15;", "lop3.b32 t, u, 0x00010001, 0x64006400, 0xEA;",
          "shr.u32 u, $2, 14;", "lop3.b32 t, u, 0x00020002, t, 0xEA;",
          "shr.u32 u, $3, 13;", "lop3.b32 t, u, 0x00040004, t, 0xEA;",
          "fma.rn.f16x2 t, t, m0, a0;", "fma.rn.f16x2 acc, t, $19, acc;",
          "mov.b32 {lo, hi}, acc;", "cvt.f32.f16 flo, lo;", "cvt.f32.f16 fhi, hi;", "add.f32 flo, flo, fhi;",
          "mov.b32 $0, flo;", "}"]
    return "\n".join(s)

ASM4, ASM3 = _asm4(), _asm3()

@triton.jit
def _lanes(p):
    "fp32 (low, high) halves of an int32 holding two fp16."
    lo = (p & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    hi = ((p >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    return lo, hi

@triton.jit
def _field(w, o, m):
    "Bits o .. o + log2(m + 1) of w as fp32 (logical shift)."
    return ((w.to(tl.uint32, bitcast=True) >> o) & m).to(tl.int32).to(tl.float32)

@triton.jit
def _unit4(w0, w1, w2, w3, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, ASM: tl.constexpr):
    if ASM:
        r = tl.inline_asm_elementwise(ASM4_C, "=r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r",
                                      [w0, w1, w2, w3, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15],
                                      dtype=tl.int32, is_pure=True, pack=1)
        return r.to(tl.float32, bitcast=True)
    else:
        acc = _dot4(w0, x0, x1, x2, x3) + _dot4(w1, x4, x5, x6, x7)
        return acc + _dot4(w2, x8, x9, x10, x11) + _dot4(w3, x12, x13, x14, x15)

@triton.jit
def _dot4(w, x0, x1, x2, x3):
    acc = 0.0
    l, h = _lanes(x0); acc += l * (_field(w, 0, 15) - 8) + h * (_field(w, 16, 15) - 8)
    l, h = _lanes(x1); acc += l * (_field(w, 4, 15) - 8) + h * (_field(w, 20, 15) - 8)
    l, h = _lanes(x2); acc += l * (_field(w, 8, 15) - 8) + h * (_field(w, 24, 15) - 8)
    l, h = _lanes(x3); acc += l * (_field(w, 12, 15) - 8) + h * (_field(w, 28, 15) - 8)
    return acc * 0.125

@triton.jit
def _dot3(w, x0, x1, x2, x3, x4):
    acc = 0.0
    l, h = _lanes(x0); acc += l * (_field(w, 0, 7) - 4) + h * (_field(w, 16, 7) - 4)
    l, h = _lanes(x1); acc += l * (_field(w, 3, 7) - 4) + h * (_field(w, 19, 7) - 4)
    l, h = _lanes(x2); acc += l * (_field(w, 6, 7) - 4) + h * (_field(w, 22, 7) - 4)
    l, h = _lanes(x3); acc += l * (_field(w, 9, 7) - 4) + h * (_field(w, 25, 7) - 4)
    l, h = _lanes(x4); acc += l * (_field(w, 12, 7) - 4) + h * (_field(w, 28, 7) - 4)
    return acc * 0.25

@triton.jit
def _unit3(w0, w1, w2, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, ASM: tl.constexpr):
    if ASM:
        r = tl.inline_asm_elementwise(ASM3_C, "=r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r,r",
                                      [w0, w1, w2, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15],
                                      dtype=tl.int32, is_pure=True, pack=1)
        return r.to(tl.float32, bitcast=True)
    else:
        acc = _dot3(w0, x0, x1, x2, x3, x4) + _dot3(w1, x5, x6, x7, x8, x9) + _dot3(w2, x10, x11, x12, x13, x14)
        q30 = (_field(w0, 15, 1) + 2 * _field(w1, 15, 1) + 4 * _field(w2, 15, 1)) - 4
        q31 = (_field(w0, 31, 1) + 2 * _field(w1, 31, 1) + 4 * _field(w2, 31, 1)) - 4
        l, h = _lanes(x15)
        return acc + (l * q30 + h * q31) * 0.25

ASM4_C = tl.constexpr(ASM4)
ASM3_C = tl.constexpr(ASM3)

# ---- the kernel ----
@triton.jit
def _xpairs(xp, base, ok):
    "The 16 activation pairs of units `base // 16` (int32 [U] each), zero where not `ok`."
    x0 = tl.load(xp + base + 0, mask=ok, other=0); x1 = tl.load(xp + base + 1, mask=ok, other=0)
    x2 = tl.load(xp + base + 2, mask=ok, other=0); x3 = tl.load(xp + base + 3, mask=ok, other=0)
    x4 = tl.load(xp + base + 4, mask=ok, other=0); x5 = tl.load(xp + base + 5, mask=ok, other=0)
    x6 = tl.load(xp + base + 6, mask=ok, other=0); x7 = tl.load(xp + base + 7, mask=ok, other=0)
    x8 = tl.load(xp + base + 8, mask=ok, other=0); x9 = tl.load(xp + base + 9, mask=ok, other=0)
    x10 = tl.load(xp + base + 10, mask=ok, other=0); x11 = tl.load(xp + base + 11, mask=ok, other=0)
    x12 = tl.load(xp + base + 12, mask=ok, other=0); x13 = tl.load(xp + base + 13, mask=ok, other=0)
    x14 = tl.load(xp + base + 14, mask=ok, other=0); x15 = tl.load(xp + base + 15, mask=ok, other=0)
    return x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15

@triton.jit
def _gemv2_kernel(x_ptr, qw_ptr, z_ptr, s_ptr, bias_ptr, y_ptr, part_ptr, cnt_ptr,
                  M, N, n_units, n_groups, stride_xm, stride_ym, n_zw,
                  BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr,
                  ZERO_OFFSET: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                  U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr):
    """y[m] = x[m] @ W + bias for BLOCK_N columns and ITERS*U units of 32 rows (program ids: N tile, row m, split).

    x_ptr   int32 [M, K/2] fp16 activation pairs, rows in sorted (group) order (row stride stride_xm pairs)
    qw_ptr  int32 [n_units*WPU, N] unit-packed weights (WPU = 4 at 4 bits, 3 at 3 bits)
    z_ptr   int32 [n_groups, n_zw] stored zero points, 4 bits each along N (read only if not SYM)
    s_ptr   fp16  [n_groups, N] scales
    y_ptr   fp16  [M, N]; part_ptr fp32 [SPLIT_K, M, N]; cnt_ptr int32 [tiles] arrival counters (split-K only)
    UPG: units per group when GROUPED (group_size / 32).
    """
    WPU: tl.constexpr = BITS                                               # words per unit of 32 rows: 4 or 3
    C: tl.constexpr = 1 << (BITS - 1)                                      # the centre the unit sums are taken about
    pid_n = tl.program_id(0); m = tl.program_id(1); pid_k = tl.program_id(2)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    acc = tl.zeros([BLOCK_N], tl.float32)
    u0 = pid_k * (ITERS * U)
    for it in range(ITERS):
        u = u0 + it * U + tl.arange(0, U)                                  # [U] units
        u_ok = u < n_units
        ok = u_ok[:, None] & n_ok[None, :]
        wrow = qw_ptr + (u * WPU)[:, None] * N + n[None, :]                # [U, BN] word 0 of each unit
        w0 = tl.load(wrow, mask=ok, other=0)
        w1 = tl.load(wrow + N, mask=ok, other=0)
        w2 = tl.load(wrow + 2 * N, mask=ok, other=0)
        x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = _xpairs(x_ptr + m * stride_xm, u * 16, u_ok)
        if BITS == 4:
            w3 = tl.load(wrow + 3 * N, mask=ok, other=0)
            p = _unit4(w0, w1, w2, w3, x0[:, None], x1[:, None], x2[:, None], x3[:, None], x4[:, None], x5[:, None],
                       x6[:, None], x7[:, None], x8[:, None], x9[:, None], x10[:, None], x11[:, None], x12[:, None],
                       x13[:, None], x14[:, None], x15[:, None], ASM)        # [U, BN] fp32: sum x (q - C) / C per unit
        else:
            p = _unit3(w0, w1, w2, x0[:, None], x1[:, None], x2[:, None], x3[:, None], x4[:, None], x5[:, None],
                       x6[:, None], x7[:, None], x8[:, None], x9[:, None], x10[:, None], x11[:, None], x12[:, None],
                       x13[:, None], x14[:, None], x15[:, None], ASM)
        if GROUPED:
            GT: tl.constexpr = U // UPG if U >= UPG else 1                # groups in this tile
            PU: tl.constexpr = U // GT                                    # units per group in this tile
            pg = tl.sum(tl.reshape(p, [GT, PU, BLOCK_N]), 1)               # [GT, BN]
            g = (u0 + it * U) // UPG + tl.arange(0, GT)                    # [GT] groups
            g_ok = g < n_groups
            s = tl.load(s_ptr + g[:, None] * N + n[None, :], mask=g_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
            if not SYM:
                zw = tl.load(z_ptr + g[:, None] * n_zw + (n // 8)[None, :], mask=g_ok[:, None] & n_ok[None, :], other=0)
                z = (((zw >> ((n % 8) * 4)[None, :]) & 0xF) + ZERO_OFFSET - C).to(tl.float32)   # [GT, BN] z - C
                xh = tl.load(x_ptr.to(tl.pointer_type(tl.float16)) + 2 * m * stride_xm
                             + (u * 32)[:, None] + tl.arange(0, 32)[None, :], mask=u_ok[:, None], other=0.0)
                xs = tl.sum(tl.reshape(tl.sum(xh.to(tl.float32), 1), [GT, PU]), 1)   # [GT] sum of x per group
                pg = pg - z * xs[:, None] * (1.0 / C)
            acc += tl.sum(s * pg, 0)
        else:
            if SYM:
                acc += tl.sum(p, 0)
            else:
                xh = tl.load(x_ptr.to(tl.pointer_type(tl.float16)) + 2 * m * stride_xm
                             + (u * 32)[:, None] + tl.arange(0, 32)[None, :], mask=u_ok[:, None], other=0.0)
                zw = tl.load(z_ptr + n // 8, mask=n_ok, other=0)
                z = (((zw >> ((n % 8) * 4)) & 0xF) + ZERO_OFFSET - C).to(tl.float32)
                acc += tl.sum(p, 0) - z * (tl.sum(tl.sum(xh.to(tl.float32), 1), 0) * (1.0 / C))
    if GROUPED:
        acc = acc * C
    else:
        acc = acc * (C * tl.load(s_ptr + n, mask=n_ok, other=0.0).to(tl.float32))
    if SPLIT_K > 1:
        tl.store(part_ptr + (pid_k * M + m) * N + n, acc, mask=n_ok)
        tl.debug_barrier()
        tile = m * tl.num_programs(0) + pid_n
        count = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if count == SPLIT_K - 1:
            acc = tl.zeros_like(acc)
            for sk in range(SPLIT_K):
                acc += tl.load(part_ptr + (sk * M + m) * N + n, mask=n_ok, other=0.0, cache_modifier=".cg")
            if HAS_BIAS:
                acc += tl.load(bias_ptr + n, mask=n_ok, other=0.0).to(tl.float32)
            tl.store(y_ptr + m * stride_ym + n, acc.to(y_ptr.dtype.element_ty), mask=n_ok)
            tl.atomic_xchg(cnt_ptr + tile, 0)
    else:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + n, mask=n_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + m * stride_ym + n, acc.to(y_ptr.dtype.element_ty), mask=n_ok)

# ---- packing and launching ----
class Packed2:
    def __init__(self, qweight, qzeros, scales, g_idx, bits, group_size, bias=None, v2=False):
        K, N = g_idx.shape[0], scales.shape[1]
        if group_size != -1 and group_size % 32: raise ValueError("group_size must be -1 or a multiple of 32")
        if K % 32: raise ValueError("in_features must be a multiple of 32")
        self.perm = group_order(g_idx, group_size)
        q = unpack_rows(qweight, bits)
        if self.perm is not None: q = q[self.perm.long()]
        self.qweight = pack_units(q, bits)
        z = unpack_cols(qzeros, bits)[:, :N] + (0 if v2 else 1)
        self.sym = bool((z == 2 ** (bits - 1)).all())
        self.zeros = _pack_nibbles(z - (0 if v2 else 1))
        self.scales, self.bias = scales.contiguous(), bias
        self.bits, self.group_size, self.in_features, self.out_features = bits, group_size, K, N
        self.zero_offset = 0 if v2 else 1

LAST = None
_CNT = {}
def _counters(device, n):
    c = _CNT.get(device)
    if c is None or c.numel() < n: c = _CNT[device] = torch.zeros(max(n, 1 << 16), dtype=torch.int32, device=device)
    return c

def gemv2(x, p:Packed2, U=2, block_n=None, num_warps=4, split_k=None, asm=None, gathered=False):
    "y = x @ W (+ bias): x fp16 [M, K] in input order (or already in sorted order if `gathered`)."
    K, N = p.in_features, p.out_features
    x2 = x.reshape(-1, K)
    if p.perm is not None and not gathered: x2 = x2[:, p.perm.long()]
    x2 = x2.contiguous()
    M = x2.shape[0]
    xp = x2.view(torch.int32)                                             # [M, K/2] pairs
    asm = (x.device.type == 'cuda' and os.environ.get('TRITON_INTERPRET') != '1') if asm is None else asm
    bn = block_n or 128 * num_warps
    bn = min(bn, max(16, triton.next_power_of_2(N)))
    n_units = K // 32
    tiles = -(-N // bn) * M
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.device.type == 'cuda' else 4
    if split_k is None:
        want = max(1, round(4 * sms / tiles))
        split_k = min(want, -(-n_units // U))
    per = -(-n_units // split_k)
    iters = -(-per // U)
    split_k = -(-n_units // (iters * U))
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    part = torch.empty(split_k, M, N, dtype=torch.float32, device=x.device) if split_k > 1 else y
    cnt = _counters(x.device, tiles) if split_k > 1 else y
    upg = p.group_size // 32 if p.group_size != -1 else 1
    global LAST
    LAST = _gemv2_kernel[(-(-N // bn), M, split_k)](
        xp, p.qweight, p.zeros, p.scales, y if p.bias is None else p.bias, y, part, cnt,
        M, N, n_units, p.scales.shape[0], xp.stride(0), y.stride(0), p.zeros.shape[1],
        BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1, SYM=p.sym, ZERO_OFFSET=p.zero_offset,
        HAS_BIAS=p.bias is not None, ASM=asm, U=U, BLOCK_N=bn, SPLIT_K=split_k, ITERS=iters, num_warps=num_warps)
    return y.reshape(*x.shape[:-1], N)
