"""The documentation site, checked in a real browser.

Builds the site with `tools/build_docs.py` (or, with QLLAMA_DOCS_PREBUILT=1, uses the `docs/` that
`make docs` just built), serves `docs/` on 127.0.0.1 and drives headless Chromium through it:

- every notebook in `nbs/` has a page whose heading is the notebook's `# Title`, with no Python
  traceback in it, that loads nothing from outside this machine;
- every public function and class in `qllama/_modidx.py` has its `show_doc` heading on its page;
- math typesets (MathJax is served from the site itself);
- clicking the sidebar links, starting from the home page, reaches every page in reading order.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package. Without them the browser
tests skip, except under CI (CI=true), where they fail.
"""
import ast, functools, http.server, json, os, re, shutil, subprocess, sys, threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS, SITE = ROOT/'nbs', ROOT/'docs'
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
TRACEBACK = 'Traceback (most recent call last)'

# ---- what the site must contain, read from the sources (not from the build) -----------------------------

def source_notebooks(nbs=NBS):
    "Notebooks nbdev documents (skipping `_`/`.` files and folders, as nbdev's nbglob does), in reading order."
    found = [p.relative_to(nbs) for p in nbs.rglob('*.ipynb') if not any(part[0] in '_.' for part in p.relative_to(nbs).parts)]
    return sorted(found, key=lambda r: (r.parent.as_posix(), r.stem != 'index', r.name))

def page_of(rel):
    "nbdev's page name for a notebook: `00_config.ipynb` -> `config.html`."
    return (rel.parent/re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix()

def _cells(rel): return json.loads((NBS/rel).read_text(encoding='utf-8'))['cells']
def _src(c): return ''.join(c['source'])

def title_of(rel):
    "The notebook's `# Title`: its first markdown cell's first line."
    md = next(c for c in _cells(rel) if c['cell_type'] == 'markdown')
    line = _src(md).strip().splitlines()[0]
    assert line.startswith('# '), f'{rel}: the first markdown cell must start with `# Title`, not {line!r}'
    return line[2:].strip()

def has_math(rel):
    "Does a markdown cell hold TeX math ($...$ or $$...$$, outside code spans)?"
    text = '\n'.join(re.sub(r'`[^`]*`', '', _src(c)) for c in _cells(rel) if c['cell_type'] == 'markdown')
    return re.search(r'\$\$.+?\$\$|(?<![\\$])\$[^$\s][^$\n]*\$', text, re.S) is not None

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)', re.M)

