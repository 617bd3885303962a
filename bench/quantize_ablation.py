"""Same inputs in, same integers out? qllama's GPTQ against GPTQModel 7.6.0's, linear by linear, on SmolLM2-135M (CPU).

`bench/quantize_compare.py` measures the two tools end to end; this script looks inside. It runs GPTQModel once with the
compare script's 4-bit settings and calibration, keeping every linear's Hessian `H`, float weight `W` and quantized
weight, then checks with qllama's code:

1. the pipeline: replaying the source model through qllama's `_run_groups`, each linear group switched to GPTQModel's
   quantized weights as soon as its Hessian is taken, reproduces GPTQModel's Hessian of every group of every layer
   (so both measure H through the already-quantized earlier stages and layers, from the same tokens, scaled alike);
2. the algorithm: qllama's `gptq_quantize` on GPTQModel's own `(W, H)` of each linear ("open loop": every linear sees
   exactly GPTQModel's inputs): the GPTQ proxy loss tr((W-Ŵ) H (W-Ŵ)ᵀ) against GPTQModel's, and the perplexity of the
   model made of those weights, once with qllama's former fp16-exact scales (rounded up before the column loop) and once
   with scales kept in fp32 inside the loop (GPTQModel's choice, and qllama's default now), next to GPTQModel's own
   weights (all three with the scales the loop used, not yet rounded for storage).

    python bench/quantize_ablation.py        # writes bench/results/quantize_ablation.json
"""
import argparse, json, os, shutil, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import quantize_compare as qc

def gptqmodel_dump(a, dump:Path):
    "Quantize with GPTQModel, saving H, W and the quantized weight of every linear to `dump`."
    import torch
    os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2')
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.quantization import gptq as G
    from qllama.quantize import calibration_windows
    from qllama.perplexity import stdlib_glob, text_files
    from qllama.tokenizer import Tokenizer
    orig = G.GPTQ.quantize
    def keep(self, blocksize=128):
        H, W = self.finalize_hessian().clone(), self.module.weight.data.clone()
        r = orig(self, blocksize=blocksize)
        torch.save(dict(H=H, W=W, wq=r[0].clone()), dump/f'{self._named_module.layer_index}.{self._named_module.name}.pt')
        return r
    G.GPTQ.quantize = keep
    ids = calibration_windows(Tokenizer.from_dir(a.src), text_files(str(Path(stdlib_glob()).parent/qc.CALIB)), a.nsamples, a.seqlen, seed=0)
    model = GPTQModel.load(a.src, QuantizeConfig(**qc.settings(a.bits)), device='cpu', dtype=torch.float32)
    model.quantize([{'input_ids': w.tolist(), 'attention_mask': [1] * len(w)} for w in ids], batch_size=a.batch_size)
    G.GPTQ.quantize = orig

