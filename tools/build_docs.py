"""Build the documentation site into `docs/` from the notebooks in `nbs/`, without Quarto.

Three steps:

1. nbdev's own processing (`nbdev.serve_drv.main` with `FilterDefaults`, the machinery behind
   `nbdev_proc_nbs`) turns each notebook into the processed notebook Quarto would render: hidden and
   exported cells dropped, `show_doc` cells added and executed, backticked names linked.
2. `stage` adapts each processed notebook for MkDocs: the raw front-matter cell becomes a `# Title`
   cell, Quarto cell directives (`#| echo: false`, ...) become cell tags or are dropped, Pandoc-only
   markdown in `show_doc` output becomes HTML, and links into the (non-existent) Quarto site become
   relative links between pages of this site.
3. MkDocs Material with mkdocs-jupyter renders `_docs/` into `docs/`, with the navigation in reading
   order (index first, then the numbered notebooks) injected here rather than kept in `mkdocs.yml`.

Usage: `python tools/build_docs.py [--n_workers N]` from anywhere in the repo (`make docs`).
Exits non-zero, naming the notebook and cell, when a notebook cannot be processed.
"""
import argparse, json, os, posixpath, re, shutil, sys, time, traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT/'_docs'         # MkDocs' docs_dir: generated, gitignored
PROC = ROOT/'_proc'          # nbdev's processed notebooks: generated, gitignored
SITE = ROOT/'docs'           # the built site; only docs/.gitignore is tracked

def page_path(rel):
    "The site path nbdev gives the notebook at `rel` (relative to nbs/): `00_config.ipynb` -> `config.html`."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(rel)).as_posix()

def notebooks(nbs):
    "Notebooks under `nbs` that nbdev would document, in reading order: index first, then by path."
    from nbdev.doclinks import nbglob
    files = [Path(f) for f in nbglob(nbs)]
    rels = [f.relative_to(nbs) for f in files]
    return sorted(rels, key=lambda r: (r.parent.as_posix(), r.stem != 'index', r.name))

def _docs_filter():
    "nbdev's `FilterDefaults`, except that a cell mixing imports with other code only has its imports run."
    import ast
    from fastcore.basics import str2bool
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval, _show_docs

    class exec_show_docs_(exec_show_docs):
        # nbdev runs every cell that imports anything (its FAQ asks for imports in cells of their own), so
        # one test cell that starts with `import tempfile` and uses an earlier, unexecuted cell's variable
        # breaks the build. Running only the imports of such a cell gives show_doc what it needs, no more.
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            if str2bool(getattr(self.nb, 'frontmatter_', {}).get('skip_showdoc', False)): return
            if not _do_eval(cell): return
            trees, shown = cell.parsed_(), {'export', 'exports', 'exporti', 'exec_doc'}
            imps = [t for t in trees if isinstance(t, (ast.Import, ast.ImportFrom))]
            if cell.directives_.keys() & shown or _show_docs(trees) or len(imps) == len(trees): self.k.cell(cell)
            else: self.k.run('\n'.join(ast.unparse(t) for t in imps))
            if self.k.exc: raise Exception(f'Error in cell {cell.idx_}:\n{cell.source}') from self.k.exc

    class DocsFilter(FilterDefaults):
        def base_procs(self): return [exec_show_docs_ if p is exec_show_docs else p for p in super().base_procs()]
    return DocsFilter

def _proc_one(args):
    "Process one notebook with nbdev's docs processors; returns (error report or None, warnings). Runs in a fresh process."
    src, dst = map(Path, args)
    try:
        import warnings
        import nbdev.serve_drv
        os.chdir(src.parent)   # as nbdev_test does: relative paths in cells are relative to the notebook
        dst.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter('always')
            nbdev.serve_drv.main((src, dst, _docs_filter()))
        return None, [str(w.message) for w in ws if 'imports and other code' in str(w.message)]
    except BaseException as e:
        # the cell's own error (e.__cause__) is what the author needs, not nbdev's frames
        cause = ''.join(traceback.format_exception(e.__cause__)) if e.__cause__ else traceback.format_exc()
        return f'{cause}\n{e}', []

