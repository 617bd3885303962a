"""Merge a later `quantize_compare.py` run (more calibration seeds) into the committed results, seed by seed.

Both files must have the same setup (source, calibration and evaluation files, window counts and lengths, settings)
and the same float and round-to-nearest perplexities to 1e-5 (a check that the evaluation windows are the same; another
CPU rounds them differently by ~1e-7). The runs of
each tool and bit width are pooled by seed (a seed in both files is an error), and every summary is recomputed with
`quantize_compare.summarize` and `compare`, paired analysis included. Bit widths or tools only in the first file keep
their seeds; the setup records the seeds of each bit width, and `batches` what each invocation ran and on what load.

    python bench/quantize_compare_merge.py bench/results/quantize_compare.json /tmp/qc4.json   # rewrites the first file
"""
import argparse, json, math, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import quantize_compare as qc

TOL = 1e-5   # the same windows score the same to ~1e-7 on another CPU (AVX2 vs AVX-512 rounding); other windows move it by percents
SAME = ('source', 'calibration', 'nsamples', 'seqlen', 'evaluation', 'eval_windows', 'eval_seqlen', 'batch_size')

def batch(res, bits):
    "What one invocation ran."
    st = res['setup']
    return dict(seeds=st['seeds'], bits=bits, runs=sorted({k for b in bits for k in res[f'{b}bit'] if isinstance(res[f'{b}bit'][k], dict) and 'runs' in res[f'{b}bit'][k]}),
                jobs=st['jobs'], threads=res['machine']['threads'], loadavg_at_start=res['machine']['loadavg_at_start'],
                loadavg_at_end=res['machine']['loadavg_at_end'])

def merge(old:dict, new:dict) -> dict:
    for k in SAME:
        if old['setup'][k] != new['setup'][k]: sys.exit(f"setup differs in {k}: {old['setup'][k]} vs {new['setup'][k]}")
    if not math.isclose(old['fp32']['ppl'], new['fp32']['ppl'], rel_tol=TOL): sys.exit("fp32 perplexity differs: other evaluation windows?")
    if old.get('gptqmodel') != new.get('gptqmodel'): sys.exit(f"GPTQModel versions differ: {old.get('gptqmodel')} vs {new.get('gptqmodel')}")
    bits_old = [int(k[:-3]) for k in old if k.endswith('bit')]
    bits_new = [int(k[:-3]) for k in new if k.endswith('bit')]
    res = json.loads(json.dumps(old))
    res['machine'].setdefault('batches', [batch(old, bits_old)])
    res['machine']['batches'].append(batch(new, bits_new))
    seeds_by_bits = res['setup'].get('seeds_by_bits', {str(b): list(old['setup']['seeds']) for b in bits_old})
    for b in bits_new:
        r, n = res.setdefault(f'{b}bit', dict(rtn=new[f'{b}bit']['rtn'])), new[f'{b}bit']
        if not math.isclose(r['rtn']['ppl'], n['rtn']['ppl'], rel_tol=TOL): sys.exit(f"{b}-bit round-to-nearest perplexity differs")
        if str(b) in res['setup']['settings'] and res['setup']['settings'][str(b)] != new['setup']['settings'][str(b)]: sys.exit(f"{b}-bit settings differ")
        res['setup']['settings'][str(b)] = new['setup']['settings'][str(b)]
        for name, x in n.items():
            if not (isinstance(x, dict) and 'runs' in x): continue
            runs = dict(r[name]['runs']) if name in r else {}
            if set(runs) & set(x['runs']): sys.exit(f"{b}-bit {name}: seeds {sorted(set(runs) & set(x['runs']))} in both files")
            runs.update(x['runs'])
            r[name] = qc.summarize(dict(sorted(runs.items(), key=lambda kv: int(kv[0]))))
        seeds_by_bits[str(b)] = sorted({int(s) for name, x in r.items() if isinstance(x, dict) and 'runs' in x for s in x['runs']})
    for b in set(bits_old) | set(bits_new): qc.compare(res[f'{b}bit'])
    res['setup']['seeds_by_bits'] = seeds_by_bits
    res['setup']['seeds'] = sorted({s for v in seeds_by_bits.values() for s in v})
    res['setup']['jobs'] = sorted({bt['jobs'] for bt in res['machine']['batches']})
    return res

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('old', help='results to extend (rewritten unless --out)')
    ap.add_argument('new', help='a later run with other seeds')
    ap.add_argument('--out')
    ap.add_argument('--subset', type=int, nargs='+', help="also the paired analysis over these seeds only (the ones planned first), "
                                                           "as `paired_qllama_over_gptqmodel_seeds_A-B`")
    a = ap.parse_args()
    res = merge(json.loads(Path(a.old).read_text()), json.loads(Path(a.new).read_text()))
    if a.subset:
        for k in [k for k in res if k.endswith('bit') and 'paired_qllama_over_gptqmodel' in res[k]]:
            r, sub = res[k], {str(s) for s in a.subset}
            if not sub <= set(r['qllama']['runs']) & set(r['gptqmodel']['runs']): continue
            pick = lambda t: {s: x['ppl'] for s, x in r[t]['runs'].items() if s in sub}
            r[f'paired_qllama_over_gptqmodel_seeds_{min(a.subset)}-{max(a.subset)}'] = qc.paired(pick('qllama'), pick('gptqmodel'))
    Path(a.out or a.old).write_text(json.dumps(res, indent=2))
    for k in res:
        if k.endswith('bit') and 'paired_qllama_over_gptqmodel' in res[k]: print(k, json.dumps(res[k]['paired_qllama_over_gptqmodel'], indent=1))
