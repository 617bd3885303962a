"""Batch-1 decode's four matmuls per layer as ONE launch for many layers, against one launch each (not adopted).

Each of the batch-1 kernel's launches pays a fixed cost its bytes do not explain: q/k/v and o take 16-20 us where
their weights need 8-10 (`gemv_pdl_NVIDIA_H200.json`, `profile_decode_pf_NVIDIA_H200.json`). If that were the launch
boundary, programs that stay resident across layers would remove it. Here P programs run a chain of L layers
(q/k/v -> o -> gate/up with SiLU.mul -> down -> next layer's q/k/v; no norms or attention) and walk the work items
of each matmul in turn: item i is (column tile, split) = (i % tiles, i // tiles), run exactly as `_gemv_kernel` runs
one program, so the outputs are bit-identical to separate launches at the same tile, split and step sizes. Two
orderings: `_chain_kernel`, a grid barrier between matmuls (before it, optionally, L2 is asked for the first `PF`
steps of the program's next item); `_flow_kernel` (`--flow`), per-tile completion flags: an item asks for its first
words, then waits only for the producer tiles its rows of x come from (`--poll`: atomics, or `ld.acquire` after
`nanosleep`). On the H200 neither beat separate launches of the same tiles (`persist_*_NVIDIA_H200.json`,
`04_gptq_matmul`, "Sixth session").

Safety: all P programs must be resident at once (checked from the compiled kernel's registers and shared memory
before launching); a wait gives up after 2^20 polls and counts itself in `err`. The CPU interpreter runs programs
one by one, so only P = 1 is tested there (`--cpu-test`, small shapes, both chains bit-identical to separate launches).

    PYTHONPATH=.:bench python bench/proto/persist.py [--branches 4:-1,4:128,3:128] [--layers 8] [--per-sm 4,6,8] [--pf 0,2|none] [--flow --poll 0,1]
    TRITON_INTERPRET=1 PYTHONPATH=.:bench python bench/proto/persist.py --cpu-test
"""
import argparse, json, math, os, sys
import torch
import triton
import triton.language as tl
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import _words, _group_scales, _gemv_step, _finish, _l2_line, _store_y

SHAPES = dict(qkv=(8192, 10240), o=(8192, 8192), gate_up=(8192, 57344), down=(28672, 8192))