def process(nbs, rels, n_workers):
    "Run nbdev's processing on each notebook, in parallel; returns the notebooks that failed, with their reports."
    if PROC.exists(): shutil.rmtree(PROC)
    jobs = [(str(nbs/r), str(PROC/r)) for r in rels]
    ctx = get_context('spawn')
    fresh = {'max_tasks_per_child': 1} if sys.version_info >= (3, 11) else {}   # a fresh interpreter per notebook
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, **fresh) as ex:
        results = list(ex.map(_proc_one, jobs))
    failed = {}
    for r, (err, warns) in zip(rels, results):
        if warns:
            firsts = [w.split('---')[1].strip().splitlines()[0][:60] if '---' in w else w[:60] for w in warns]
            print(f'note: {r}: {len(warns)} cell(s) mix imports with other code; only their imports ran for the docs '
                  f'(nbdev runs such cells whole; its FAQ asks for imports in cells of their own): '
                  + '; '.join(f'`{f}`' for f in firsts), file=sys.stderr)
        if err:
            failed[r] = err
            print(f'\n=== nbdev could not process {r} for the docs:\n{err}', file=sys.stderr)
    return failed

_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_src_link = re.compile(r'\[source\]\((\S+?)\)\{[^}]*\}')
_re_fence_div = re.compile(r'^\s*:::.*$\n?', re.MULTILINE)

def _frontmatter(cell):
    "The YAML front matter of nbdev's raw first cell, as a dict."
    src = ''.join(cell['source']).strip()
    return yaml.safe_load(src.strip('-').strip()) or {} if src.startswith('---') else {}

def _directives(src):
    "Split leading `#| key: value` lines off a code cell's source."
    lines, dirs = src.splitlines(), {}
    while lines and _re_dir.match(lines[0]):
        k, v = _re_dir.match(lines.pop(0)).groups()
        dirs[k] = v.lower()
    return dirs, '\n'.join(lines)

def _relink(text, page, host):
    "Turn links into the Quarto site (`{host}config.html#x`) into links relative to `page`."
    def sub(m):
        target = m.group(1)
        return posixpath.relpath(target, posixpath.dirname(page) or '.') if target else m.group(0)
    return re.sub(re.escape(host) + r'([\w./-]+\.html(?:#[\w.-]*)?)', lambda m: sub(m), text)

_cell_keys = {'markdown': ('cell_type', 'id', 'metadata', 'source', 'attachments'),
              'code': ('cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count')}

def _std(c):
    "`c` with only the keys nbformat allows (nbdev's processing adds its own, e.g. `has_sd`)."
    return {k: c[k] for k in _cell_keys[c['cell_type']] if k in c}

def stage_nb(nb, page, host):
    "Adapt one processed notebook (a dict) for mkdocs-jupyter; returns (title, notebook)."
    cells = nb['cells']
    fm = _frontmatter(cells[0]) if cells and cells[0]['cell_type'] == 'raw' else {}
    if fm: cells = cells[1:]
    title = str(fm.get('title') or Path(page).stem)
    head = f'# {title}' + (f'\n\n> {fm["description"]}' if fm.get('description') else '')
    out = [{'cell_type': 'markdown', 'id': 'qllama-title', 'metadata': {}, 'source': head}]
    for c in cells:
        src = ''.join(c.get('source', ''))
        if c['cell_type'] == 'markdown':
            src = _relink(_re_fence_div.sub('', src), page, host)
            if src.strip() and not src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'):
                out.append(_std({**c, 'source': src}))
            continue
        if c['cell_type'] != 'code': continue
        dirs, src = _directives(src)
        if dirs.get('include') == 'false': continue
        tags = list(c.get('metadata', {}).get('tags', []))
        if dirs.get('echo') == 'false' or not src.strip(): tags.append('remove_input')
        outputs = [] if dirs.get('output') == 'false' else c.get('outputs', [])
        for o in outputs:
            md = o.get('data', {}).get('text/markdown')
            if md is not None:
                md = ''.join(md)
                md = _re_src_link.sub(r'<a class="qllama-source" href="\1">source</a>', md)
                o['data']['text/markdown'] = _relink(md, page, host)
        if not src.strip() and not outputs: continue
        out.append(_std({**c, 'source': src, 'outputs': outputs, 'metadata': {**c.get('metadata', {}), 'tags': tags}}))
    return title, {**nb, 'cells': out}

