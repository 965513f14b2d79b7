"""The docs site as a reader sees it: built by `tools/build_docs.py` (what `make docs` runs), served on 127.0.0.1
and opened in headless Chromium (Debian's `chromium`, which .ci/run installs). Screenshots go to `_screenshots/`."""
import base64, functools, http.server, os, re, shutil, struct, subprocess, sys, tempfile, threading, time
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
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    SHOTS.mkdir(exist_ok=True)
    profile = tempfile.mkdtemp(prefix='ragan_nb_chromium_')
    yield dict(url=f'http://127.0.0.1:{srv.server_address[1]}/', exe=exe, profile=profile)
    srv.shutdown(); srv.server_close()
    shutil.rmtree(profile, ignore_errors=True)

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

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
    for item in ('Losses', 'RealnessGAN', 'Training', 'Tutorials'): assert f'>{item}<' in html, f'navbar item {item} missing'
    nav = re.search(r'(?s)<nav class="navbar.*?</nav>', html).group(0)
    local = [h for h in re.findall(r'href="([^"#]+)', nav) if not h.startswith(('http:', 'https:'))]
    assert len(local) >= 4 and all(fetch(site['url'] + h)[0] == 200 for h in local), f'navbar links: {local}'
    screenshot(site, 'index.html', 'index.png')

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
