"""The docs site as a reader sees it: built by `tools/build_docs.py` (what `make docs` runs), served on 127.0.0.1
and opened in headless Chromium (Debian's `chromium`, which .ci/run installs). Full-page screenshots go to
`_screenshots/`, with the pages' heights in `_screenshots/heights.json`.

Besides loading, maths and links, the pages must read cleanly: saved outputs with no progress bar, local path,
traceback or warning; no `__main__.` in a type, no heading that ends in ` -`, callbacks documented by their own
arguments only; formulas and signatures that fit the text column, styled tables, previous/next links, notebooks
linked by name, fastai's names linked to docs.fast.ai."""
import base64, functools, http.server, json, os, re, shutil, struct, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.parse, urllib.request
from pathlib import Path

import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
NBS, SITE, SHOTS = ROOT/'nbs', ROOT/'_docs', ROOT/'_screenshots'
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking']

def _notebooks():
    "Every page source in nbs/, as the sidebar names it (folders starting with _ or . are not part of the site)."
    return sorted(str(p.relative_to(NBS)) for p in NBS.rglob('*.ipynb')
                  if not any(part.startswith(('_', '.')) for part in p.relative_to(NBS).parts))

def _sidebar_entries(contents):
    for c in contents:
        if isinstance(c, str): yield c
        elif 'contents' in c: yield from _sidebar_entries(c['contents'])
        elif 'href' in c: yield c['href']

def test_sidebar_lists_every_notebook_once():
    cfg = yaml.safe_load((NBS/'_quarto.yml').read_text())
    listed = list(_sidebar_entries(cfg['website']['sidebar']['contents']))
    dups = sorted({x for x in listed if listed.count(x) > 1})
    assert not dups, f'listed twice in the sidebar: {dups}'
    missing, extra = sorted(set(_notebooks()) - set(listed)), sorted(set(listed) - set(_notebooks()))
    assert not missing, f'notebooks missing from the sidebar of nbs/_quarto.yml: {missing}'
    assert not extra, f'sidebar entries with no notebook: {extra}'
    assert listed[0] == 'index.ipynb' and any(x.startswith('tutorials/') for x in listed)

# ---------------------------------------------------------------- the built site in a browser

def _chromium():
    exe = next((shutil.which(n) for n in ('chromium', 'chromium-browser') if shutil.which(n)), None)
    if exe is None:
        msg = "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    return exe

@pytest.fixture(scope='module')
def site():
    "Build the site (the same script as `make docs`) and serve `_docs/` on 127.0.0.1 for the tests of this module."
    exe = _chromium()
    t = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py')], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, f'docs build failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}'
    print(f'site built in {time.perf_counter() - t:.0f} s')
    log = res.stdout + res.stderr
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    SHOTS.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix='ragan_nb_chromium_')
    yield dict(url=f'http://127.0.0.1:{srv.server_address[1]}/', exe=exe, profile=profile, log=log)
    srv.shutdown(); srv.server_close()
    shutil.rmtree(profile, ignore_errors=True)

