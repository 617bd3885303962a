"""qllama's GPTQ quantizer against GPTQModel 7.6.0 on SmolLM2-135M-Instruct, on the CPU: perplexity and time.

Both tools get the same source weights (fp32), the same settings (bits, group size 128, act-order, sym, damp 0.01,
true-sequential, fp32 activations), the same calibration windows (standard-library `.py` files whose names start
with a-m) and the same CPU threads; every model is then evaluated by the same code (qllama's `perplexity`, with the
quantized weights dequantized once into fp32 linears) on the same held-out windows (files n-z). Round-to-nearest and
the float model are evaluated alongside. Each quantization runs in its own subprocess, which reports its wall time and
peak RSS (VmHWM).

Run to run spread. GPTQ's column loop is chaotic: one rounding decision that flips (a scale that differs in its last
bit, a sum taken in another order) changes the error carried to every later column, and the two tools' weights end up
~10% apart (relative Frobenius norm) at the same proxy loss `tr((W-Ŵ) H (W-Ŵ)ᵀ)`. With 4096 calibration tokens on a
135M model that moves perplexity by several percent. So besides the timed pair, each bit width also runs variants that
are the same algorithm in exact arithmetic (`--ablation`, on by default):

    qllama blocksize64     lazy blocks of 64 columns instead of 128 (other float rounding in the updates)
    qllama fp32_scales     GPTQModel's choice: group scales kept in fp32 inside the column loop, rounded to fp16 only
                           when stored (qllama rounds them up to fp16 first, so the loop sees the stored weights)
    gptqmodel batch4       calibration forwarded 4 windows at a time instead of 8 (Hessian summed in another order)

    python bench/quantize_compare.py                  # writes bench/results/quantize_compare.json
    (GPTQModel must be importable by the same interpreter: see tests/test_quantize.py for what it needs)
"""
import argparse, json, os, platform, shutil, subprocess, sys, time
from pathlib import Path

CALIB, EVAL = '[a-m]*.py', '[n-z]*.py'

def settings(bits):
    return dict(bits=bits, group_size=128, desc_act=True, sym=True, damp_percent=0.01, static_groups=False, true_sequential=True)

def _status(key):
    "A memory figure of this process from /proc/self/status, in bytes."
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key + ':'))

def _fp32_scales():
    "Make qllama keep group scales in fp32 inside the GPTQ loop (GPTQModel's choice): they are rounded to fp16 only when packed."
    import qllama.gptq
    qllama.gptq._round_up = lambda s, dtype: s.float()

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
        if a.fp32_scales: _fp32_scales()
        quantize(a.src, a.out, QuantConfig(**settings(bits)), dataset=calib_glob, nsamples=a.nsamples, seqlen=a.seqlen,
                 seed=0, batch_size=a.batch_size, blocksize=a.blocksize, progress=False)
        t = dict(total_s=time.time() - t0)
    else:
        os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2')   # its CPU pool refuses fewer on small machines
        from gptqmodel import GPTQModel, QuantizeConfig
        from qllama.quantize import calibration_windows
        from qllama.perplexity import text_files
        from qllama.tokenizer import Tokenizer
        ids = calibration_windows(Tokenizer.from_dir(a.src), text_files(calib_glob), a.nsamples, a.seqlen, seed=0)
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
                        batch_size=a.batch_size, settings={b: settings(b) for b in a.bits})
    fp = load(a.src, progress=False)
    ids = read_tokens(fp.tokenizer, text_files(str(stdlib/EVAL)), a.eval_windows * a.eval_seqlen)
    windows = token_windows(ids, a.eval_seqlen, a.eval_windows)
    ppl = lambda m: perplexity(m, windows, progress=False)['ppl']
    res['fp32'] = dict(ppl=ppl(fp)); print('fp32', res['fp32'], flush=True)
    def run(tool, bits, name, *extra):
        "Quantize in a subprocess; its times, peak RSS and perplexity."
        out = work/f'{tool}-{bits}bit-{name}'
        cmd = [sys.executable, __file__, '--worker', tool, '--bits', str(bits), '--out', str(out), '--src', str(a.src),
               '--nsamples', str(a.nsamples), '--seqlen', str(a.seqlen), '--batch-size', str(a.batch_size), '--threads', str(a.threads), *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode: sys.exit(f"{tool} {name} worker failed:\n{p.stderr[-4000:]}")
        t = json.loads(p.stdout.strip().splitlines()[-1])
        t['ppl'] = ppl(dense(load(out, progress=False)))
        shutil.rmtree(out)
        print(bits, tool, name, t, flush=True)
        return t
    for bits in a.bits:
        r = res[f'{bits}bit'] = {}
        r['rtn'] = dict(ppl=ppl(rtn(load(a.src, progress=False), bits))); print(bits, 'rtn', r['rtn'], flush=True)
        for tool in ('qllama', 'gptqmodel'): r[tool] = run(tool, bits, 'default')
        r['ppl_ratio_qllama_over_gptqmodel'] = r['qllama']['ppl'] / r['gptqmodel']['ppl']
        r['time_ratio_qllama_over_gptqmodel'] = r['qllama']['total_s'] / r['gptqmodel']['total_s']
        if a.ablation:
            v = r['variants'] = {}
            v['qllama_blocksize64'] = run('qllama', bits, 'blocksize64', '--blocksize', '64')
            v['qllama_fp32_scales'] = run('qllama', bits, 'fp32_scales', '--fp32-scales')
            v['gptqmodel_batch4'] = run('gptqmodel', bits, 'batch4', '--worker-batch-size', '4')
            q = [r['qllama']['ppl'], v['qllama_blocksize64']['ppl'], v['qllama_fp32_scales']['ppl']]
            g = [r['gptqmodel']['ppl'], v['gptqmodel_batch4']['ppl']]
            r['spread'] = dict(qllama_min_max=[min(q), max(q)], gptqmodel_min_max=[min(g), max(g)],
                               qllama_mean=sum(q) / len(q), gptqmodel_mean=sum(g) / len(g),
                               mean_ratio_qllama_over_gptqmodel=(sum(q) / len(q)) / (sum(g) / len(g)))
        work.mkdir(parents=True, exist_ok=True); (work/'partial.json').write_text(json.dumps(res, indent=2))
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
    ap.add_argument('--ablation', action=argparse.BooleanOptionalAction, default=True,
                    help='also run the same-algorithm variants that measure the run-to-run spread')
    ap.add_argument('--worker', choices=('qllama', 'gptqmodel'), help=argparse.SUPPRESS)
    ap.add_argument('--blocksize', type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument('--fp32-scales', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--worker-batch-size', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--out', help=argparse.SUPPRESS)
    a = ap.parse_args()
    gpu_layer(a) if a.gpu_layer else worker(a) if a.worker else main(a)
