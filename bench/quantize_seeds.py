"""Which calibration seeds of `quantize_compare.py` draw new windows, and the paired analysis over those seeds.

A seed shuffles the calibration files and reads windows in that order, so two seeds can draw exactly the same windows
(same first files) or share some. Both tools are deterministic, so an exact repeat adds no information:

    python bench/quantize_seeds.py --next 16 bench/results/quantize_compare_3bit_64x256.json   # the next 16 new seeds
    python bench/quantize_seeds.py --write bench/results/quantize_compare_3bit_64x256.json     # redo the subset analyses

`--write` recomputes, for every bit width in the file, `paired_qllama_over_gptqmodel_distinct` (seeds whose windows are
not exactly a lower seed's) and `paired_qllama_over_gptqmodel_window_independent` (seeds sharing no window with any
lower seed, run or not), with `quantize_compare.paired`.
"""
import argparse, hashlib, json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import quantize_compare as qc

def window_hashes(src, nsamples, seqlen, seeds):
    "{seed: [hash of each calibration window]} as `quantize_compare.py`'s workers draw them."
    from qllama.perplexity import stdlib_glob, text_files
    from qllama.quantize import calibration_windows
    from qllama.tokenizer import Tokenizer
    tok, files = Tokenizer.from_dir(src), text_files(str(Path(stdlib_glob()).parent/qc.CALIB))
    return {s: [hashlib.sha1(w.numpy().tobytes()).hexdigest() for w in calibration_windows(tok, files, nsamples, seqlen, seed=s)]
            for s in seeds}

def classify(h:dict):
    "(seeds repeating a lower seed's windows exactly, seeds sharing no window with a lower seed)."
    seen_sets, seen = set(), set()
    dup, indep = [], []
    for s in sorted(h):
        key = tuple(sorted(h[s]))
        if key in seen_sets: dup.append(s)
        elif not seen & set(h[s]): indep.append(s)
        seen_sets.add(key); seen |= set(h[s])
    return dup, indep

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('results', help='a quantize_compare JSON')
    ap.add_argument('--bits', type=int, default=3)
    ap.add_argument('--next', type=int, default=0, help='print this many new seeds above the highest run')
    ap.add_argument('--write', action='store_true', help='recompute the distinct / window-independent analyses in place')
    a = ap.parse_args()
    res = json.loads(Path(a.results).read_text())
    st = res['setup']
    r = res[f'{a.bits}bit']
    runs = sorted(int(s) for s in r['qllama']['runs'] if s in r['gptqmodel']['runs'])
    top = max(runs) + 1 + 4 * a.next
    h = window_hashes(st['source'], st['nsamples'], st['seqlen'], range(top))
    dup, indep = classify(h)
    if a.next:
        new = [s for s in range(max(runs) + 1, top) if s not in dup][:a.next]
        print(' '.join(map(str, new)))
    if a.write:
        q = {s: r['qllama']['runs'][str(s)]['ppl'] for s in runs}
        g = {s: r['gptqmodel']['runs'][str(s)]['ppl'] for s in runs}
        for key, keep, note in (('distinct', [s for s in runs if s not in dup],
                                 f"seeds whose {st['nsamples']} calibration windows are not exactly a lower seed's (hashed): "
                                 f"{', '.join(str(s) for s in runs if s in dup) or 'none'} left out"),
                                ('window_independent', [s for s in runs if s in indep], 'seeds sharing no calibration window with a lower seed (hashed)')):
            p = qc.paired({str(s): q[s] for s in keep}, {str(s): g[s] for s in keep})
            r[f'paired_qllama_over_gptqmodel_{key}'] = p | dict(note=note)
            print(key, len(keep), f"{p['geometric_mean_ratio']:.4f}", [round(x, 4) for x in p['interval_ratio']], p['within_target'],
                  'no worse than +1%:', p['no_worse_than_target'])
        Path(a.results).write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