# What `probe` measures, once the page's scripts (KaTeX, the formula fitting of _quarto.yml) have run: written as JSON
# into a <pre id="probe"> that --dump-dom returns.
PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
  const main = document.querySelector('main.content'), px = v => parseFloat(v) || 0;
  const over = e => e.scrollWidth > e.clientWidth + 1;
  const cell = e => getComputedStyle(e);
  const tables = [...document.querySelectorAll('.cell-output-display table')].map(t => {
    const th = t.querySelector('th'), td = t.querySelector('td');
    return {collapse: cell(t).borderCollapse, th_weight: th ? +cell(th).fontWeight : 0,
            td_pad: td ? px(cell(td).paddingLeft) : 0, td_line: td ? px(cell(td).borderBottomWidth) : 0};
  });
  const r = {height: document.documentElement.scrollHeight, page_width: document.documentElement.scrollWidth,
    window_width: window.innerWidth, column: main ? Math.round(main.getBoundingClientRect().width) : 0,
    math: [...document.querySelectorAll('.katex-display')].map(e => ({wide: e.scrollWidth, box: e.clientWidth,
      scale: e.style.fontSize, tex: (e.querySelector('annotation') || {}).textContent || ''})),
    signatures: [...document.querySelectorAll('.cell-output-markdown pre')].filter(over).map(e => e.textContent.slice(0, 80)),
    tables};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(r); document.body.appendChild(pre);
}, 200));</script>"""

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    "Serves the site; `page.html?probe` is the page with the `PROBE` script added."
    def log_message(self, *args): pass
    def do_GET(self):
        path, _, query = self.path.partition('?')
        if query != 'probe': return super().do_GET()
        body = (SITE/path.lstrip('/')).read_text().replace('</body>', PROBE + '</body>').encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/html; charset=utf-8'); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)

def _run_chromium(site, *args):
    cmd = [site['exe'], *CHROMIUM_FLAGS, f"--user-data-dir={site['profile']}", '--virtual-time-budget=10000', *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f'chromium failed: {res.stderr[-2000:]}'
    return res.stdout

def dom(site, page):
    "The page's DOM after its scripts ran (KaTeX renders the maths in JavaScript)."
    return _run_chromium(site, '--dump-dom', site['url'] + page)

def screenshot(site, page, name, height=1600):
    fn = SHOTS/name
    fn.unlink(missing_ok=True)
    _run_chromium(site, f'--screenshot={fn}', f'--window-size=1280,{height}', '--hide-scrollbars', site['url'] + page)
    assert fn.exists() and fn.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', f'no screenshot of {page}'
    return fn

def probe(site, page) -> dict:
    "The measurements of `PROBE` on `page` in a 1280-px wide window."
    html = _run_chromium(site, '--window-size=1280,1000', '--dump-dom', site['url'] + page + '?probe')
    m = re.search(r'<pre id="probe">(.*?)</pre>', html, re.S)
    assert m, f'{page}: the probe did not run'
    return json.loads(m.group(1).replace('&lt;', '<').replace('&gt;', '>').replace('&quot;', '"').replace('&amp;', '&'))

def full_page(site, page) -> int:
    "Screenshot the whole of `page` (1280 px wide) into _screenshots/, note its height in heights.json, return it."
    h = probe(site, page)['height']
    screenshot(site, page, page.replace('/', '_').replace('.html', '.png'), height=min(h, 16000))
    fn = SHOTS/'heights.json'
    heights = json.loads(fn.read_text()) if fn.exists() else {}
    fn.write_text(json.dumps({**heights, page: h}, indent=1, sort_keys=True))
    return h

def fetch(url):
    "HTTP status and body of `url` (urllib, no browser: for links and images)."
    try:
        with urllib.request.urlopen(url, timeout=30) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, b''

def png_size(data:bytes):
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    return struct.unpack('>II', data[16:24])

def visible_text(html:str) -> str:
    "The page's HTML less scripts, styles and KaTeX's copy of the TeX source (its <annotation>)."
    return re.sub(r'(?s)<(script|style|annotation)\b.*?</\1>', '', html)

def test_index_loads(site):
    status, body = fetch(site['url'] + 'index.html')
    assert status == 200
    html = dom(site, 'index.html')
    assert '<title>ragan_nb' in html and 'Relativistic GANs and RealnessGAN' in html
    assert 'id="quarto-sidebar"' in html and 'class="navbar' in html
    nav = re.search(r'(?s)<nav class="navbar.*?</nav>', html).group(0)
    items = dict((t, h) for h, t in re.findall(r'<a class="nav-link[^"]*" href="([^"]+)"[^>]*>.*?<span class="menu-text">([^<]+)<', nav))
    for item in ('Losses', 'RealnessGAN', 'fastai', 'Training', 'Metrics', 'Tutorials'):
        assert item in items, f'navbar item {item} missing: {items}'
    assert items['fastai'] == 'callbacks.html' and items['RealnessGAN'] == 'realness_losses.html', items
    local = [h for h in items.values() if not h.startswith(('http:', 'https:'))]
    bad = [h for h in local if fetch(site['url'] + h)[0] != 200]
    assert len(local) >= 6 and not bad, f'navbar links that do not resolve: {bad}'
    full_page(site, 'index.html')

def test_losses_page_renders_math(site):
    html = dom(site, 'relativistic_losses.html')
    n_display, n_inline = html.count('class="katex-display"'), html.count('class="katex"')
    assert n_display >= 3 and n_inline >= 20, f'KaTeX rendered {n_display} display and {n_inline} inline formulas'
    text = visible_text(html)
    for raw in ('$$', '\\[', '\\(', '\\begin'):
        assert raw not in text, f'raw maths {raw!r} left on the page'
    # every formula the renderer marked (<span class="math ...">) was typeset by KaTeX
    spans = [m.end() for m in re.finditer(r'<span class="math (?:inline|display)">', html)]
    assert len(spans) >= 20 and all('class="katex' in html[i:i+80] for i in spans), 'a formula was left untypeset'
    assert 'katex-error' not in html
    # KaTeX is vendored: the page loads it from the site, never from a CDN
    assert 'cdn.jsdelivr' not in html and 'site_libs/katex/katex.min.js' in html
    status, _ = fetch(site['url'] + 'site_libs/katex/fonts/KaTeX_Main-Regular.woff2')
    assert status == 200
    screenshot(site, 'relativistic_losses.html', 'relativistic_losses.png')

def _images(site, page, html):
    "(width, height) of every PNG the page shows, from inline data URIs or files of the site."
    sizes = []
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        if src.startswith('data:image/png;base64,'): data = base64.b64decode(src.split(',', 1)[1])
        elif src.startswith(('http:', 'https:')) and not src.startswith(site['url']): continue   # e.g. the Colab badge
        else:
            status, data = fetch(urllib.parse.urljoin(site['url'] + page, src))
            assert status == 200, f'{page}: image {src} gives {status}'
            if not data.startswith(b'\x89PNG'): continue
        sizes.append(png_size(data))
    return sizes

def test_tutorial_shows_sample_grids(site):
    page = 'tutorials/quickstart.html'
    html = dom(site, page)
    assert 'colab.research.google.com/github/ragan-nb/ragan_nb/blob/main/nbs/tutorials/01_quickstart.ipynb' in html
    m = re.search(r'(?s)id="samples-epoch-by-epoch".*?</h2>(.*?)(?=<h2|$)', html)
    assert m, f'{page}: no section "Samples, epoch by epoch"'
    sizes = _images(site, page, m.group(1))
    grids = [s for s in sizes if s[0] >= 300 and s[1] >= 300]    # the 10x10 sample grids, one per epoch
    assert len(grids) >= 3, f'{page}: expected a sample grid per epoch, found PNGs of sizes {sizes}'
    screenshot(site, page, 'quickstart.png', height=5600)   # the whole page, grids included

def _sidebar_links(html):
    m = re.search(r'(?s)<nav[^>]*id="quarto-sidebar".*?</nav>', html)
    assert m, 'no sidebar on the page'
    return [h for h in re.findall(r'href="([^"#]+)', m.group(0)) if not h.startswith(('http:', 'https:'))]

@pytest.mark.parametrize('page', ['index.html', 'tutorials/quickstart.html'])
def test_every_sidebar_link_resolves(site, page):
    links = _sidebar_links(dom(site, page))
    assert len(links) >= len(_notebooks()), f'{page}: {len(links)} sidebar links for {len(_notebooks())} notebooks'
    bad = [(h, s) for h in links if (s := fetch(urllib.parse.urljoin(site['url'] + page, h))[0]) != 200]
    assert not bad, f'{page}: sidebar links that do not resolve: {bad}'

def test_api_reference_for_gan_losses(site):
    html = dom(site, 'losses.html')
    m = re.search(r'(?s)<h\d[^>]*id="gan_losses"[^>]*>.*?</h\d>(.*?)(?=<h\d)', html)
    assert m, 'no API reference heading for gan_losses on losses.html'
    ref = m.group(1)
    assert 'def gan_losses(' in re.sub(r'<[^>]+>', '', ref), 'the gan_losses signature is missing'
    assert 'name' in ref and 'LOSSES' in ref

# ---------------------------------------------------------------- every page reads cleanly

def _pages():
    "Every page of the built site, as a path relative to it."
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob('*.html') if 'site_libs' not in p.parts)

def _text_of(html:str) -> str:
    "What a reader can read on the page: `visible_text` without tags, entities decoded."
    import html as H
    return H.unescape(re.sub(r'<[^>]+>', '', visible_text(html)))

# on a page: a console progress bar, a local absolute path, a traceback, a Python warning, fastai's text table with
# columns run together (a value of many decimals glued to the `00:17` of its time column)
_DIRTY = {'a progress bar': re.compile(r'\|[█-]{5,}\||\d+\.\d\d% \[\d+/\d+'),
          'a local absolute path': re.compile(r'(?<![\w.~/:-])/(?:work|tmp|root|home)/' + '|' + re.escape(str(ROOT))),
          'a traceback': re.compile(r'Traceback \(most recent call last\)'),
          'a Python warning': re.compile(r'\.py:\d+: [A-Z]\w*Warning:'),
          'table columns run together': re.compile(r'\d\.\d{7,}\d\d:\d\d\b')}

def test_build_reports_no_broken_link(site):
    broken = [l for l in site['log'].splitlines() if 'broken link' in l]
    assert not broken, 'the docs build reports broken links:\n' + '\n'.join(broken)

def test_saved_outputs_read_cleanly(site):
    "No page shows a progress bar, a local path, a traceback, a warning or a garbled table (tests/test_saved_outputs.py checks the notebooks)."
    bad = [f'{page}: {what}: {m.string[max(0, m.start() - 50):m.end() + 30]!r}' for page in _pages()
           for what, rx in _DIRTY.items() if (m := rx.search(_text_of((SITE/page).read_text())))]
    assert not bad, '\n'.join(bad)

def test_api_reference_reads_cleanly(site):
    "Types without `__main__.` or module paths, no heading ending in ' -', callbacks with their own arguments only."
    callbacks = 0
    for page in _pages():
        html = (SITE/page).read_text()
        sigs = [re.sub(r'#.*', '', _text_of(m)) for m in   # the signatures, without their docment comments
                re.findall(r'(?s)<div class="cell-output cell-output-display cell-output-markdown">.*?</pre>', html)]
        assert not any('__main__.' in t for t in sigs), f'{page}: a type shown as __main__.X'
        assert not any(re.search(r'NoneType|torch\._C\.', t) for t in sigs), f'{page}: NoneType or torch._C in a signature'
        assert not any(re.search(r'ragan_nb\.\w+\.[A-Z]|torch\.nn\.modules\.', t) for t in sigs), f'{page}: a type with its module path'
        assert 'after_create' not in html and 'before_fit:' not in html, f"{page}: fastai's event hooks in a signature"
        callbacks += sum(bool(re.search(r'def \w+Callback\(', t)) for t in sigs)
        dash = re.findall(r'<h[1-6][^>]*>(.*?) -</h[1-6]>', html)
        assert not dash, f'{page}: headings ending in " -" are shown: {dash}'
    assert callbacks >= 3, f'only {callbacks} callbacks documented: the check above saw too little'

@pytest.mark.parametrize('page', ['standard_losses.html', 'relativistic_losses.html', 'fdiv_losses.html',
                                  'realness_losses.html', 'callbacks.html'])
def test_formulas_and_signatures_fit_the_column(site, page):
    "At 1280 px, every display formula fits the text column (scaled down to no less than 60 %), as does every signature."
    r = probe(site, page)
    assert r['page_width'] <= r['window_width'], f"{page}: the page scrolls sideways ({r['page_width']} px)"
    wide = [m for m in r['math'] if m['wide'] > m['box'] + 1]
    assert not wide, f'{page}: formulas wider than the column: {wide}'
    assert all(not m['scale'] or float(m['scale'].rstrip('em')) >= 0.6 for m in r['math']), r['math']
    assert not r['signatures'], f"{page}: signatures wider than the column: {r['signatures']}"
    if page != 'callbacks.html': assert r['math'], f'{page}: no display formula measured'

@pytest.mark.parametrize('page', ['index.html', 'callbacks.html', 'realness_losses.html'])
def test_full_page_screenshots(site, page):
    "Full-page screenshots of the pages the issue names, with their heights (_screenshots/heights.json)."
    h = full_page(site, page)
    assert 1500 < h < 30000, f'{page}: {h} px'

def test_tables_are_styled(site):
    "pandas' tables (tutorials) get lines, padding and bold headers from styles.css, not the browser's bare table."
    tables = [t for page in ('tutorials/ragan_vs_sgan.html', 'tutorials/realness_toy.html') for t in probe(site, page)['tables']]
    assert tables, 'no table in the tutorials'
    for t in tables:
        assert t['collapse'] == 'collapse' and t['th_weight'] >= 600 and t['td_pad'] >= 6 and t['td_line'] >= 1, t

def _page_of(entry:str) -> str:
    "The page a sidebar entry becomes: nbdev drops the number, `tutorials/01_quickstart.ipynb` -> `tutorials/quickstart.html`."
    from nbdev.config import nbpath2html
    return nbpath2html(entry).as_posix()

def test_previous_and_next_links(site):
    "At the bottom of every page, links to the pages before and after it in the sidebar (none before the first, none after the last)."
    cfg = yaml.safe_load((NBS/'_quarto.yml').read_text())
    assert cfg['website'].get('page-navigation') is True
    order = [_page_of(e) for e in _sidebar_entries(cfg['website']['sidebar']['contents'])]
    assert sorted(order) == _pages(), 'the sidebar and the built pages differ'
    for i, page in enumerate(order):
        nav = re.search(r'(?s)<nav class="page-navigation">(.*?)</nav>', (SITE/page).read_text())
        assert nav, f'{page}: no previous/next links'
        links = dict(re.findall(r'<div class="nav-page nav-page-(previous|next)"><a href="([^"]+)"', nav.group(1)))
        want = {k: v for k, v in (('previous', order[i - 1] if i else None), ('next', order[i + 1] if i + 1 < len(order) else None)) if v}
        got = {k: urllib.parse.urljoin(page, h) for k, h in links.items()}
        assert got == want, f'{page}: previous/next links {got}, expected {want}'
        bad = [h for h in links.values() if fetch(urllib.parse.urljoin(site['url'] + page, h))[0] != 200]
        assert not bad, f'{page}: previous/next links that do not resolve: {bad}'

def test_notebooks_are_linked_by_name(site):
    "A page names a notebook with a link to it, never as code (`17_inception`); own pages are linked relatively."
    for page in _pages():
        html = (SITE/page).read_text()
        as_code = re.findall(r'<code>(\d+[a-z]?_[a-z_]+)</code>', html)
        assert not as_code, f'{page}: notebooks shown as code instead of links: {as_code}'
        assert 'href="https://ragan-nb.github.io/ragan_nb/' not in html.replace('.html.md', ''), f'{page}: a link leaves the offline site'
    index = (SITE/'index.html').read_text()
    for target in ('inception.html', 'classifier.html', 'learner.html', 'callbacks.html', 'tutorials/evaluate_fid.html'):
        assert f'href="{target}"' in index, f'index.html does not link {target}'

def test_fastai_names_link_to_its_docs(site):
    "`GANLearner`, `GANTrainer`, `Callback`, `Learner` in a page's text link to docs.fast.ai."
    seen = set()
    for page in _pages():
        html = re.sub(r'(?s)<header id="title-block-header".*?</header>|<pre.*?</pre>|<h\d.*?</h\d>', '', (SITE/page).read_text())
        for m in re.finditer(r'(<a href="([^"]*)"[^>]*>)?<code>(GANLearner|GANTrainer|Callback|Learner)</code>', html):
            seen.add(m.group(3))
            assert m.group(2) and m.group(2).startswith('https://docs.fast.ai/'), f'{page}: `{m.group(3)}` not linked to docs.fast.ai'
    assert {'GANLearner', 'GANTrainer'} <= seen, seen

# ---------------------------------------------------------------- an offline site

def _requests(site, page) -> list:
    """Every URL that `page` made Chromium load, read from its network log (`--log-net-log`): the requests whose
    initiator is an origin. The browser's own traffic (updates, spelling dictionaries) has none and is left out."""
    fn = Path(site['profile'])/'netlog.json'
    fn.unlink(missing_ok=True)
    _run_chromium(site, f'--log-net-log={fn}', '--dump-dom', site['url'] + page)
    text = fn.read_text().rstrip().rstrip(',')
    log = json.loads(text if text.endswith('}') else text + ']}')   # a log cut short at exit lacks its last brackets
    start = log['constants']['logEventTypes']['URL_REQUEST_START_JOB']
    return sorted({e['params']['url'] for e in log['events'] if e['type'] == start and 'params' in e
                   and e['params'].get('initiator', 'not an origin') != 'not an origin'})

