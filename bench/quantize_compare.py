"""qllama's GPTQ quantizer against GPTQModel 7.6.0 on SmolLM2-135M-Instruct, on the CPU: perplexity and time.

Both tools get the same source weights (fp32), the same settings (bits, group size 128, act-order, sym, damp 0.01,
true-sequential, fp32 activations), the same calibration windows (standard-library `.py` files whose names start
with a-m) and the same CPU threads; every model is then evaluated by the same code (qllama's `perplexity`, with the
quantized weights dequantized once into fp32 linears) on the same held-out windows (files n-z). Round-to-nearest and
the float model are evaluated alongside. Each quantization runs in its own subprocess, which reports its wall time and
peak RSS (VmHWM).

Run to run spread. GPTQ's column loop is chaotic: one rounding decision that flips (a scale that differs in its last
bit, a sum taken in another order) changes the error carried to every later column, and two runs end with weights ~10%
apart (relative Frobenius norm) at the same proxy loss `tr((W-Ŵ) H (W-Ŵ)ᵀ)`. With 4096 calibration tokens on a 135M
model that moves perplexity by several percent (tens of percent at 3 bits). So each bit width is quantized from
several calibration seeds (`--seeds`: each seed draws other windows from the same files; both tools get the same
windows for a seed), and the table reports the mean and the spread over seeds, and the paired comparison (`paired`:
per-seed ratios qllama / GPTQModel and a 95 % t-interval of the mean log-ratio). Runs over further seeds are pooled
into the committed JSON by `bench/quantize_compare_merge.py`. Alongside runs qllama's former choice
(`qllama_fp16_scales`: group scales rounded up to fp16 *before* the column loop, so the error feedback used the stored
scales; qllama now keeps them in fp32 in the loop and rounds them to nearest fp16 when packing, as GPTQModel does).

    python bench/quantize_compare.py                  # writes bench/results/quantize_compare.json
    (GPTQModel must be importable by the same interpreter: see tests/test_quantize.py for what it needs)
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CALIB, EVAL = '[a-m]*.py', '[n-z]*.py'

def settings(bits):
    return dict(bits=bits, group_size=128, desc_act=True, sym=True, damp_percent=0.01, static_groups=False, true_sequential=True)

def t_quantile(p, df):
    "The `p` quantile of Student's t with `df` degrees of freedom (Simpson's rule on the density, then bisection)."
    import math
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)
    def cdf(x, n=2000):   # 0.5 + the integral of the density from 0 to x
        h = x / n
        return 0.5 + h / 3 * (f(0) + f(x) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n)))
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2

def paired(a:dict, b:dict, level=0.95, target=0.01) -> dict:
    "Seed-by-seed comparison of perplexities `a` against `b` ({seed: ppl}): ratios, and a t-interval of the mean log-ratio."
    import math
    seeds = [s for s in a if s in b]
    d = [math.log(a[s] / b[s]) for s in seeds]
    n, m = len(d), statistics.mean(d)
    r = dict(seeds=[int(s) for s in seeds], ratio={s: a[s] / b[s] for s in seeds}, mean_log_ratio=m,
             geometric_mean_ratio=math.exp(m), mean_ratio=statistics.mean(a[s] / b[s] for s in seeds))
    if n < 2: return r
    sd = statistics.stdev(d); t = t_quantile(0.5 + level / 2, n - 1); h = t * sd / math.sqrt(n)
    lo, hi = math.exp(m - h), math.exp(m + h)
    r.update(stdev_log_ratio=sd, level=level, t=t, interval_ratio=[lo, hi], target=target,
             within_target=('yes: the interval lies inside' if 1 - target <= lo and hi <= 1 + target else
                            'no: the interval lies outside' if hi < 1 - target or lo > 1 + target else
                            'undecided: the interval overlaps') + f' the ±{target:.0%} band around 1',
             compatible_with_target=lo <= 1 + target and hi >= 1 - target,
             no_worse_than_target=hi <= 1 + target,   # a's perplexity at most `target` above b's (97.5% one-sided)
             excess_over_target_at_least=max(0.0, lo - (1 + target)))
    return r

def summarize(runs:dict) -> dict:
    "One tool at one bit width: its runs by seed, and the mean, range and spread of their perplexities and times."
    p = [t['ppl'] for t in runs.values()]
    return dict(runs=runs, ppl_mean=statistics.mean(p), ppl_min_max=[min(p), max(p)], ppl_stdev=statistics.stdev(p) if len(p) > 1 else 0.0,
                total_s_mean=statistics.mean(t['total_s'] for t in runs.values()))

def compare(r:dict):
    "Add to one bit width's results `r` the ratios of qllama (and its former variant) over GPTQModel, and the paired analysis."
    if 'gptqmodel' not in r: return
    g = r['gptqmodel']
    for name in ('qllama', 'qllama_fp16_scales'):
        if name in r: r[f'ppl_mean_ratio_{name}_over_gptqmodel'] = r[name]['ppl_mean'] / g['ppl_mean']
    if 'qllama' in r:
        q = r['qllama']
        r['per_seed_ratio_qllama_over_gptqmodel'] = {sd: q['runs'][sd]['ppl'] / g['runs'][sd]['ppl'] for sd in q['runs'] if sd in g['runs']}
        r['time_ratio_qllama_over_gptqmodel'] = q['total_s_mean'] / g['total_s_mean']
        r['paired_qllama_over_gptqmodel'] = paired({k: t['ppl'] for k, t in q['runs'].items()}, {k: t['ppl'] for k, t in g['runs'].items()})

def _status(key):
    "A memory figure of this process from /proc/self/status, in bytes."
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key + ':'))

def _fp16_scales():
    "qllama's former choice: group scales rounded up to fp16 before the GPTQ loop (the loop then sees the stored scales)."
    import qllama.quantize as Q
    qp = Q._quant_params
    Q._quant_params = lambda x, g_idx, quant, fp16=True: qp(x, g_idx, quant, fp16=True)

def worker(a):
    "Quantize in this process with one tool; print a JSON line with times and peak RSS."
    import torch
    torch.set_num_threads(a.threads)
    bits = a.bits[0]
    rss0 = _status('VmRSS')  # after importing torch
    from qllama.perplexity import stdlib_glob
    calib_glob = str(Path(stdlib_glob()).parent/CALIB)
    t0 = time.time()
    if a.worker == 'qllama':
        from qllama.config import QuantConfig
        from qllama.quantize import quantize
        if a.fp16_scales: _fp16_scales()
        quantize(a.src, a.out, QuantConfig(**settings(bits)), dataset=calib_glob, nsamples=a.nsamples, seqlen=a.seqlen,
                 seed=a.seed, batch_size=a.batch_size, blocksize=a.blocksize, progress=False)
        t = dict(total_s=time.time() - t0)
    else:
        os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2')   # its CPU pool refuses fewer on small machines
        from gptqmodel import GPTQModel, QuantizeConfig
        from qllama.quantize import calibration_windows
        from qllama.perplexity import text_files
        from qllama.tokenizer import Tokenizer
        ids = calibration_windows(Tokenizer.from_dir(a.src), text_files(calib_glob), a.nsamples, a.seqlen, seed=a.seed)
        data = [{'input_ids': w.tolist(), 'attention_mask': [1] * len(w)} for w in ids]
        model = GPTQModel.load(a.src, QuantizeConfig(**settings(bits)), device='cpu', dtype=torch.float32)
        t1 = time.time()
        model.quantize(data, batch_size=a.worker_batch_size or a.batch_size)
        t2 = time.time()
        model.save(a.out)
        t = dict(load_s=t1 - t0, quantize_s=t2 - t1, total_s=time.time() - t0)
    t['peak_rss_bytes'] = _status('VmHWM')   # this process's own peak (ru_maxrss would carry over the parent's across exec)
    t['rss_before_bytes'] = rss0
    print(json.dumps(t))

def dense(model):
    "Replace every QuantLinear by an fp32 nn.Linear holding its dequantized weight (same numbers, faster CPU eval)."
    import torch
    from qllama.gptq import QuantLinear, dequantize
    for name, m in list(model.named_modules()):
        if isinstance(m, QuantLinear):
            lin = torch.nn.Linear(m.in_features, m.out_features, bias=bool(m.bias.any()))
            with torch.no_grad():
                lin.weight.copy_(dequantize(m.qweight, m.qzeros, m.scales, m.g_idx, m.bits, m.v2).float().T)
                if lin.bias is not None: lin.bias.copy_(m.bias.float())
            parent, child = name.rsplit('.', 1)
            setattr(model.get_submodule(parent), child, lin)
    return model

def rtn(model, bits):
    "Replace every decoder linear's weight by its round-to-nearest version at `bits`, group 128."
    import torch
    from qllama.config import QuantConfig
    from qllama.gptq import quantize_rtn, dequantize
    q = QuantConfig(**settings(bits))
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and '.layers.' in n:
            p = quantize_rtn(m.weight, q)
            with torch.no_grad(): m.weight.copy_(dequantize(**p, bits=bits).float().T)
    return model

def main(a):
    import torch
    from qllama.load import load
    from qllama.perplexity import perplexity, read_tokens, stdlib_glob, text_files, token_windows
    work, res = Path(a.work), dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                                                threads=a.threads, torch=torch.__version__, python=platform.python_version(),
                                                loadavg_at_start=os.getloadavg()))
    import gptqmodel
    res['gptqmodel'] = gptqmodel.__version__
    stdlib = Path(stdlib_glob()).parent
    res['setup'] = dict(source=str(a.src), calibration=f'{stdlib}/{CALIB}', nsamples=a.nsamples, seqlen=a.seqlen,
                        evaluation=f'{stdlib}/{EVAL}', eval_windows=a.eval_windows, eval_seqlen=a.eval_seqlen,
                        batch_size=a.batch_size, seeds=a.seeds, jobs=a.jobs, settings={b: settings(b) for b in a.bits})
    fp = load(a.src, progress=False)
    ids = read_tokens(fp.tokenizer, text_files(str(stdlib/EVAL)), a.eval_windows * a.eval_seqlen)
    windows = token_windows(ids, a.eval_seqlen, a.eval_windows)
    ppl = lambda m: perplexity(m, windows, progress=False)['ppl']
    res['fp32'] = dict(ppl=ppl(fp)); print('fp32', res['fp32'], flush=True)
    def run(tool, bits, seed, name, *extra):
        "Quantize in a subprocess; its times, peak RSS and perplexity."
        out = work/f'{tool}-{bits}bit-{name}-seed{seed}'
        cmd = [sys.executable, __file__, '--worker', tool, '--bits', str(bits), '--out', str(out), '--src', str(a.src), '--seed', str(seed),
               '--nsamples', str(a.nsamples), '--seqlen', str(a.seqlen), '--batch-size', str(a.batch_size), '--threads', str(a.threads), *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode: sys.exit(f"{tool} {name} seed {seed} worker failed:\n{p.stderr[-4000:]}")
        t = json.loads(p.stdout.strip().splitlines()[-1])
        t['ppl'] = ppl(dense(load(out, progress=False)))
        shutil.rmtree(out)
        print(bits, tool, name, 'seed', seed, t, flush=True)
        with open(work/'partial.jsonl', 'a') as f: f.write(json.dumps(dict(bits=bits, tool=name, seed=seed, **t)) + '\n')
        return t
    torch.set_num_threads(a.threads)   # evaluation runs beside the other job's quantization
    runs = {'qllama': ('qllama',), 'gptqmodel': ('gptqmodel',), 'qllama_fp16_scales': ('qllama', '--fp16-scales')}
    # qllama and GPTQModel over all seeds first, then the former variant: a cut-short run still compares the two tools
    jobs = [(bits, seed, name) for bits in a.bits for names in (a.runs[:2], a.runs[2:]) for seed in a.seeds for name in names]
    done = {}
    if a.resume and (work/'partial.jsonl').exists():   # runs finished by an earlier invocation (same settings): not redone
        for l in (work/'partial.jsonl').read_text().splitlines():
            t = json.loads(l); done[t.pop('bits'), t.pop('seed'), t.pop('tool')] = t
        print('resumed', sorted(done), flush=True)
    todo = [] if a.no_new_runs else [j for j in jobs if j not in done]
    with ThreadPoolExecutor(a.jobs) as ex:   # `a.jobs` quantizations at a time, each in its own process
        done |= dict(zip(todo, ex.map(lambda j: run(runs[j[2]][0], j[0], j[1], j[2], *runs[j[2]][1:]), todo)))
    for bits in a.bits:
        r = res[f'{bits}bit'] = dict(rtn=dict(ppl=ppl(rtn(load(a.src, progress=False), bits))))
        for name in runs:
            seeds = [sd for sd in a.seeds if (bits, sd, name) in done]
            if not seeds: continue                     # not run (a run cut short and resumed with fewer --runs)
            r[name] = summarize({str(seed): done[bits, seed, name] for seed in seeds})
        compare(r)
        print(bits, 'summary', {k: v for k, v in r.items() if k not in runs}, flush=True)
    res['machine']['loadavg_at_end'] = os.getloadavg()   # 2 cores shared with other work: times are noisy when this is > 1
    res['source_bytes'] = sum(f.stat().st_size for f in Path(a.src).glob('*.safetensors'))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))

def gpu_layer(a):
    "Seconds to GPTQ-quantize one 70B-width decoder layer (random weights, nsamples x seqlen calibration tokens)."
    import torch
    from qllama.config import LlamaConfig, QuantConfig
    from qllama.model import Block, Rotary, positions_of
    from qllama.quantize import quantize_block
    cfg = LlamaConfig(vocab_size=32016, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                      num_key_value_heads=8, head_dim=128, max_position_embeddings=16384, rope_theta=1e6)
    dev, res = 'cuda', dict(device=torch.cuda.get_device_name(), nsamples=a.nsamples, seqlen=a.seqlen, batch_size=a.batch_size)
    torch.manual_seed(0)
    blk = Block(cfg, 0, None, torch.float32, dev)
    with torch.no_grad():
        for n, p in blk.named_parameters():
            if p.ndim == 2: p.normal_(0, p.shape[1] ** -0.5)
    cos, sin = Rotary(cfg, dev)(positions_of(0, 1, a.seqlen, dev), a.seqlen)
    for bits in a.bits:
        xs = [torch.randn(a.batch_size, a.seqlen, cfg.hidden_size, device=dev) for _ in range(a.nsamples // a.batch_size)]
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t = time.time()
        quantize_block(blk, xs, cos, sin, QuantConfig(**settings(bits)))
        torch.cuda.synchronize()
        res[f'{bits}bit'] = dict(seconds_per_layer=time.time() - t, peak_gpu_bytes=torch.cuda.max_memory_allocated(),
                                 est_70b_minutes=80 * (time.time() - t) / 60)
        print(json.dumps(res), flush=True)
        del xs
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--src', default=str(Path.home()/'.cache/qllama/smollm2-source'))
    ap.add_argument('--work', default='/tmp/quantize_compare')
    ap.add_argument('--json', default=str(Path(__file__).parent/'results'/'quantize_compare.json'))
    ap.add_argument('--bits', type=int, nargs='+', default=[4, 3])
    ap.add_argument('--nsamples', type=int, default=16)
    ap.add_argument('--seqlen', type=int, default=256)
    ap.add_argument('--eval-windows', type=int, default=8)
    ap.add_argument('--eval-seqlen', type=int, default=512)
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads of each quantizing process')
    ap.add_argument('--gpu-layer', action='store_true', help='time one 70B-width layer on CUDA instead (use --nsamples 128 --seqlen 2048)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='calibration seeds (other windows, same files)')
    ap.add_argument('--runs', nargs='+', default=['qllama', 'gptqmodel', 'qllama_fp16_scales'])
    ap.add_argument('--jobs', type=int, default=2, help='quantizations running at once (each with --threads threads)')
    ap.add_argument('--resume', action='store_true', help="reuse the runs recorded in WORK/partial.jsonl by an earlier invocation")
    ap.add_argument('--no-new-runs', action='store_true', help="with --resume: only evaluate and summarize the recorded runs")
    ap.add_argument('--worker', choices=('qllama', 'gptqmodel'), help=argparse.SUPPRESS)
    ap.add_argument('--blocksize', type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument('--fp16-scales', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--seed', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--worker-batch-size', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()
    gpu_layer(a) if a.gpu_layer else worker(a) if a.worker else main(a)