def undocumented_names():
    "Names defined in exported cells that nbdev does not show_doc: hidden, `exporti` or `include: false` cells."
    names = set()
    for rel in source_notebooks():
        for c in _cells(rel):
            if c['cell_type'] != 'code': continue
            src = _src(c); dirs = set(_re_directive.findall(src))
            if not (dirs & {'hide', 'exporti'} or re.search(r'#\|\s*include:\s*false', src)): continue
            try: body = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!')))).body
            except SyntaxError: continue
            names |= {t.name for t in body if isinstance(t, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return names

def expected_api():
    "{page: [public names]} from qllama/_modidx.py: each module's top-level functions and classes."
    ns = {}
    exec((ROOT/'qllama'/'_modidx.py').read_text(encoding='utf-8'), ns)
    hidden, res = undocumented_names(), {}
    for mod, syms in ns['d']['syms'].items():
        for key, (link, _) in syms.items():
            name = key[len(mod)+1:]
            if '.' in name or name.startswith('_') or name in hidden: continue
            res.setdefault(link.split('#')[0], []).append(name)
    return res

NOTEBOOKS = source_notebooks()
PAGES = [page_of(r) for r in NOTEBOOKS]

def test_every_notebook_has_a_title():
    assert NOTEBOOKS, 'no notebooks in nbs/'
    for rel in NOTEBOOKS: assert title_of(rel)

def test_every_module_has_a_page():
    "Each page named in _modidx.py is the page of some notebook (else its API docs would be nowhere)."
    missing = set(expected_api()) - set(PAGES)
    assert not missing, f'_modidx.py links to pages no notebook produces: {sorted(missing)}'

# ---- the staging step of tools/build_docs.py, on a made-up processed notebook -------------------------------

def _build_docs():
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_stage_nb():
    "Front matter becomes the title cell; Quarto directives become tags or drop cells; links become local."
    host = 'https://qllama.github.io/qllama/'
    code = lambda src, outs=(): {'cell_type': 'code', 'metadata': {}, 'source': src, 'outputs': list(outs),
                                 'execution_count': None, 'has_sd': True}
    md_out = {'output_type': 'execute_result', 'metadata': {}, 'execution_count': None, 'data': {'text/markdown':
              ['---\n', '[source](https://github.com/qllama/qllama/blob/main/qllama/gptq.py#L9){target="_blank" '
               'style="float:right; font-size:smaller"}\n', '\n### unpack_rows\n', 'see [`KVCache`](', host,
               'model.html#kvcache)']}}
    nb = {'nbformat': 4, 'nbformat_minor': 5, 'metadata': {}, 'cells': [
        {'cell_type': 'raw', 'metadata': {}, 'source': '---\ndescription: Bits in words.\noutput-file: gptq.html\n'
                                                        'title: The GPTQ format\n---\n'},
        {'cell_type': 'markdown', 'metadata': {}, 'source': '<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->'},
        {'cell_type': 'markdown', 'metadata': {}, 'source': f'Uses [`Llama`]({host}model.html#llama).\n::: {{.callout-note}}\nhi\n:::'},
        code('#| echo: false\n#| output: asis\nshow_doc(unpack_rows)', [md_out]),
        code('#| include: false\nsecret()'),
        code('#| output: false\nx = 1\nx', [{'output_type': 'stream', 'name': 'stdout', 'text': '1'}]),
        code('#| code-fold: show\ny = 2'),
    ]}
    title, out = _build_docs().stage_nb(nb, 'sub/gptq.html', host)
    assert title == 'The GPTQ format'
    cells = out['cells']
    assert cells[0]['source'] == '# The GPTQ format\n\n> Bits in words.'
    assert cells[1]['source'] == 'Uses [`Llama`](../model.html#llama).\nhi\n'     # relinked, fence lines gone
    sd = cells[2]
    assert sd['metadata']['tags'] == ['remove_input'] and sd['source'] == 'show_doc(unpack_rows)' and 'has_sd' not in sd
    md = sd['outputs'][0]['data']['text/markdown']
    assert '<a class="qllama-source" href="https://github.com/qllama/qllama/blob/main/qllama/gptq.py#L9">source</a>' in md
    assert '(../model.html#kvcache)' in md and '{target=' not in md
    assert [c['source'] for c in cells[3:]] == ['x = 1\nx', 'y = 2']                 # include: false dropped
    assert cells[3]['outputs'] == [] and cells[4]['metadata']['tags'] == []

def test_reading_order(tmp_path):
    "The build and this test find the same notebooks, in the same order: index, then by number (04a before 04b)."
    names = ['10_model.ipynb', 'index.ipynb', '04b_dequant.ipynb', '04a_unpack.ipynb', '00_config.ipynb', '_draft.ipynb']
    for n in names: (tmp_path/n).write_text('{}')
    (tmp_path/'.ipynb_checkpoints').mkdir(); (tmp_path/'.ipynb_checkpoints'/'00_config-checkpoint.ipynb').write_text('{}')
    order = source_notebooks(tmp_path)
    assert [r.name for r in order] == ['index.ipynb', '00_config.ipynb', '04a_unpack.ipynb', '04b_dequant.ipynb', '10_model.ipynb']
    assert [page_of(r) for r in order] == ['index.html', 'config.html', 'unpack.html', 'dequant.html', 'model.html']
    bd = _build_docs()
    assert bd.notebooks(tmp_path) == order
    assert [bd.page_path(r) for r in order] == [page_of(r) for r in order]

# ---- the built site, served locally -------------------------------------------------------------------

@pytest.fixture(scope='module')
def site():
    "Build the site (unless QLLAMA_DOCS_PREBUILT=1) and serve docs/ on a free port of 127.0.0.1."
    if os.environ.get('QLLAMA_DOCS_PREBUILT') != '1':
        r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py')], cwd=ROOT,
                           capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, f'docs build failed:\n{r.stdout[-5000:]}\n{r.stderr[-8000:]}'
    assert (SITE/'index.html').exists(), 'docs/index.html is missing: run `make docs`'

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(SITE)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

def _need(what, reason):
    if IN_CI: pytest.fail(f'{what} is required under CI: {reason}')
    pytest.skip(reason)

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "Headless Chromium through chromedriver, with no network of its own."
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    driver_path = shutil.which('chromedriver')
    if not (chromium and driver_path):
        _need('chromium', 'chromium and chromedriver are not installed (apt-get install chromium chromium-driver)')
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError: _need('selenium', 'selenium is not installed (pip install -e ".[dev]")')
    os.environ.setdefault('SE_OFFLINE', 'true')   # Selenium Manager must not try to download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', '--window-size=1400,1000',
              f'--user-data-dir={tmp_path_factory.mktemp("chromium")}'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()

def _wait(drv, cond, timeout=20, msg=''):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(drv, timeout).until(lambda d: cond(d), message=msg)

def _h1(drv):
    from selenium.webdriver.common.by import By
    hs = drv.find_elements(By.CSS_SELECTOR, 'article h1')
    return hs[0].text.replace('¶', '').strip() if hs else None

def _headings(drv):
    "Text of every h2-h4 in the page (show_doc renders `### name`), without the permalink sign."
    return drv.execute_script(
        "return [...document.querySelectorAll('article h2, article h3, article h4')]"
        ".map(h => h.textContent.replace('¶', '').trim())")

# ---- the checks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('rel', NOTEBOOKS, ids=[r.as_posix() for r in NOTEBOOKS])
def test_page_renders(browser, site, rel):
    page = page_of(rel)
    assert (SITE/page).exists(), f'{rel}: the build wrote no {page}'
    browser.get(site + page)
    _wait(browser, lambda d: _h1(d), msg=f'{page}: no title')
    assert _h1(browser) == title_of(rel), f'{page}: heading {_h1(browser)!r}, notebook title {title_of(rel)!r}'
    text = browser.execute_script("return document.querySelector('article').innerText")   # WebElement.text is slow
    if TRACEBACK in text:   # a saved error output, or an expected failure logged with its traceback
        at = text.index(TRACEBACK)
        pytest.fail(f'{page} shows a Python traceback (saved in {rel}; an expected error belongs in test_fail, '
                    f'an expected logged one should not print its traceback):\n{text[max(0, at-300):at+900]}')
    assert len(text) > 200, f'{page} is nearly empty'

    # the API documentation nbdev generates: one show_doc heading per public function and class
    heads = _headings(browser)
    for name in expected_api().get(page, []):
        assert any(h == name or h.endswith('.' + name) for h in heads), \
            f'{page}: no API documentation (show_doc heading) for `{name}`; headings: {heads}'

    # math typesets, from MathJax served by the site itself
    if has_math(rel):
        _wait(browser, lambda d: d.execute_script(
            "return document.querySelectorAll('.MathJax_SVG, .MathJax_SVG_Display, .MathJax, mjx-container').length"),
            timeout=30, msg=f'{page}: math did not typeset')
        assert not browser.execute_script("return document.querySelectorAll('.MathJax_Error, merror').length"), \
            f'{page}: MathJax reports an error in some formula'

    # offline: everything the page loaded came from this site, and nothing failed to load
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [u for u in urls if not u.startswith(site) and not u.startswith(('data:', 'blob:'))]
    assert not outside, f'{page} loaded resources from outside the site: {outside}'
    errors = [e['message'] for e in browser.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, f'{page}: browser errors: {errors}'

def test_navigation_reaches_every_page(browser, site):
    "From the home page, a click on each sidebar link, in reading order, opens that page; each page's Next is the next one."
    from selenium.webdriver.common.by import By
    browser.get(site + 'index.html')
    _wait(browser, lambda d: _h1(d), msg='home page has no title')
    for i, (rel, page) in enumerate(zip(NOTEBOOKS, PAGES)):
        target = site + page
        links = [a for a in browser.find_elements(By.CSS_SELECTOR, 'nav.md-nav--primary a.md-nav__link')
                 if a.get_attribute('href').split('#')[0] == target]
        assert links, f'no sidebar link to {page} on {browser.current_url}'
        browser.execute_script('arguments[0].scrollIntoView({block: "center"})', links[0])
        links[0].click()
        _wait(browser, lambda d: d.current_url.split('#')[0] == target and _h1(d) == title_of(rel),
              msg=f'clicking the sidebar link to {page} did not open it (at {browser.current_url})')
        # reading order: the footer's "Next" link leads to the following notebook's page
        nxt = [a.get_attribute('href').split('#')[0] for a in browser.find_elements(By.CSS_SELECTOR, 'a.md-footer__link--next')]
        assert nxt == ([site + PAGES[i+1]] if i+1 < len(PAGES) else []), f'{page}: "Next" leads to {nxt}'