def main(a):
    import torch
    import qllama.gptq
    from qllama import quantize as Q
    from qllama.config import ModelConfig, QuantConfig
    from qllama.load import load
    from qllama.model import Rotary, positions_of
    from qllama.perplexity import perplexity, read_tokens, stdlib_glob, text_files, token_windows
    from qllama.tokenizer import Tokenizer
    torch.set_num_threads(a.threads)
    dump = Path(tempfile.mkdtemp(prefix='gptq-ablation-'))
    t = time.time(); gptqmodel_dump(a, dump); print(f'GPTQModel quantized and dumped in {time.time() - t:.0f} s', flush=True)
    get = lambda i, name: torch.load(dump/f'{i}.{name}.pt')
    src, quant, stdlib = Path(a.src), QuantConfig(**qc.settings(a.bits)), Path(stdlib_glob()).parent
    cfg, sw = ModelConfig.from_dir(src).llama, Q.SourceWeights(src)
    rel = lambda x, y: ((x - y).norm() / y.norm()).item()
    # 1. the pipeline
    ids = Q.calibration_windows(Tokenizer.from_dir(src), text_files(str(stdlib/qc.CALIB)), a.nsamples, a.seqlen, 0)
    emb = sw.get('model.embed_tokens.weight'); xs = [emb[c] for c in ids.split(a.batch_size)]; del emb
    cos, sin = Rotary(cfg, 'cpu')(positions_of(0, 1, a.seqlen, 'cpu'), a.seqlen)
    h_err = []
    with torch.no_grad():
        for i in range(cfg.num_hidden_layers):
            blk = sw.block(cfg, i)
            def visit(k, H):
                part, names = Q.GROUPS[k]
                h_err.append(rel(H, get(i, f'{part}.{names[0]}')['H']))
                for n in names: getattr(getattr(blk, part), n).weight.copy_(get(i, f'{part}.{n}')['wq'])
            xs = Q._run_groups(blk, xs, cos, sin, visit)
    print(f'Hessians, qllama replay vs GPTQModel: max relative difference {max(h_err):.1e}', flush=True)
    # 2. the algorithm, open loop
    fp = load(src, progress=False)
    win = token_windows(read_tokens(fp.tokenizer, text_files(str(stdlib/qc.EVAL)), a.eval_windows * a.eval_seqlen), a.eval_seqlen, a.eval_windows)
    lin = [(n, m) for n, m in fp.named_modules() if isinstance(m, torch.nn.Linear) and '.layers.' in n]
    def model_ppl(weight_of):
        with torch.no_grad():
            for n, m in lin:
                i, name = n.split('.layers.')[1].split('.', 1)
                m.weight.copy_(weight_of(get(i, name)))
        return perplexity(fp, win, progress=False)['ppl']
    res = dict(setup=dict(bits=a.bits, nsamples=a.nsamples, seqlen=a.seqlen, eval_windows=a.eval_windows, eval_seqlen=a.eval_seqlen,
                          settings=qc.settings(a.bits), threads=a.threads),
               hessian_max_rel_diff=max(h_err), hessians_compared=len(h_err))
    res['ppl_gptqmodel_weights'] = model_ppl(lambda g: g['wq'])
    print('GPTQModel weights:', res['ppl_gptqmodel_weights'], flush=True)
    qp = Q._quant_params
    def loop_weight(r):
        "The weight with the scales the column loop used (GPTQModel's `wq` is that, before its scales are stored in fp16)."
        g = r['g_idx'].long()
        return r['scales'].float()[g].T * (r['q'] - r['zeros'][g].T).float()
    for name, fp16 in (('fp16_scales', True), ('fp32_scales', False)):   # qllama's former choice; its default now
        Q._quant_params = lambda x, g_idx, quant, fp16_=fp16, **k: qp(x, g_idx, quant, fp16=fp16_)
        ratios, same = [], []
        def ours(g):
            w = loop_weight(Q.gptq_quantize(g['W'], g['H'], quant))
            obj = lambda wh: torch.einsum('oi,ij,oj->', g['W'] - wh, g['H'], g['W'] - wh).item()
            ratios.append(obj(w) / obj(g['wq'])); same.append((w == g['wq']).float().mean().item())
            return w
        p = model_ppl(ours)
        res[f'open_loop_{name}'] = dict(ppl=p, proxy_loss_ratio_min_median_max=[min(ratios), statistics.median(ratios), max(ratios)],
                                        fraction_of_weights_identical_to_gptqmodel_median=statistics.median(same),
                                        linears_identical_to_gptqmodel=sum(s == 1.0 for s in same), linears=len(same))
        print(name, res[f'open_loop_{name}'], flush=True)
    Q._quant_params = qp
    shutil.rmtree(dump)
    Path(a.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--src', default=str(Path.home()/'.cache/qllama/smollm2-source'))
    ap.add_argument('--json', default=str(Path(__file__).parent/'results'/'quantize_ablation.json'))
    ap.add_argument('--bits', type=int, default=4)
    ap.add_argument('--nsamples', type=int, default=16)
    ap.add_argument('--seqlen', type=int, default=256)
    ap.add_argument('--eval-windows', type=int, default=8)
    ap.add_argument('--eval-seqlen', type=int, default=512)
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    main(ap.parse_args())
