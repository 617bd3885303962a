"""GPU check and benchmark of qllama's non-matmul kernels (norm, SiLU·mul, RoPE, attention) at CodeLlama-70B's shapes.

Run on a machine with one CUDA GPU, from the repository root:

    PYTHONPATH=. python bench/kernels_gpu.py --out $OUT

Each op is first checked at the 70B shapes against its fp32 reference (relative error, fresh random inputs, the
output poisoned with NaN beforehand), then timed: `n` calls on distinct input sets captured in one CUDA graph,
`triton.testing.do_bench` median of the replays, divided by `n` (the per-call GPU time a decode step's graph
would see, with the launch gaps of eager mode removed). The torch eager path the model uses today is timed the
same way, in the same run. Memory-bound ops report GB/s against the measured device-to-device copy bandwidth;
prefill attention reports TFLOP/s. JSON records (card, op, shape, metric, value, unit, floor, fraction_of_floor)
go to `--out/kernels_gpu.json`.
"""
import argparse, json, os, sys
import torch
import torch.nn.functional as F
from qllama.model import rms_norm as model_rms_norm, rope_tables, apply_rope, attend, attn_mask, positions_of
from qllama.norm_kernels import rms_norm, rms_norm_ref, rms_norm_residual, rms_norm_residual_ref, silu_mul, silu_mul_ref
from qllama.rope_kernels import rope, rope_ref
from qllama.attention_kernels import attention_decode, attention_prefill, attention_ref
sys.path.insert(0, os.path.dirname(__file__))
from gptq_matmul_gpu import graph_time as graph_ms, copy_bandwidth   # one CUDA-graph timer and one copy measurement for all benches

H, I, NH, NKV, HD = 8192, 28672, 64, 8, 128
DT = torch.float16

