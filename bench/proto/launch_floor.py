"""What a launch costs before it moves any bytes: back-to-back launches of small Triton kernels in one CUDA graph, on the GPU.

Per launch (graph of 80, median of replays): an empty kernel at 260 and 1024 programs of 4 warps; one DRAM round trip
(each thread loads 16 bytes of a 2 GB buffer, a fresh place each launch, and its program stores one value); the same
plus a split-K tail (partials stored, an `atomic_add` arrival count, the last of `S` programs of a tile sums the
partials); and a chain of two dependent round trips. The batch-1 GPTQ launches of a layer take 16-60 µs; this says how
much of that no kernel of this shape can avoid.

    PYTHONPATH=. python bench/proto/launch_floor.py --out $OUT
"""
import argparse, json, os, statistics
import torch, triton, triton.language as tl
from triton.testing import do_bench

@triton.jit
def _empty(y_ptr):
    pass

@triton.jit
def _trip(x_ptr, y_ptr, off, TRIPS: tl.constexpr, NT: tl.constexpr):
    "Each thread loads 16 bytes (4 int32) at a fresh place, TRIPS times one after the other; one store per program."
    pid = tl.program_id(0)
    i = off + pid * (NT * 4) + tl.arange(0, NT * 4)
    v = tl.load(x_ptr + i)
    for t in tl.static_range(TRIPS - 1):
        v = tl.load(x_ptr + ((i + (tl.sum(v, 0) & 1) * 4 + (t + 1) * 1048576 * 16) % 536870912))
    tl.store(y_ptr + pid, tl.sum(v, 0))

@triton.jit
def _trip_tail(x_ptr, part_ptr, cnt_ptr, y_ptr, off, S: tl.constexpr, NT: tl.constexpr, BN: tl.constexpr):
    "One round trip, then a split-K tail: S programs per tile store BN fp32 partials; the last arrival sums them."
    pid = tl.program_id(0); tile = pid // S; k = pid % S
    i = off + pid * (NT * 4) + tl.arange(0, NT * 4)
    v = tl.load(x_ptr + i).to(tl.float32)
    acc = tl.reshape(v, [BN, (NT * 4) // BN]).sum(1) if NT * 4 > BN else v
    n = tl.arange(0, BN)
    tl.store(part_ptr + (k * 4096 + tile) * BN + n, acc)
    tl.debug_barrier()
    c = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
    if c == S - 1:
        s = tl.zeros([BN], tl.float32)
        for j in range(S):
            s += tl.load(part_ptr + (j * 4096 + tile) * BN + n, cache_modifier=".cg")
        tl.store(y_ptr + tile * BN + n, s)
        tl.atomic_xchg(cnt_ptr + tile, 0)

def graph_us(fns, reps=5):
    "µs per launch of the list of launches `fns`, replayed from one CUDA graph."
    st = torch.cuda.Stream(); st.wait_stream(torch.cuda.current_stream())   # the inputs are written first
    with torch.cuda.stream(st):
        for f in fns: f()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for f in fns: f()
    g.replay(); torch.cuda.synchronize()
    return statistics.median(do_bench(g.replay, warmup=20, rep=100, return_mode='median') for _ in range(reps)) * 1e3 / len(fns)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--out', default=os.environ.get('OUT', 'bench/results')); a = ap.parse_args()
    dev = torch.device('cuda'); card = torch.cuda.get_device_name(dev)
    x = torch.randint(0, 1 << 20, (1 << 29,), dtype=torch.int32, device=dev)   # 2 GB: every launch reads fresh DRAM
    y = torch.zeros(1 << 20, dtype=torch.float32, device=dev)
    part = torch.zeros(64 * 4096 * 512, dtype=torch.float32, device=dev); cnt = torch.zeros(4096, dtype=torch.int32, device=dev)
    recs = []
    def rec(name, us, **kw):
        recs.append(dict(card=card, case=name, us_per_launch=us, **kw)); print(f"{name:<58} {us:6.2f} us", flush=True)
    L = 80
    for P in (260, 1024):
        rec(f"empty, {P} programs x 4 warps", graph_us([lambda: _empty[(P,)](y, num_warps=4)] * L), programs=P)
    for P in (260, 1024):
        for trips in (1, 2, 4):
            fns = [(lambda o=(j * P * 512) % ((1 << 29) - P * 512): _trip[(P,)](x, y, o, TRIPS=trips, NT=128, num_warps=4)) for j in range(L)]
            rec(f"{trips} dependent DRAM round trip(s), {P} programs", graph_us(fns), programs=P, trips=trips)
    for P, S in ((260, 13), (1024, 32), (896, 56)):
        fns = [(lambda o=(j * P * 512) % ((1 << 29) - P * 512): _trip_tail[(P,)](x, part, cnt, y, o, S=S, NT=128, BN=512, num_warps=4)) for j in range(L)]
        rec(f"1 round trip + split-K tail, {P} programs, {S} splits", graph_us(fns), programs=P, splits=S)
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, f"launch_floor_{card.replace(' ', '_')}.json"), 'w').write(json.dumps(recs, indent=1))

if __name__ == '__main__': main()