@triton.jit
def _prefetch(qw_ptr, pid_n, pid_k, N, n_units, BITS: tl.constexpr, U: tl.constexpr, BLOCK_N: tl.constexpr,
              ITERS: tl.constexpr, SWIGLU: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr):
    "Ask L2 for the 128-byte lines of the first PF steps' words of item (pid_n, pid_k)."
    if ASM and PF > 0:
        LPR: tl.constexpr = BLOCK_N // 32                                 # lines per word row (32 int32 a line)
        c = tl.arange(0, LPR)
        if SWIGLU:                                                        # half the lines in the gate columns, half in the up columns
            HL: tl.constexpr = LPR // 2
            col = pid_n * (BLOCK_N // 2) + (c % HL) * 32 + (c // HL) * (N // 2)
        else:
            col = pid_n * BLOCK_N + c * 32
        for r in tl.static_range(PF * U * BITS):                          # word rows of the first PF steps
            row = pid_k * ITERS * U * BITS + r
            _l2_line(qw_ptr + row.to(tl.int64) * N + col, (col >= 0) & (row < n_units * BITS))

@triton.jit
def _pid(ASM: tl.constexpr):
    "tl.program_id(0), read again where called (volatile): what derives from it is not hoisted out of the layer loop and kept live in registers across all four phases."
    if ASM:
        return tl.inline_asm_elementwise("mov.u32 $0, %ctaid.x;", "=r,r", [tl.program_id(0)], dtype=tl.int32, is_pure=False, pack=1)
    else:
        return tl.program_id(0)

@triton.jit
def _poll(p, POLL: tl.constexpr):
    "The int32 at p, read with acquire: an atomic (POLL 0), or a plain `ld.acquire` after a ~100 ns `nanosleep` (POLL 1: no read-modify-writes hammering L2)."
    if POLL == 1:
        return tl.inline_asm_elementwise("{ nanosleep.u32 100; ld.acquire.gpu.global.b32 $0, [$1]; }", "=r,l", [p],
                                         dtype=tl.int32, is_pure=False, pack=1)
    else:
        return tl.atomic_add(p, 0, sem="acquire")

@triton.jit
def _sync(bar_ptr, target, err_ptr):
    "Grid barrier: this program's arrival (release), then wait (acquire) until `target` arrivals; gives up after 2^20 polls."
    tl.debug_barrier()
    tl.atomic_add(bar_ptr, 1, sem="release")
    seen = tl.atomic_add(bar_ptr, 0, sem="acquire")
    tries = 0
    while (seen < target) & (tries < 1048576):
        seen = tl.atomic_add(bar_ptr, 0, sem="acquire")
        tries += 1
    if seen < target:
        tl.atomic_add(err_ptr, 1)
    tl.debug_barrier()

@triton.jit
def _phase(pid, P: tl.constexpr, x_ptr, qw_ptr, z_ptr, s_ptr, y_ptr, part_ptr, cnt_ptr, N, K, n_units, n_groups, n_zw,
           BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr,
           ASM: tl.constexpr, U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr,
           EVEN: tl.constexpr, SWIGLU: tl.constexpr, TILES: tl.constexpr):
    "This program's items of one matmul: pid, pid + P, ..."
    pid = _pid(ASM)
    for j in range((TILES * SPLIT_K + P - 1) // P):                       # a constexpr trip count (the interpreter's range needs one)
        i = pid + j * P
        if i < TILES * SPLIT_K:
            _item(x_ptr, qw_ptr, z_ptr, s_ptr, y_ptr, part_ptr, cnt_ptr, cnt_ptr, cnt_ptr, cnt_ptr, i % TILES, i // TILES,
                       N, K, n_units, n_groups, n_zw, BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, U, BLOCK_N, SPLIT_K, ITERS,
                       EVEN, SWIGLU, False, 1, 1, 0, False)

@triton.jit
def _ask(pid, qw_ptr, N, n_units, BITS: tl.constexpr, U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr,
         ITERS: tl.constexpr, SWIGLU: tl.constexpr, TILES: tl.constexpr, PF: tl.constexpr, ASM: tl.constexpr):
    "Prefetch this program's first item of the next matmul (if it has one)."
    pid = _pid(ASM)
    if pid < TILES * SPLIT_K:
        _prefetch(qw_ptr, pid % TILES, pid // TILES, N, n_units, BITS, U, BLOCK_N, ITERS, SWIGLU, PF, ASM)

@triton.jit
def _chain_kernel(x_ptr, yq_ptr, yo_ptr, h_ptr,                          # fp16 [8192] in/out of every layer, [Nq], [No], [Ng/2]
                  qw_q, z_q, s_q, qw_o, z_o, s_o, qw_g, z_g, s_g, qw_d, z_d, s_d,   # per kind: layer 0's tensors; layer l at + l * stride
                  lq_w, lq_z, lq_s, lo_w, lo_z, lo_s, lg_w, lg_z, lg_s, ld_w, ld_z, ld_s,   # layer strides (elements)
                  part_ptr, cnt_ptr, bar_ptr, err_ptr,
                  Kq, Nq, Ko, No, Kg, Ng, Kd, Nd, gq, go, gg, gd, zq, zo, zg, zd,   # shapes, groups, zero-word columns
                  BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr,
                  ASM: tl.constexpr, PF: tl.constexpr, L: tl.constexpr, P: tl.constexpr,
                  Q_U: tl.constexpr, Q_BN: tl.constexpr, Q_S: tl.constexpr, Q_IT: tl.constexpr, Q_EV: tl.constexpr, Q_T: tl.constexpr,
                  O_U: tl.constexpr, O_BN: tl.constexpr, O_S: tl.constexpr, O_IT: tl.constexpr, O_EV: tl.constexpr, O_T: tl.constexpr,
                  G_U: tl.constexpr, G_BN: tl.constexpr, G_S: tl.constexpr, G_IT: tl.constexpr, G_EV: tl.constexpr, G_T: tl.constexpr,
                  D_U: tl.constexpr, D_BN: tl.constexpr, D_S: tl.constexpr, D_IT: tl.constexpr, D_EV: tl.constexpr, D_T: tl.constexpr):
    """L layers of x -> q/k/v -> o (its first No inputs: q/k/v's first Ko outputs) -> gate/up, SiLU.mul -> down -> x.
    qw_*: int32 unit-packed words, z_*: int32 zero words, s_*: fp16 scales (`GPTQPacked`), stacked over layers.
    part_ptr fp32 split-K workspace; cnt_ptr int32 [4 * 4096] tile counters (zeros, self-resetting);
    bar_ptr int32 [1] zeroed before the launch; err_ptr int32 [1]: barriers that gave up."""
    pid = tl.program_id(0)
    nq = Kq // 32; no = Ko // 32; ng = Kg // 32; nd = Kd // 32
    for l in range(L):
        base = l * 4
        _phase(pid, P, x_ptr, qw_q + l * lq_w, z_q + l * lq_z, s_q + l * lq_s, yq_ptr, part_ptr, cnt_ptr, Nq, Kq, nq, gq, zq,
               BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, Q_U, Q_BN, Q_S, Q_IT, Q_EV, False, Q_T)
        _ask(pid, qw_o + l * lo_w, No, no, BITS, O_U, O_BN, O_S, O_IT, False, O_T, PF, ASM)
        _sync(bar_ptr, (base + 1) * P, err_ptr)
        _phase(pid, P, yq_ptr, qw_o + l * lo_w, z_o + l * lo_z, s_o + l * lo_s, yo_ptr, part_ptr, cnt_ptr + 4096, No, Ko, no, go, zo,
               BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, O_U, O_BN, O_S, O_IT, O_EV, False, O_T)
        _ask(pid, qw_g + l * lg_w, Ng, ng, BITS, G_U, G_BN, G_S, G_IT, True, G_T, PF, ASM)
        _sync(bar_ptr, (base + 2) * P, err_ptr)
        _phase(pid, P, yo_ptr, qw_g + l * lg_w, z_g + l * lg_z, s_g + l * lg_s, h_ptr, part_ptr, cnt_ptr + 8192, Ng, Kg, ng, gg, zg,
               BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, G_U, G_BN, G_S, G_IT, G_EV, True, G_T)
        _ask(pid, qw_d + l * ld_w, Nd, nd, BITS, D_U, D_BN, D_S, D_IT, False, D_T, PF, ASM)
        _sync(bar_ptr, (base + 3) * P, err_ptr)
        _phase(pid, P, h_ptr, qw_d + l * ld_w, z_d + l * ld_z, s_d + l * ld_s, x_ptr, part_ptr, cnt_ptr + 12288, Nd, Kd, nd, gd, zd,
               BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, D_U, D_BN, D_S, D_IT, D_EV, False, D_T)
        if l + 1 < L:
            _ask(pid, qw_q + (l + 1) * lq_w, Nq, nq, BITS, Q_U, Q_BN, Q_S, Q_IT, False, Q_T, PF, ASM)
        _sync(bar_ptr, (base + 4) * P, err_ptr)

# ---- dataflow: per-tile completion flags instead of grid barriers ----------------------------------------------------

@triton.jit
def _wait_tiles(flag_ptr, lo, hi, NT: tl.constexpr, err_ptr, POLL: tl.constexpr = 0):
    "Wait (acquire) until every producer tile lo..hi (at most NT of them) has set its flag; gives up after 2^20 polls."
    for t in tl.static_range(NT):
        if lo + t <= hi:
            seen = tl.atomic_add(flag_ptr + lo + t, 0, sem="acquire")
            tries = 0
            while (seen < 1) & (tries < 1048576):
                seen = _poll(flag_ptr + lo + t, POLL)
                tries += 1
            if seen < 1:
                tl.atomic_add(err_ptr, 1)
    tl.debug_barrier()

@triton.jit
def _finish_flag(acc, n, n_ok, pid_k, N, y_ptr, part_ptr, cnt_ptr, flag_ptr, tile, SPLIT_K: tl.constexpr, SWIGLU: tl.constexpr):
    "`_finish` for row 0, then the tile's completion flag (release) once its output is stored."
    rows = tl.zeros([1], tl.int32)
    if SPLIT_K > 1:
        tl.store(part_ptr + pid_k * N + n[None, :], acc, mask=n_ok[None, :])
        tl.debug_barrier()
        count = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
        if count == SPLIT_K - 1:
            acc = tl.zeros_like(acc)
            for sk in range(SPLIT_K):
                acc += tl.load(part_ptr + sk * N + n[None, :], mask=n_ok[None, :], other=0.0, cache_modifier=".cg")
            _store_y(acc, rows, rows < 1, n, n_ok, 0, y_ptr, SWIGLU)
            tl.atomic_xchg(cnt_ptr + tile, 0)
            tl.debug_barrier()
            tl.atomic_add(flag_ptr + tile, 1, sem="release")
    else:
        _store_y(acc, rows, rows < 1, n, n_ok, 0, y_ptr, SWIGLU)
        tl.debug_barrier()
        tl.atomic_add(flag_ptr + tile, 1, sem="release")

@triton.jit
def _item(x_ptr, qw_ptr, z_ptr, s_ptr, y_ptr, part_ptr, cnt_ptr, flag_ptr, in_flag_ptr, err_ptr, pid_n, pid_k,
               N, K, n_units, n_groups, n_zw,
               BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr,
               ASM: tl.constexpr, U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr,
               EVEN: tl.constexpr, SWIGLU: tl.constexpr, WAIT: tl.constexpr, IN_COLS: tl.constexpr, NT: tl.constexpr,
               POLL: tl.constexpr, FLOW: tl.constexpr = True):
    """One program of `_gemv_kernel` (row 0): column tile pid_n, split pid_k; x_ptr fp16 [K], y_ptr fp16 [N] ([N/2] SWIGLU).
    FLOW: its first step's words are asked for before it waits (WAIT) on the producer tiles its rows come from
    (IN_COLS columns a tile, at most NT of them), and its tile's flag is set once y is stored (`_finish_flag`);
    else `_finish` as the batch-1 kernel's (flag_ptr, in_flag_ptr and err_ptr unused)."""
    C: tl.constexpr = 1 << (BITS - 1)
    if SWIGLU:
        HB: tl.constexpr = BLOCK_N // 2
        jl = tl.arange(0, BLOCK_N)
        col = pid_n * HB + jl % HB
        n = col + (jl // HB) * (N // 2)
        n_ok = col < N // 2
    else:
        n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = n < N
    GT: tl.constexpr = (U // UPG if U >= UPG else 1) if GROUPED else 1
    acc = tl.zeros([GT, BLOCK_N], tl.float32)
    xh = x_ptr
    xrow = x_ptr.to(tl.pointer_type(tl.int32))                            # pairs; plain loads (not the pure-asm 128-bit ones: they could be hoisted across a wait)
    ub = pid_k * ITERS * U
    lim = tl.minimum(n_units, ub + ITERS * U)
    u = ub + tl.arange(0, U)
    w0, w1, w2, w3 = _words(qw_ptr, u, n, n_ok, N, lim, BITS, EVEN)
    s = _group_scales(s_ptr, ub, n, n_ok, N, n_groups, UPG, GROUPED, U, EVEN)
    if WAIT:                                                               # rows ub*32 .. lim*32 - 1 of x: producer tiles
        _wait_tiles(in_flag_ptr, (ub * 32) // IN_COLS, (lim * 32 - 1) // IN_COLS, NT, err_ptr, POLL)
    for it in range(ITERS):
        u0 = ub + it * U
        un = u + U
        if EVEN:
            un = tl.minimum(un, n_units - 1)
        v0, v1, v2, v3 = _words(qw_ptr, un, n, n_ok, N, lim, BITS, EVEN)
        t = _group_scales(s_ptr, u0 + U, n, n_ok, N, n_groups, UPG, GROUPED, U, EVEN)
        acc += _gemv_step(w0, w1, w2, w3, s, xrow, xh, z_ptr, u, u0, n, n_ok, K, N, n_units, n_groups, n_zw,
                          BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, U, BLOCK_N, EVEN, False)
        w0, w1, w2, w3, s, u = v0, v1, v2, v3, t, u + U
    acc = tl.sum(acc, 0)
    if GROUPED:
        acc = acc * C
    else:
        acc = acc * (C * tl.load(s_ptr + n, mask=n_ok, other=0.0).to(tl.float32))
    if FLOW:
        _finish_flag(acc[None, :], n, n_ok, pid_k, N, y_ptr, part_ptr, cnt_ptr, flag_ptr, pid_n, SPLIT_K, SWIGLU)
    else:
        rows = tl.zeros([1], tl.int32)
        _finish(acc[None, :], rows, rows < 1, n, n_ok, pid_k, 1, N, 0, y_ptr, y_ptr, part_ptr, cnt_ptr, pid_n,
                False, SPLIT_K, SWIGLU)

@triton.jit
def _phase_flow(P: tl.constexpr, x_ptr, qw_ptr, z_ptr, s_ptr, y_ptr, part_ptr, cnt_ptr, flag_ptr, in_flag_ptr, err_ptr,
                N, K, n_units, n_groups, n_zw,
                BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr,
                ASM: tl.constexpr, U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr,
                EVEN: tl.constexpr, SWIGLU: tl.constexpr, TILES: tl.constexpr, WAIT: tl.constexpr, IN_COLS: tl.constexpr,
                POLL: tl.constexpr):
    "This program's items of one matmul, each waiting only for the producer tiles of its own rows."
    NT: tl.constexpr = (ITERS * U * 32 + IN_COLS - 1) // IN_COLS + 1
    pid = _pid(ASM)
    for j in range((TILES * SPLIT_K + P - 1) // P):
        i = pid + j * P
        if i < TILES * SPLIT_K:
            _item(x_ptr, qw_ptr, z_ptr, s_ptr, y_ptr, part_ptr, cnt_ptr, flag_ptr, in_flag_ptr, err_ptr, i % TILES, i // TILES,
                       N, K, n_units, n_groups, n_zw, BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, U, BLOCK_N, SPLIT_K, ITERS,
                       EVEN, SWIGLU, WAIT, IN_COLS, NT, POLL)

@triton.jit
def _flow_kernel(x_ptr, yq_ptr, yo_ptr, h_ptr,                           # fp16 [L+1, Kq], [L, Nq], [L, No], [L, Ng/2]: every layer its own
                 qw_q, z_q, s_q, qw_o, z_o, s_o, qw_g, z_g, s_g, qw_d, z_d, s_d,
                 lq_w, lq_z, lq_s, lo_w, lo_z, lo_s, lg_w, lg_z, lg_s, ld_w, ld_z, ld_s,
                 part_ptr, cnt_ptr, flag_ptr, err_ptr, WS,                # fp32 [L, 4, WS]; int32 [L, 4, 1024] counters (zeros), [L+1, 4, 1024] flags
                 Kq, Nq, Ko, No, Kg, Ng, Kd, Nd, gq, go, gg, gd, zq, zo, zg, zd,
                 BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr, ZERO_OFFSET: tl.constexpr,
                 ASM: tl.constexpr, PF: tl.constexpr, L: tl.constexpr, P: tl.constexpr, POLL: tl.constexpr,
                 Q_U: tl.constexpr, Q_BN: tl.constexpr, Q_S: tl.constexpr, Q_IT: tl.constexpr, Q_EV: tl.constexpr, Q_T: tl.constexpr,
                 O_U: tl.constexpr, O_BN: tl.constexpr, O_S: tl.constexpr, O_IT: tl.constexpr, O_EV: tl.constexpr, O_T: tl.constexpr,
                 G_U: tl.constexpr, G_BN: tl.constexpr, G_S: tl.constexpr, G_IT: tl.constexpr, G_EV: tl.constexpr, G_T: tl.constexpr,
                 D_U: tl.constexpr, D_BN: tl.constexpr, D_S: tl.constexpr, D_IT: tl.constexpr, D_EV: tl.constexpr, D_T: tl.constexpr):
    """The chain of `_chain_kernel` with no grid barrier: an item waits on the completion flags of the tiles that
    produce its rows of x (down's of the layer before for q/k/v, q/k/v's for o, ...). Every layer has its own
    activations, workspaces, counters and flags, so no item overwrites what a slower one still reads."""
    nq = Kq // 32; no = Ko // 32; ng = Kg // 32; nd = Kd // 32
    for l in range(L):
        pp = part_ptr + l * 4 * WS; cc = cnt_ptr + l * 4096; ff = flag_ptr + (l + 1) * 4096   # block 0: a layer -1 whose down is done
        _phase_flow(P, x_ptr + l * Kq, qw_q + l * lq_w, z_q + l * lq_z, s_q + l * lq_s, yq_ptr + l * Nq, pp, cc, ff,
                    ff - 4096 + 3072, err_ptr, Nq, Kq, nq, gq, zq,
                    BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, Q_U, Q_BN, Q_S, Q_IT, Q_EV, False, Q_T, True, D_BN, POLL)
        _phase_flow(P, yq_ptr + l * Nq, qw_o + l * lo_w, z_o + l * lo_z, s_o + l * lo_s, yo_ptr + l * No, pp + WS, cc + 1024, ff + 1024,
                    ff, err_ptr, No, Ko, no, go, zo,
                    BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, O_U, O_BN, O_S, O_IT, O_EV, False, O_T, True, Q_BN, POLL)
        _phase_flow(P, yo_ptr + l * No, qw_g + l * lg_w, z_g + l * lg_z, s_g + l * lg_s, h_ptr + l * (Ng // 2), pp + 2 * WS, cc + 2048,
                    ff + 2048, ff + 1024, err_ptr, Ng, Kg, ng, gg, zg,
                    BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, G_U, G_BN, G_S, G_IT, G_EV, True, G_T, True, O_BN, POLL)
        _phase_flow(P, h_ptr + l * (Ng // 2), qw_d + l * ld_w, z_d + l * ld_z, s_d + l * ld_s, x_ptr + (l + 1) * Kq, pp + 3 * WS,
                    cc + 3072, ff + 3072, ff + 2048, err_ptr, Nd, Kd, nd, gd, zd,
                    BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, D_U, D_BN, D_S, D_IT, D_EV, False, D_T, True, G_BN // 2, POLL)

def _common(layers, plans):
    "What both chains pass: stacked weights and their layer strides, shapes, group and zero-word counts, per-matmul and per-model constexprs."
    kinds = ['qkv', 'o', 'gate_up', 'down']; p0 = layers[0]['qkv']
    st = {k: stack([l[k] for l in layers]) for k in kinds}
    ptrs = [t for k in kinds for t in st[k][0]]
    strides = [s for k in kinds for s in st[k][1]]
    shapes = [d for k in kinds for d in (layers[0][k].in_features, layers[0][k].out_features)]   # Kq, Nq, Ko, No, Kg, Ng, Kd, Nd
    counts = [layers[0][k].scales.shape[0] for k in kinds] + [layers[0][k].zeros.shape[1] for k in kinds]
    cfg = {f'{pre}_{f}': plans[k][f] for k, pre in zip(kinds, 'QOGD') for f in ('U', 'BN', 'S', 'IT', 'EV', 'T')}
    cfg.update(BITS=p0.bits, UPG=p0.group_size // 32 if p0.group_size != -1 else 1, GROUPED=p0.group_size != -1, SYM=p0.sym,
               ZERO_OFFSET=p0.zero_offset, ASM=gm._asm_ok(p0.qweight.device), L=len(layers))
    return kinds, ptrs, strides, shapes, counts, cfg

def resident(ck):
    "(registers, shared bytes, programs that fit on one SM) of a compiled 4-warp kernel."
    if hasattr(ck, '_init_handles'): ck._init_handles()
    regs, smem = ck.n_regs, ck.metadata.shared
    return regs, smem, min(65536 // (max(regs, 1) * 128), 16, (228 * 1024) // max(smem + 1024, 1))

def run_flow(x, layers, plans, P, poll=0):
    "The dataflow chain over `layers` from x fp16 [Kq]: returns (launch, (x after each layer [L+1, Kq], err))."
    dev = x.device; L = len(layers)
    kinds, ptrs, strides, shapes, counts, cfg = _common(layers, plans)
    Kq, Nq, Ko, No, Kg, Ng, Kd, Nd = shapes
    xs = torch.zeros(L + 1, Kq, dtype=torch.float16, device=dev); xs[0] = x
    yq = torch.empty(L, Nq, dtype=torch.float16, device=dev); yo = torch.empty(L, No, dtype=torch.float16, device=dev)
    h = torch.empty(L, Ng // 2, dtype=torch.float16, device=dev)
    WS = max(plans[k]['S'] * layers[0][k].out_features for k in kinds)
    part = torch.empty(L * 4 * WS, dtype=torch.float32, device=dev)
    cnt = torch.zeros(L * 4096, dtype=torch.int32, device=dev)
    flags0 = torch.zeros((L + 1) * 4096, dtype=torch.int32, device=dev); flags0[3072:4096] = 1   # layer -1's down: done
    flags = flags0.clone()
    err = torch.zeros(1, dtype=torch.int32, device=dev)
    def launch(warmup=False):
        if not warmup: flags.copy_(flags0)
        fn = _flow_kernel.warmup if warmup else _flow_kernel.__getitem__((P,))
        kw = dict(grid=(P,)) if warmup else {}
        return fn(xs, yq, yo, h, *ptrs, *strides, part, cnt, flags, err, WS, *shapes, *counts,
                  PF=0, P=P, POLL=poll if cfg['ASM'] else 0, **cfg, num_warps=4, **kw)
    return launch, (xs, err)

def plan(K, N, bits, gs, P, U=1, bn=512, swiglu=False, split=None):
    "Tile/split/steps of one matmul for P programs: the split (a divisor of the steps) whose items come nearest P without passing it."
    steps = -(-K // 32) // U
    tiles = -(-N // bn)
    if split is None:
        divs = [d for d in range(1, steps + 1) if steps % d == 0]
        fit = [d for d in divs if tiles * d <= P]
        split = max(fit) if fit else 1
    iters = -(-steps // split)
    ev = K % 32 == 0 and N % bn == 0 and steps % split == 0
    return dict(U=U, BN=bn, S=split, IT=iters, EV=ev, T=tiles)

def stack(ps):
    "Layer tensors of one kind stacked: (qweight, zeros, scales) [L, ...] and their layer strides."
    ts = [torch.stack([getattr(p, a) for p in ps]) for a in ('qweight', 'zeros', 'scales')]
    return ts, [t.stride(0) for t in ts]

def run_chain(x, layers, plans, P, PF=0):
    "The grid-barrier chain over `layers` (list of dicts kind -> GPTQPacked, same config) from x fp16 [Kq]: returns (launch, (x, q/k/v, o, h, err))."
    dev = x.device
    kinds, ptrs, strides, shapes, counts, cfg = _common(layers, plans)
    Kq, Nq, Ko, No, Kg, Ng, Kd, Nd = shapes
    yq = torch.empty(Nq, dtype=torch.float16, device=dev); yo = torch.empty(No, dtype=torch.float16, device=dev)
    h = torch.empty(Ng // 2, dtype=torch.float16, device=dev)
    part = torch.empty(max(plans[k]['S'] * layers[0][k].out_features for k in kinds), dtype=torch.float32, device=dev)
    cnt = torch.zeros(4 * 4096, dtype=torch.int32, device=dev)
    bar = torch.zeros(1, dtype=torch.int32, device=dev); err = torch.zeros(1, dtype=torch.int32, device=dev)
    xo = x.clone()
    def launch(warmup=False):
        if not warmup: bar.zero_()
        fn = _chain_kernel.warmup if warmup else _chain_kernel.__getitem__((P,))
        kw = dict(grid=(P,)) if warmup else {}
        return fn(xo, yq, yo, h, *ptrs, *strides, part, cnt, bar, err, *shapes, *counts, PF=PF, P=P, **cfg, num_warps=4, **kw)
    return launch, (xo, yq, yo, h, err)

def chain_ref(x, layers, plans=None):
    "The same chain as separate `gptq_matmul` launches (at `plans`' tiles and splits when given: bit-identical)."
    def kw(k):
        if plans is None: return {}
        p = plans[k]
        return dict(U=p['U'], block_n=p['BN'], split_k=p['S'], num_warps=4, even=p['EV'])
    outs = []
    for l in layers:
        yq = gm.gptq_matmul(x[None], l['qkv'], x_sorted=True, **kw('qkv'))     # [1, Nq]
        yo = gm.gptq_matmul(yq[:, :l['o'].in_features], l['o'], x_sorted=True, **kw('o'))
        h = gm.gptq_matmul(yo, l['gate_up'], x_sorted=True, swiglu_out=True, **kw('gate_up'))
        x = gm.gptq_matmul(h, l['down'], x_sorted=True, **kw('down'))[0]
        outs.append((yq[0], yo[0], h[0], x))
    return x, outs

def make_layers(L, bits, gs, dev, shapes=SHAPES, seed=0):
    "Random GPTQ layers (symmetric, act-order) with scales sized so activations stay O(1) along the chain."
    from gptq_matmul_gpu import random_gptq
    torch.manual_seed(seed)
    out = []
    for _ in range(L):
        d = {}
        for k, (K, N) in shapes.items():
            qw, qz, s, g = random_gptq(K, N, bits, gs, dev)
            s = (s.float() / s.float().mean() * (1.0 / (0.5 * (2 ** bits) * math.sqrt(K) / math.sqrt(3)))).half()
            d[k] = gm.prepare(qw, qz, s, g, bits=bits, group_size=gs)
        out.append(d)
    return out

def cpu_test():
    "P = 1 under the interpreter, small shapes: the chain equals separate launches at the same tiles and splits, bit for bit."
    dev = torch.device('cpu')
    shapes = dict(qkv=(128, 160), o=(128, 128), gate_up=(128, 384), down=(192, 128))
    for bits, gs in [(4, -1), (4, 32), (3, 64)]:
        layers = make_layers(2, bits, gs, dev, shapes)
        plans = {k: plan(K, N, bits, gs, 20, bn=32 if k != 'gate_up' else 64, swiglu=k == 'gate_up') for k, (K, N) in shapes.items()}
        x = torch.randn(128, dtype=torch.float16)
        launch, (xo, yq, yo, h, err) = run_chain(x, layers, plans, P=1)
        launch()
        xr, outs = chain_ref(x, layers, plans)
        assert err.item() == 0
        assert torch.equal(xo, xr), (bits, gs, (xo.float() - xr.float()).abs().max())
        assert torch.equal(h, outs[-1][2]) and torch.equal(yq, outs[-1][0])
        flaunch, (xs, ferr) = run_flow(x, layers, plans, P=1)
        flaunch()
        assert ferr.item() == 0 and torch.equal(xs[-1], xr), (bits, gs, 'flow')
        xf, _ = chain_ref(x, layers)                                       # the launcher's own tiles: same values to rounding
        torch.testing.assert_close(xo, xf, rtol=2e-2, atol=2e-2)
        print(f"cpu {bits}-bit gs {gs}: persistent and dataflow chains == separate launches (plans {[(k, v['S'], v['T']) for k, v in plans.items()]})")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cpu-test', action='store_true')
    ap.add_argument('--branches', default='4:-1,4:128,3:128')
    ap.add_argument('--layers', type=int, default=8)
    ap.add_argument('--per-sm', default='4,6,8')
    ap.add_argument('--pf', default='0,2', help='grid-barrier chain: steps asked of L2 before each barrier ("none": no grid-barrier chain)')
    ap.add_argument('--flow', action='store_true', help='also the dataflow chain (per-tile flags)')
    ap.add_argument('--poll', default='0,1', help='dataflow waits: 0 atomic polls, 1 ld.acquire after nanosleep')
    ap.add_argument('--bn', default='qkv=512,o=256,gate_up=512,down=512')
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    args = ap.parse_args()
    if args.cpu_test: return cpu_test()
    from triton.testing import do_bench
    from gptq_matmul_gpu import copy_bandwidth, graph_time, branch_name
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); sms = gm._n_sms(dev)
    bw = copy_bandwidth(dev); print(f"{card}: copy {bw:.0f} GB/s, {sms} SMs", flush=True)
    bns = {kv.split('=')[0]: int(kv.split('=')[1]) for kv in args.bn.split(',')}
    recs = []; L = args.layers
    for br in args.branches.split(','):
        bits, gs = map(int, br.split(':')); name = branch_name(bits, gs)
        layers = make_layers(L, bits, gs, dev)
        floor_us = sum(gm.gptq_matmul_bytes(K, N, bits, gs, 1) for K, N in SHAPES.values()) / bw / 1e3   # one layer
        x = torch.randn(8192, dtype=torch.float16, device=dev)
        # the separate launches as decode runs them (the launcher's own tiles), in a CUDA graph
        xin = x.clone()
        def sep():
            xr, _ = chain_ref(xin, layers)
        t_sep = graph_time([sep]) * 1e3 / L
        rec = dict(card=card, branch=name, variant='separate launches (launcher)', us_per_layer=t_sep, floor_us=floor_us, fraction_of_floor=floor_us / t_sep)
        print(rec, flush=True); recs.append(rec)
        for k in [int(v) for v in args.per_sm.split(',')]:
            P = k * sms
            plans = {s: plan(K, N, bits, gs, P, bn=bns[s], swiglu=s == 'gate_up') for s, (K, N) in SHAPES.items()}
            xr, outs = chain_ref(x.clone(), layers, plans)
            t_same = graph_time([lambda: chain_ref(xin, layers, plans)]) * 1e3 / L
            for pf in [int(v) for v in args.pf.split(',') if v.isdigit()]:
                launch, (xo, yq, yo, h, err) = run_chain(x, layers, plans, P, PF=pf)
                regs, smem, per_sm = resident(launch(warmup=True))         # compile only: residency first, the barrier needs it
                if P > per_sm * sms:
                    print(f"skip {name} {k}/SM: {regs} registers, {smem} B shared: {per_sm} programs per SM resident", flush=True)
                    continue
                launch(); torch.cuda.synchronize()
                ok = err.item() == 0
                same = ok and torch.equal(xo, xr)
                diag = dict(max_abs_diff=(xo.float() - xr.float()).abs().max().item(), nan_persist=int(xo.isnan().sum()), nan_ref=int(xr.isnan().sum()))
                x1 = xo.clone(); xo.copy_(x); launch(); torch.cuda.synchronize(); diag['repeatable'] = torch.equal(xo, x1)
                rec = dict(card=card, branch=name, variant=f'persistent {k}/SM PF={pf}', programs=P, regs=regs, shared=smem, resident_per_sm=per_sm,
                           plans={s: (v['T'], v['S'], v['IT']) for s, v in plans.items()}, stuck=not ok, bit_identical=same,
                           separate_same_tiles_us=t_same, **diag)
                if ok:
                    t = do_bench(launch, warmup=10, rep=100, return_mode='median') * 1e3 / L
                    rec.update(us_per_layer=t, floor_us=floor_us, fraction_of_floor=floor_us / t, err_after=err.item())
                print(rec, flush=True); recs.append(rec)
            for poll in ([int(v) for v in args.poll.split(',')] if args.flow else []):
                flaunch, (xs, ferr) = run_flow(x, layers, plans, P, poll)
                regs, smem, per_sm = resident(flaunch(warmup=True))
                if P > per_sm * sms:
                    print(f"skip flow {name} {k}/SM: {regs} registers: {per_sm} per SM", flush=True); continue
                flaunch(); torch.cuda.synchronize()
                ok = ferr.item() == 0
                rec = dict(card=card, branch=name, variant=f'dataflow {k}/SM poll {poll}', programs=P, regs=regs, resident_per_sm=per_sm,
                           stuck=not ok, bit_identical=ok and torch.equal(xs[-1], xr), separate_same_tiles_us=t_same,
                           max_abs_diff=(xs[-1].float() - xr.float()).abs().max().item(),
                           layers_bit_identical=sum(bool(torch.equal(xs[i + 1], outs[i][3])) for i in range(L)),
                           layers_finite=sum(bool(outs[i][3].isfinite().all()) for i in range(L)))
                if ok:
                    t = do_bench(flaunch, warmup=10, rep=100, return_mode='median') * 1e3 / L
                    rec.update(us_per_layer=t, floor_us=floor_us, fraction_of_floor=floor_us / t, err_after=ferr.item())
                print(rec, flush=True); recs.append(rec)
        del layers; torch.cuda.empty_cache()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"persist_{card.replace(' ', '_')}.json"), 'w') as f: json.dump(dict(copy_GBps=bw, records=recs), f, indent=1)
    print(f"\n{'branch':32} {'variant':28} {'us/layer':>9} {'of floor':>8}")
    for r in recs:
        if 'us_per_layer' in r: print(f"{r['branch']:32} {r['variant']:28} {r['us_per_layer']:9.1f} {r['fraction_of_floor']:8.1%}")

if __name__ == '__main__':
    main()