@pytest.mark.parametrize('page', ['index.html', 'tutorials/quickstart.html', 'results.html', 'losses.html'])
def test_pages_request_nothing_outside_the_site(site, page):
    "No web font, script, style, image or icon from elsewhere: Chromium's own network log of the page, then its favicon."
    urls = _requests(site, page)
    assert any(u.endswith('.css') for u in urls), f'{page}: the network log saw none of its stylesheets: {urls[:5]}'
    outside = [u for u in urls if u.startswith(('http:', 'https:')) and not u.startswith(site['url'])]
    assert not outside, f'{page} requests {outside}'
    icons = re.findall(r'<link[^>]+rel="[^"]*icon[^"]*"[^>]*href="([^"]+)"', (SITE/page).read_text())
    assert icons, f'{page} names no favicon, so browsers ask for /favicon.ico'
    assert fetch(urllib.parse.urljoin(site['url'] + page, icons[0]))[0] == 200, f'{page}: its favicon {icons[0]} is missing'

def test_no_page_loads_resources_from_elsewhere(site):
    "Every page and stylesheet of the site: <img>, <script>, <link> and CSS url()/@import point inside the site."
    tag, url = re.compile(r'<(?:img|script|link|iframe|source)\b[^>]*>'), re.compile(r'\b(?:src|href)="(https?://[^"]+)"')
    navigation = re.compile(r'\brel="(?:canonical|alternate|next|prev)"')   # links a browser does not load
    bad = [f'{p}: {m[1]}' for p in _pages() for t in tag.findall((SITE/p).read_text())
           if not navigation.search(t) and (m := url.search(t))]
    css = re.compile(r'(?:@import\s+url\(|url\()\s*["\']?(https?://[^)"\']+)')
    bad += [f'{c.relative_to(SITE)}: {m}' for c in SITE.rglob('*.css') for m in css.findall(c.read_text())]
    assert not bad, 'resources from outside the site:\n' + '\n'.join(bad[:20])
