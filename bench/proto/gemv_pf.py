"""Batch-1 GPTQ kernel: loads in flight. Variants of `_gemv_kernel` at M = 1, 70B shapes, on the GPU.

The fp16x2 kernel as it was (commit 6192444) issued one step's weight loads, then waited for them, then computed:
between steps nothing was in flight from that warp. Variants (MODE):
  0  the notebook's kernel as launched by `gptq_matmul`
  1  the next step's words (and group scales) loaded before the current step is computed (registers, one ahead)
  3  the old loop body under `tl.range(..., num_stages=3)` (Triton's own software pipeliner; slower everywhere in
     the first run, `bench/results/gemv_pf_NVIDIA_H200.json`, and dropped from the loop since)
each at the default split-K and about 2, 4 and 8 programs per SM, and with 4 warps. Checks every variant against
`gptq_matmul` (close), times the four joined shapes of a layer cycling through 4 layers' copies (CUDA graphs),
prints a table; with --ncu, runs only the gate_up launch of modes 0 and 1 once each (for Nsight Compute).
Mode 1 is what the notebook's kernel did from commit 4470539; written against that commit's module (`_gemv_step` and
`_group_scales` have since gained EVEN/V4 arguments and a per-group result), run it from that commit.

    PYTHONPATH=.:bench python bench/proto/gemv_pf.py [--ncu]
"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import torch, triton
import triton.language as tl
from qllama import gptq_matmul as gm
from qllama.gptq_matmul import _words, _finish, _gemv_step as _tile, _group_scales as _scales   # the notebook's step (written from this file's)

@triton.jit
def _gemv_pf_kernel(x_ptr, qw_ptr, z_ptr, s_ptr, bias_ptr, y_ptr, part_ptr, cnt_ptr,
                    M, N, K, n_units, n_groups, stride_xm, stride_ym, n_zw,
                    BITS: tl.constexpr, UPG: tl.constexpr, GROUPED: tl.constexpr, SYM: tl.constexpr,
                    ZERO_OFFSET: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                    U: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, ITERS: tl.constexpr, MODE: tl.constexpr):
    "`_gemv_kernel` with the next tile's loads issued before this tile's arithmetic (MODE 1) or under tl.range (MODE 3)."
    C: tl.constexpr = 1 << (BITS - 1)
    pid_n = tl.program_id(0); m = tl.program_id(1); pid_k = tl.program_id(2)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    acc = tl.zeros([BLOCK_N], tl.float32)
    xrow = x_ptr + m * stride_xm
    xh = xrow.to(tl.pointer_type(tl.float16))
    ub = pid_k * ITERS * U
    lim = tl.minimum(n_units, ub + ITERS * U)                              # this split's units
    if MODE == 1:
        u = ub + tl.arange(0, U)
        w0, w1, w2, w3 = _words(qw_ptr, u, n, n_ok, N, lim, BITS)
        s = _scales(s_ptr, ub, n, n_ok, N, n_groups, UPG, GROUPED, U)
        for it in range(ITERS):
            u0 = ub + it * U
            v0, v1, v2, v3 = _words(qw_ptr, u + U, n, n_ok, N, lim, BITS)  # the next tile's, in flight during this one
            t = _scales(s_ptr, u0 + U, n, n_ok, N, n_groups, UPG, GROUPED, U)
            acc += _tile(w0, w1, w2, w3, s, xrow, xh, z_ptr, u, u0, n, n_ok, K, N, n_units, n_groups, n_zw,
                         BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, U, BLOCK_N)
            w0, w1, w2, w3, s, u = v0, v1, v2, v3, t, u + U
    else:
        for it in tl.range(0, ITERS, num_stages=MODE):
            u0 = ub + it * U
            u = u0 + tl.arange(0, U)
            w0, w1, w2, w3 = _words(qw_ptr, u, n, n_ok, N, lim, BITS)
            s = _scales(s_ptr, u0, n, n_ok, N, n_groups, UPG, GROUPED, U)
            acc += _tile(w0, w1, w2, w3, s, xrow, xh, z_ptr, u, u0, n, n_ok, K, N, n_units, n_groups, n_zw,
                         BITS, UPG, GROUPED, SYM, ZERO_OFFSET, ASM, U, BLOCK_N)
    if GROUPED:
        acc = acc * C
    else:
        acc = acc * (C * tl.load(s_ptr + n, mask=n_ok, other=0.0).to(tl.float32))
    rows = m + tl.zeros([1], tl.int32)
    _finish(acc[None, :], rows, rows < M, n, n_ok, pid_k, M, N, stride_ym, bias_ptr, y_ptr, part_ptr, cnt_ptr,
            m * tl.num_programs(0) + pid_n, HAS_BIAS, SPLIT_K)

def call(x, p, mode, occ, nw=None, U=None):
    "x [1, K] already sorted; the variant `mode` (0: gptq_matmul itself) at about `occ` programs per SM."
    dev = x.device; K, N = p.in_features, p.out_features; M = x.shape[0]
    cfg, tiles, upg = gm._launch_config(M, N, K, p, dev, num_warps=nw, U=U)
    split = max(1, min(-(-K // 32) // cfg['U'], round(occ * gm._n_sms(dev) / tiles))) if occ else None
    if mode == 0: return gm.gptq_matmul(x, p, x_sorted=True, split_k=split, num_warps=nw, U=U)
    cfg, tiles, upg = gm._launch_config(M, N, K, p, dev, split_k=split, num_warps=nw, U=U)
    y = torch.empty(M, N, dtype=x.dtype, device=dev)
    part = gm._workspace(dev, cfg['SPLIT_K'] * M * N) if cfg['SPLIT_K'] > 1 else y
    cnt = gm._counters(dev, tiles * M) if cfg['SPLIT_K'] > 1 else y
    xp = x.view(torch.int32)
    _gemv_pf_kernel[(-(-N // cfg['BLOCK_N']), M, cfg['SPLIT_K'])](
        xp, p.qweight, p.zeros, p.scales, y, y, part, cnt, M, N, K, -(-K // 32), p.scales.shape[0], xp.stride(0), y.stride(0),
        p.zeros.shape[1], BITS=p.bits, UPG=upg, GROUPED=p.group_size != -1, SYM=p.sym, ZERO_OFFSET=p.zero_offset, HAS_BIAS=False,
        ASM=gm._asm_ok(dev), U=cfg['U'], BLOCK_N=cfg['BLOCK_N'], SPLIT_K=cfg['SPLIT_K'], ITERS=cfg['ITERS'], MODE=mode,
        num_warps=cfg['num_warps'])
    return y

def main():
    from gptq_matmul_gpu import random_gptq, graph_time, copy_bandwidth, JOINED, branch_name, LAYERS
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev); recs, table = [], []
    out = os.environ.get('OUT', 'bench/results')
    if '--ncu' in sys.argv:   # one gate_up launch of each, after a warm-up, for `ncu --launch-skip`
        for bits, gs in ((4, -1), (4, 128)):
            K, N = JOINED['gate_up']
            p = gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs)
            x = torch.randn(1, K, device=dev, dtype=torch.float16)
            for mode in (0, 1): call(x, p, mode, None); torch.cuda.synchronize()
        return
    bw = copy_bandwidth(dev)
    print(f"{card}: copy {bw:.0f} GB/s", flush=True)
    for bits, gs in [(4, -1), (4, 128), (4, 32), (3, 128)]:
        name = branch_name(bits, gs)
        layers = [{s: gm.prepare(*random_gptq(K, N, bits, gs, dev), bits=bits, group_size=gs) for s, (K, N) in JOINED.items()} for _ in range(4)]
        xs = {K: torch.randn(1, K, device=dev, dtype=torch.float16) for K in (8192, 28672)}
        for s, (K, N) in JOINED.items():
            floor_us = gm.gptq_matmul_bytes(K, N, bits, gs, 1) / bw / 1e3
            ref = call(xs[K], layers[0][s], 0, None)
            for mode in (0, 1):
                for occ in (None, 2, 4, 8):
                    for nw in ((None, 4) if occ is None else (None,)):
                        try:
                            y = call(xs[K], layers[0][s], mode, occ, nw)
                            torch.testing.assert_close(y, ref, rtol=2e-3, atol=2e-3)
                            us = graph_time([(lambda p=lay[s], x=xs[K]: call(x, p, mode, occ, nw)) for lay in layers]) / 4 * 1e3
                        except Exception as e:
                            print(f"{name} {s} mode {mode} occ {occ} nw {nw}: {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True); continue
                        r = dict(card=card, branch=name, shape=s, mode=mode, occ=occ, num_warps=nw, us=us, floor_us=floor_us,
                                 fraction_of_floor=floor_us / us)
                        recs.append(r); table.append(r); print(json.dumps(r), flush=True)
        del layers; torch.cuda.empty_cache()
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, f"gemv_pf_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))
    # per branch and mode: the best occupancy of each shape, summed over a layer x 80
    print(f"\n{card}; M=1 linears of one token (4 joined shapes x {LAYERS}), best occupancy per shape")
    for name in dict.fromkeys(r['branch'] for r in recs):
        for mode in (0, 1, 3):
            rs = [r for r in recs if r['branch'] == name and r['mode'] == mode]
            if not rs: continue
            best = {s: min((r for r in rs if r['shape'] == s), key=lambda r: r['us']) for s in JOINED if any(r['shape'] == s for r in rs)}
            dflt = {s: next((r for r in rs if r['shape'] == s and r['occ'] is None and r['num_warps'] is None), None) for s in JOINED}
            tot = sum(b['us'] for b in best.values()) * LAYERS / 1e3; fl = sum(b['floor_us'] for b in best.values()) * LAYERS / 1e3
            td = sum(d['us'] for d in dflt.values() if d) * LAYERS / 1e3
            print(f"{name:<34} mode {mode}: default {td:6.2f} ms ({fl / td:.0%}), best {tot:6.2f} ms ({fl / tot:.0%})  " +
                  " ".join(f"{s}:{b['us']:.0f}us/{b['fraction_of_floor']:.0%}/occ{b['occ']}/nw{b['num_warps']}" for s, b in best.items()))

if __name__ == '__main__': main()