def stage(rels, host):
    "Write the MkDocs sources into `_docs/`; returns the nav, in reading order."
    if STAGE.exists(): shutil.rmtree(STAGE)
    nav = []
    for r in rels:
        page = page_path(r)
        nb = json.loads((PROC/r).read_text(encoding='utf-8'))
        title, nb = stage_nb(nb, page, host)
        dst = STAGE/Path(page).with_suffix('.ipynb')
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(nb, indent=1), encoding='utf-8')
        nav.append({'Introduction' if page == 'index.html' else title: Path(page).with_suffix('.ipynb').as_posix()})
    shutil.copytree(ROOT/'tools'/'docs_assets', STAGE/'assets', ignore=shutil.ignore_patterns('*.js'))
    return nav

def copy_mathjax():
    "Copy MathJax 2 (from the jupyter-server-mathjax package) into the site, so math renders offline."
    try: import jupyter_server_mathjax
    except ImportError:
        return print('docs: warning: jupyter-server-mathjax is not installed; math will show as TeX source', file=sys.stderr)
    static = Path(jupyter_server_mathjax.__file__).parent/'static'
    shutil.copytree(static, SITE/'assets'/'mathjax', dirs_exist_ok=True)
    (SITE/'assets'/'mathjax'/'config'/'local').mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT/'tools'/'docs_assets'/'mathjax-local.js', SITE/'assets'/'mathjax'/'config'/'local'/'qllama.js')
    for page in SITE.rglob('*.html'):   # mkdocs-jupyter's MathJax URL is relative to a top-level page
        depth = len(page.relative_to(SITE).parts) - 1
        if depth: page.write_text(page.read_text(encoding='utf-8').replace(
            'src="assets/mathjax/', 'src="' + '../'*depth + 'assets/mathjax/'), encoding='utf-8')

def render(nav, strict=True):
    "Render `_docs/` into `docs/` with MkDocs, navigation injected."
    import logging
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    logging.basicConfig(level=logging.WARNING, format='mkdocs %(levelname)s: %(message)s')
    cfg = load_config(str(ROOT/'mkdocs.yml'), nav=nav, strict=strict)
    build(cfg)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n_workers', type=int, default=min(2, os.cpu_count() or 1), help='notebooks processed at once')
    p.add_argument('--skip_proc', action='store_true', help='reuse _proc/ from an earlier run')
    a = p.parse_args()
    os.chdir(ROOT)
    from nbdev.config import get_config
    cfg = get_config()
    nbs, host = cfg.nbs_path, cfg.doc_host.rstrip('/') + cfg.doc_baseurl.rstrip('/') + '/'
    rels = notebooks(nbs)
    if not rels: raise SystemExit(f'docs: no notebooks found in {nbs}')
    t0 = time.time()
    failed = {} if a.skip_proc else process(nbs, rels, a.n_workers)
    t1 = time.time()
    nav = stage([r for r in rels if r not in failed], host)
    render(nav)
    copy_mathjax()
    print(f'docs: {len(nav)} pages in {SITE.relative_to(ROOT)}/ (nbdev processing {t1-t0:.0f}s, '
          f'MkDocs {time.time()-t1:.0f}s)')
    for item in nav: print('  ', *item.items())
    if failed: raise SystemExit(f'docs: FAILED: {len(failed)} notebook(s) could not be processed, so their pages '
                                f'are missing: ' + ', '.join(map(str, failed)))

if __name__ == '__main__': main()