def relerr(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()

def graph_time(fns):
    "Median ms of one replay of a CUDA graph that runs `fns` in order, divided by len(fns)."
    return graph_ms(fns) / len(fns)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--sets', type=int, default=8, help='distinct input sets per graph')
    args = ap.parse_args()
    torch.manual_seed(0)
    card = torch.cuda.get_device_name()
    print(f"card: {card}, torch {torch.__version__}", flush=True)
    recs, table = [], []
    def rec(op, shape, metric, value, unit, floor=None):
        r = dict(card=card, op=op, shape=shape, metric=metric, value=value, unit=unit, floor=floor,
                 fraction_of_floor=None if floor is None or not value else (floor / value if unit in ('ms', 'us') else value / floor))
        recs.append(r); print(json.dumps(r), flush=True)
    bw = copy_bandwidth('cuda')
    rec('-', '-', 'copy_bandwidth', bw, 'GB/s')
    def timed(op, shape, byts, fns_kernel, fns_torch, flops=None):
        "Time kernel and torch graphs; record us, GB/s (or TFLOP/s) and the floor."
        for impl, fns in (('triton', fns_kernel), ('torch', fns_torch)):
            if fns is None: continue
            us = graph_time(fns) * 1e3
            floor_us = byts / bw / 1e3
            rec(f'{op}[{impl}]', shape, 'time', us, 'us', floor_us)
            rec(f'{op}[{impl}]', shape, 'bandwidth', byts / us / 1e3, 'GB/s', bw)
            if flops: rec(f'{op}[{impl}]', shape, 'tflops', flops / us / 1e6, 'TFLOP/s')
            table.append((op, impl, shape, us, floor_us, byts / us / 1e3, flops / us / 1e6 if flops else None))
    S = args.sets
    # --- RMSNorm + residual, RMSNorm, SiLU·mul
    for M in (1, 16, 4096):
        sets = M <= 16 and S or 2
        xs = [torch.randn(M, H, device='cuda', dtype=DT) for _ in range(sets)]
        rs = [torch.randn(M, H, device='cuda', dtype=DT) * 4 for _ in range(sets)]
        w = torch.rand(H, device='cuda', dtype=DT) + 0.5
        y, h = rms_norm_residual(xs[0], rs[0], w, 1e-5)
        yr, hr = rms_norm_residual_ref(xs[0], rs[0], w, 1e-5)
        rec('rms_norm_residual', f'M{M}', 'rel_err', relerr(y, yr), 'relative'); assert relerr(y, yr) < 1e-2 and torch.equal(h, hr)
        rec('rms_norm', f'M{M}', 'rel_err', relerr(rms_norm(xs[0], w, 1e-5), rms_norm_ref(xs[0], w, 1e-5)), 'relative')
        timed('rms_norm_residual', f'M{M}', M * H * 2 * 4 + H * 2,
              [lambda x=x, r=r: rms_norm_residual(x, r, w, 1e-5) for x, r in zip(xs, rs)],
              [lambda x=x, r=r: model_rms_norm(x + r, w, 1e-5) for x, r in zip(xs, rs)])
        timed('rms_norm', f'M{M}', M * H * 2 * 2 + H * 2,
              [lambda x=x: rms_norm(x, w, 1e-5) for x in xs], [lambda x=x: model_rms_norm(x, w, 1e-5) for x in xs])
        gus = [torch.randn(M, 2 * I, device='cuda', dtype=DT) * 3 for _ in range(sets)]
        e = relerr(silu_mul(gus[0]), silu_mul_ref(gus[0])); rec('silu_mul', f'M{M}', 'rel_err', e, 'relative'); assert e < 1e-2
        timed('silu_mul', f'M{M}', M * I * 2 * 3, [lambda a=a: silu_mul(a) for a in gus],
              [lambda a=a: F.silu(a[:, :I]) * a[:, I:] for a in gus])
        del xs, rs, gus
    # --- RoPE with the cache write: decode (B rows, T=1, ragged positions) and a 4096-token prefill
    cos, sin = rope_tables(1.0 / 1e6 ** (torch.arange(0, HD, 2).float() / HD), 8192, 'cuda')  # CodeLlama's theta
    for B, T in ((1, 1), (16, 1), (1, 4096)):
        sets = S if T == 1 else 2
        kc = torch.zeros(sets, 16, NKV, 8192, HD, device='cuda', dtype=DT); vc = torch.zeros_like(kc)
        qs = [torch.randn(B, T, NH, HD, device='cuda', dtype=DT).transpose(1, 2) for _ in range(sets)]
        ks = [torch.randn(B, T, NKV, HD, device='cuda', dtype=DT).transpose(1, 2) for _ in range(sets)]
        vs = [torch.randn(B, T, NKV, HD, device='cuda', dtype=DT).transpose(1, 2) for _ in range(sets)]
        pos = torch.randint(0, 4000, (B,), device='cuda') if T == 1 else torch.zeros(B, dtype=torch.long, device='cuda')
        slots = torch.randperm(16, device='cuda')[:B]
        qr, kr = rope_ref(qs[0], ks[0], cos, sin, pos)
        q0, k0 = qs[0].clone(), ks[0].clone()
        rope(q0, k0, cos, sin, pos, vs[0], kc[0], vc[0], slots)
        e = max(relerr(q0, qr), relerr(k0, kr)); rec('rope', f'B{B}_T{T}', 'rel_err', e, 'relative'); assert e < 1e-2
        P = positions_of(pos, B, T, 'cuda')
        assert torch.equal(kc[0][slots[:, None], :, P], k0.transpose(1, 2)) and torch.equal(vc[0][slots[:, None], :, P], vs[0].transpose(1, 2))
        def torch_rope(q, k, v, c, i):
            cs, sn = cos[P], sin[P]
            qq, kk = apply_rope(q, cs, sn), apply_rope(k, cs, sn)
            kc[i][slots[:, None], :, P] = kk.transpose(1, 2); vc[i][slots[:, None], :, P] = v.transpose(1, 2)
            return qq
        timed('rope', f'B{B}_T{T}', B * T * (2 * 2 * (NH + NKV) * HD + 2 * 3 * NKV * HD),
              [lambda q=q, k=k, v=v, i=i: rope(q, k, cos, sin, pos, v, kc[i], vc[i], slots) for i, (q, k, v) in enumerate(zip(qs, ks, vs))],
              [lambda q=q, k=k, v=v, i=i: torch_rope(q, k, v, None, i) for i, (q, k, v) in enumerate(zip(qs, ks, vs))])
        del kc, vc, qs, ks, vs
    # --- decode attention from a 16-slot, 4096(+)-position cache; layers cycled so the cache is not L2-resident
    NL = 4
    kc = torch.randn(NL, 16, NKV, 4224, HD, device='cuda', dtype=DT); vc = torch.randn_like(kc)
    for B in (1, 16):
        for ctx in (128, 4096):
            slots = torch.randperm(16, device='cuda')[:B]
            pos = torch.full((B,), ctx - 1, device='cuda')
            qs = [torch.randn(B, NH, 1, HD, device='cuda', dtype=DT) for _ in range(NL)]
            o = attention_decode(qs[0], kc[0], vc[0], pos, slots, kv_len=ctx)
            e = relerr(o, attention_ref(qs[0], kc[0], vc[0], pos, slots)); rec('attention_decode', f'B{B}_ctx{ctx}', 'rel_err', e, 'relative'); assert e < 1e-2
            rag = torch.randint(0, ctx, (B,), device='cuda')                   # ragged rows: a different length each
            e = relerr(attention_decode(qs[0], kc[0], vc[0], rag, slots, kv_len=ctx), attention_ref(qs[0], kc[0], vc[0], rag, slots))
            rec('attention_decode', f'B{B}_ctx{ctx}_ragged', 'rel_err', e, 'relative'); assert e < 1e-2
            mask = attn_mask(positions_of(pos, B, 1, 'cuda'), ctx)
            byts = B * ctx * NKV * HD * 2 * 2 + B * NH * HD * 2 * 2
            timed('attention_decode', f'B{B}_ctx{ctx}', byts,
                  [lambda q=q, i=i: attention_decode(q, kc[i], vc[i], pos, slots, kv_len=ctx) for i, q in enumerate(qs)],
                  [lambda q=q, i=i: attend(q, kc[i][slots, :, :ctx], vc[i][slots, :, :ctx], mask) for i, q in enumerate(qs)])
            for bn, tgt in ((32, 264), (128, 264), (64, 528), (64, 132)):
                us = graph_time([lambda q=q, i=i: attention_decode(q, kc[i], vc[i], pos, slots, kv_len=ctx, BLOCK_N=bn, target=tgt)
                                 for i, q in enumerate(qs)]) * 1e3
                rec(f'attention_decode[BLOCK_N={bn},target={tgt}]', f'B{B}_ctx{ctx}', 'time', us, 'us', byts / bw / 1e3)
    del kc, vc
    # --- prefill attention: B=1, T tokens from position 0, k/v read from the cache layout; SDPA (flash) baseline
    for T in (512, 4096):
        kc = torch.randn(1, NKV, T, HD, device='cuda', dtype=DT); vc = torch.randn_like(kc)
        q = torch.randn(1, T, NH, HD, device='cuda', dtype=DT).transpose(1, 2)
        o = attention_prefill(q, kc, vc)
        e = relerr(o, attention_ref(q, kc, vc)); rec('attention_prefill', f'T{T}', 'rel_err', e, 'relative'); assert e < 1e-2
        flops = 4 * NH * HD * T * (T + 1) / 2                                 # causal: half the square, 2 matmuls x 2 flops
        byts = T * NH * HD * 2 * 2 + T * NKV * HD * 2 * 2
        qc = q.contiguous()
        timed('attention_prefill', f'T{T}', byts, [lambda: attention_prefill(q, kc, vc)],
              [lambda: F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, enable_gqa=True)], flops)
        for bm, bn, nw in ((128, 64, 4), (128, 64, 8), (128, 128, 8), (64, 128, 4), (64, 32, 4)):
            us = graph_time([lambda: attention_prefill(q, kc, vc, BLOCK_M=bm, BLOCK_N=bn, num_warps=nw)]) * 1e3
            rec(f'attention_prefill[BLOCK_M={bm},BLOCK_N={bn},num_warps={nw}]', f'T{T}', 'tflops', flops / us / 1e6, 'TFLOP/s')
        del kc, vc
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'kernels_gpu.json'), 'w') as f: json.dump(recs, f, indent=1)
    print(f"\n{card}, copy bandwidth {bw:.0f} GB/s")
    print(f"{'op':20s} {'impl':7s} {'shape':14s} {'us':>9s} {'floor us':>9s} {'GB/s':>7s} {'TFLOP/s':>8s}")
    for op, impl, shape, us, fl, gbs, tf in table:
        print(f"{op:20s} {impl:7s} {shape:14s} {us:9.2f} {fl:9.2f} {gbs:7.0f} {tf if tf is None else round(tf, 1)!s:>8s}")

if __name__ == '__main__':
    main()
