"""Prototype: the prefill path (dequantize to fp16, then cuBLAS) with the dequantization of the next chunk
overlapped with the current chunk's product on a second stream, against the current path and cuBLAS on fp16.

    PYTHONPATH=.:bench python bench/proto/prefill_overlap.py --out $OUT

For one 70B layer's joined linears (q/k/v, o, gate/up, down) at M = 2048, per branch: ms of
  cublas     F.linear on fp16 weights [N, K] (the benchmark's baseline; q/k/v joined here)
  cur        gptq_matmul as it is (chunks of 2^27 values, each product then copied into y)
  dq         dequantize_sorted of the whole weight alone (what there is to hide)
  slice      the same chunks, the product written into y's columns directly (out=)
  ov26/ov27  two buffers of 2^26 / 2^27 values, chunk i+1 dequantized on a side stream while chunk i multiplies
  kov26/27   chunks along K instead (full-width products accumulated into y with addmm), overlapped the same way
`cur` is `gptq_matmul` as of commit 964f301 (the run's module); the notebook's path now is `slice` with equal
chunks. Every variant is checked against cur (relative error). Timing: CUDA events, median of 7 after 2 warm-ups, the
variants interleaved round by round so that clock drift hits them alike.
"""
import argparse, dataclasses, json, os, statistics
import torch
import torch.nn.functional as F
from qllama import gptq_matmul as gm
from gptq_matmul_gpu import JOINED, BRANCHES, branch_name, random_gptq, relerr

_SIDE = {}

def side_stream(dev):
    s = _SIDE.get(dev)
    if s is None: s = _SIDE[dev] = torch.cuda.Stream(dev)
    return s

def slice_path(x, p, C=2**27):
    M, K, N = x.shape[0], p.in_features, p.out_features
    chunk = max(128, min(N, C // K // 128 * 128))
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    for n0 in range(0, N, chunk):
        nc = min(chunk, N - n0)
        torch.mm(x, gm.dequantize_sorted(p, n0, nc), out=y[:, n0:n0 + nc])
    return y

def _n_chunks(N, K, C):
    "Column chunks of about C values, balanced, multiples of 128 columns."
    n = max(1, -(-N * K // C))
    w = -(-N // n // 128) * 128
    return [(n0, min(w, N - n0)) for n0 in range(0, N, w)]

def overlap_path(x, p, C=2**26):
    "Chunks along N; chunk i+1 dequantized on the side stream into the other buffer while chunk i multiplies."
    M, K, N = x.shape[0], p.in_features, p.out_features
    chunks = _n_chunks(N, K, C)
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    if len(chunks) == 1:
        return torch.mm(x, gm.dequantize_sorted(p), out=y)
    main, side = torch.cuda.current_stream(), side_stream(x.device)
    w = max(nc for _, nc in chunks)
    bufs = [torch.empty(K * w, dtype=torch.float16, device=x.device) for _ in range(2)]
    ready = [torch.cuda.Event() for _ in range(2)]; free = [torch.cuda.Event() for _ in range(2)]
    side.wait_stream(main)
    for i, (n0, nc) in enumerate(chunks):
        b = i % 2
        with torch.cuda.stream(side):
            if i >= 2: side.wait_event(free[b])
            wb = bufs[b][:K * nc].view(K, nc)
            _dq_into(p, n0, nc, wb)
            ready[b].record(side)
        main.wait_event(ready[b])
        torch.mm(x, wb, out=y[:, n0:n0 + nc])
        free[b].record(main)
    return y

def _dq_into(p, n0, nc, w):
    K, N = p.in_features, p.out_features
    n_units = -(-K // 32)
    U, BN = 2, 128
    gm._dequant_kernel[(-(-nc // BN), -(-n_units // U))](
        p.qweight, p.zeros, p.scales, w, K, N, n_units, p.scales.shape[0], p.zeros.shape[1], n0, nc, BITS=p.bits,
        UPG=p.group_size // 32 if p.group_size != -1 else 1, ZERO_OFFSET=p.zero_offset, U=U, BLOCK_N=BN, num_warps=4)

def _rows(p, k0, kc):
    "The linear restricted to sorted rows k0 .. k0+kc (k0, kc multiples of the group size, or of 32 with one group)."
    u0, nu = k0 // 32, kc // 32
    G = p.scales.shape[0]
    if G == 1: s, z = p.scales, p.zeros
    else:
        g0, ng = k0 // p.group_size, kc // p.group_size
        s, z = p.scales[g0:g0 + ng], p.zeros[g0:g0 + ng]
    return dataclasses.replace(p, qweight=p.qweight[u0 * p.bits:(u0 + nu) * p.bits], scales=s, zeros=z, in_features=kc, perm=None)

def koverlap_path(x, p, C=2**26):
    "Chunks along K: y += x[:, k0:k1] @ W[k0:k1], full-width products, dequantization of chunk i+1 overlapped."
    M, K, N = x.shape[0], p.in_features, p.out_features
    step = 32 if p.group_size == -1 else p.group_size
    n = max(1, -(-N * K // C))
    kc = -(-K // n // step) * step
    chunks = [(k0, min(kc, K - k0)) for k0 in range(0, K, kc)]
    y = torch.empty(M, N, dtype=x.dtype, device=x.device)
    if len(chunks) == 1:
        return torch.mm(x, gm.dequantize_sorted(p), out=y)
    main, side = torch.cuda.current_stream(), side_stream(x.device)
    bufs = [torch.empty(kc * N, dtype=torch.float16, device=x.device) for _ in range(2)]
    ready = [torch.cuda.Event() for _ in range(2)]; free = [torch.cuda.Event() for _ in range(2)]
    side.wait_stream(main)
    for i, (k0, kk) in enumerate(chunks):
        b = i % 2
        with torch.cuda.stream(side):
            if i >= 2: side.wait_event(free[b])
            wb = bufs[b][:kk * N].view(kk, N)
            _dq_into(_rows(p, k0, kk), 0, N, wb)
            ready[b].record(side)
        main.wait_event(ready[b])
        if i == 0: torch.mm(x[:, k0:k0 + kk], wb, out=y)
        else: torch.addmm(y, x[:, k0:k0 + kk], wb, out=y)
        free[b].record(main)
    return y

def times(fns, rounds=9, warm=2):
    "Median ms of each of `fns`, interleaved round by round."
    ts = {k: [] for k in fns}
    for r in range(rounds):
        for k, f in fns.items():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(); a.record(); f(); b.record(); torch.cuda.synchronize()
            if r >= warm: ts[k].append(a.elapsed_time(b))
    return {k: statistics.median(v) for k, v in ts.items()}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results'))
    ap.add_argument('--branches', default='4:128,4:-1,3:32')
    ap.add_argument('--M', type=int, default=2048)
    a = ap.parse_args()
    dev = torch.device('cuda'); torch.manual_seed(0)
    card = torch.cuda.get_device_name(dev)
    recs, rows = [], []
    for bg in a.branches.split(','):
        bits, gs = map(int, bg.split(':'))
        br = branch_name(bits, gs)
        tot = {}
        for name, (K, N) in JOINED.items():
            qw, qz, sc, gi = random_gptq(K, N, bits, gs, dev)
            p = gm.prepare(qw, qz, sc, gi, bits, gs)
            del qw, qz, gi
            x = torch.randn(a.M, K, device=dev, dtype=torch.float16)
            wt = gm.dequantize_sorted(p).t().contiguous()                 # [N, K] fp16, the baseline's layout
            ref = gm.gptq_matmul(x, p, x_sorted=True)
            fns = {'cublas': lambda: F.linear(x, wt), 'cur': lambda: gm.gptq_matmul(x, p, x_sorted=True),
                   'dq': lambda: gm.dequantize_sorted(p), 'slice': lambda: slice_path(x, p),
                   'ov26': lambda: overlap_path(x, p, 2**26), 'ov27': lambda: overlap_path(x, p, 2**27),
                   'kov26': lambda: koverlap_path(x, p, 2**26), 'kov27': lambda: koverlap_path(x, p, 2**27)}
            errs = {k: relerr(f(), ref) for k, f in fns.items() if k not in ('dq',)}
            t = times(fns)
            for k, v in t.items():
                tot[k] = tot.get(k, 0) + v
                recs.append(dict(card=card, branch=br, metric=f'prefill_{name}_{k}_M{a.M}', value=v, unit='ms', relerr=errs.get(k)))
            print(br, name, ' '.join(f'{k} {v:.3f}' for k, v in t.items()), '| err', ' '.join(f'{k} {v:.1e}' for k, v in errs.items()), flush=True)
            del p, wt, x, ref; torch.cuda.empty_cache()
        rows.append((br, tot))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"prefill_overlap_{card.replace(' ', '_')}.json"), 'w') as f: json.dump(recs, f, indent=1)
    ks = list(rows[0][1])
    print(f"\nlayer ms at M={a.M} (x80 for the model), and cuBLAS / variant")
    print(f"{'branch':32}" + ''.join(f'{k:>9}' for k in ks))
    for br, tot in rows:
        print(f"{br:32}" + ''.join(f"{tot[k]:9.3f}" for k in ks))
        print(f"{'  of cuBLAS':32}" + ''.join(f"{tot['cublas'] / tot[k]:9.2f}" for k in ks))

if __name__ == '__main__':
    main()
