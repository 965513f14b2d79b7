"""Build the docs site into `_docs/` without Quarto: `make docs` runs this.

1. nbdev processes `nbs/` into `_proc/`, as `nbdev-docs` does before it calls Quarto: directives, `show_doc`
   (the API reference), hidden cells, frontmatter.
2. smalldocs, a pure-Python renderer, reads the same `_quarto.yml` (navbar, sidebar, page navigation, KaTeX maths)
   and writes the website into `_proc/_docs`, which is moved to `_docs/`, where `nbdev-docs` puts its own.
3. KaTeX comes from `tools/katex/` (vendored, MIT) instead of a CDN, so the site works offline.

The adaptations, each in one function below:
- the processing runs only the cells the docs need (`only_doc_cells`);
- saved outputs read as a notebook shows them (`notebook_streams`): text a carriage return overwrote (console
  progress bars) is gone, and Python's warnings, which name local files, are left out of stderr;
- headings ending in ` -` are hidden, the whole line, even with text below it in the cell (`hide_dash_headings`);
- a notebook named as code (`17_inception`, or with a number from before a renumbering) links to its page (`notebook_links`);
- `show_doc` signatures: no `__main__.` or package path on a type, and a callback shows its own `__init__`, not
  fastai's event hooks (`tidy_signatures`); backticked fastai names link to docs.fast.ai (`link_fastai_names`);
- smalldocs 0.5.4 (pinned in pyproject.toml) learns Quarto's `output-file` (`quarto_output_files`), so pages get
  nbdev's URLs (`05_losses.ipynb` -> `losses.html`);
- in the written pages, links to this site's published address become relative, so the offline site stays offline,
  and a signature line too long for the column wraps under its own indent (`tidy_pages`).
Where Quarto is installed, `nbdev-docs` builds the site from the same `_quarto.yml`.
`python tools/build_docs.py --force` reprocesses every notebook instead of only changed ones (a change to this file
forces it too)."""
import inspect, os, re, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KATEX_DIR = ROOT/'tools'/'katex'
KATEX_CDN = re.compile(r'https://cdn\.jsdelivr\.net/npm/katex@[0-9.]+/dist')

def only_doc_cells():
    """Make nbdev's docs processing run only what the docs need: exported cells, import-only cells and `show_doc`.

    nbdev also runs any cell that contains an import anywhere, which would run tests and `#| slow` training at docs
    time. Here a cell that `nbdev-test` skips (`tst_flags`: slow, cuda, notest) is never run, nor is one that mixes
    imports with other code (nbdev warns about those: its FAQ says to split them); each such cell is named."""
    import ast, warnings, nbdev.processors as P
    from nbdev.config import get_config
    if getattr(P._do_eval, 'doc_cells_only', False): return
    flags, orig, begin, where = set(get_config().tst_flags.split()), P._do_eval, P.exec_show_docs.begin, ['']
    warnings.filterwarnings('ignore', message='Found cells containing imports and other code')  # named below instead
    def _begin(self):
        where[0] = Path(self.nb.get('path_', '')).name
        return begin(self)
    def _do_eval(cell):
        if not orig(cell): return
        dirs = set(getattr(cell, 'directives_', {}) or {})
        if dirs & {'export','exports','exporti','exec_doc'}: return True
        line = next((l for l in cell.source.splitlines() if l.strip() and not l.startswith('#|')), '')[:60]
        if flags & dirs:
            print(f'docs: {where[0]}: not running a #| {" ".join(sorted(flags & dirs))} cell: {line!r}'); return
        trees = cell.parsed_()
        if P._ast_contains(trees, (ast.Import, ast.ImportFrom)) and not all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees):
            print(f'docs: {where[0]}: not running a cell that mixes imports and other code: {line!r}'); return
        return True
    _do_eval.doc_cells_only = True
    P._do_eval, P.exec_show_docs.begin = _do_eval, _begin

# ---------------------------------------------------------------- saved outputs, as a notebook shows them

# a record of warnings.showwarning: `file.py:12: UserWarning: message`, then the source line, indented by two spaces
_WARNING = re.compile(r'^[ \t]*\S+\.py:\d+: [A-Z]\w*Warning: .*(?:\n|$)(?:  \S.*(?:\n|$))?', re.MULTILINE)

def overwrite_cr(text:str) -> str:
    "What a terminal or Jupyter shows of `text`: on each line, what follows a carriage return writes over what came before."
    out = []
    for line in text.split('\n'):
        shown = ''
        for part in line.split('\r'): shown = part + shown[len(part):]
        out.append(shown.rstrip() if '\r' in line else shown)
    return '\n'.join(out)

def clean_stream(text:str) -> str:
    "A stream output as a reader should see it: no Python warnings, carriage returns applied, no blank lines left by progress bars."
    text = _WARNING.sub('', text)
    if '\r' not in text: return text
    lines = overwrite_cr(text).split('\n')
    return '\n'.join(l for i, l in enumerate(lines) if l.strip(' █') or i == len(lines) - 1)

def notebook_streams(cell):
    "nbdev processor: stream outputs as `clean_stream` gives them; an output left empty is dropped."
    if cell.cell_type != 'code' or not cell.get('outputs'): return
    for o in cell.outputs:
        if o.get('output_type') == 'stream':
            t = ''.join(o.text) if isinstance(o.text, list) else o.text
            if (c := clean_stream(t)) != t: o['text'] = c.rstrip() + '\n'
    cell['outputs'] = [o for o in cell.outputs if o.get('output_type') != 'stream' or ''.join(o.text).strip()]

_DASH_HEADING = re.compile(r'^#{1,6}\s+.*\s-\s*$\n?', re.MULTILINE)

def hide_dash_headings(cell):
    "nbdev processor: hide every heading line that ends in ` -` (nbdev hides such a heading only when it is alone in its cell)."
    if cell.cell_type != 'markdown' or not cell.get('source'): return
    src = _DASH_HEADING.sub('', cell.source)
    if src.strip(): cell.source = src.lstrip('\n')
    else: del cell['source']
hide_dash_headings.__name__ = 'rm_header_dash'   # takes nbdev's place (and its name, for `skip_procs`)

_NB_NUMBER = r'^\d+[a-zA-Z0-9]*_'                   # what nbdev drops from a notebook's name for its page (nbpath2html)
_NB_NAME = re.compile(r'`\d+[a-zA-Z0-9]*_([a-z]\w*)`')   # a notebook named as code: `17_inception`

def notebook_pages(src:Path) -> dict:
    "Each notebook of nbs/ by its name without the number (`inception`), as a link relative to the notebook `src`."
    return {re.sub(_NB_NUMBER, '', p.stem): os.path.relpath(p, src.parent) for p in (ROOT/'nbs').rglob('*.ipynb')
            if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT/'nbs').parts)}

def link_notebook_names(md:str, pages:dict) -> str:
    "`17_inception` (or a stale number, `11_inception`) outside code blocks -> a link to that notebook's page."
    parts = re.split(r'(^```.*?^```)', md, flags=re.S | re.M)
    return ''.join(p if p.startswith('```') else _NB_NAME.sub(lambda m: f'[{m[1]}]({pages[m[1]]})' if m[1] in pages else m[0], p)
                   for p in parts)

def notebook_links():
    "An nbdev processor class: markdown cells through `link_notebook_names`."
    from nbdev.process import Processor
    class notebook_links(Processor):
        def begin(self): self.pages = notebook_pages(Path(self.nb.get('path_') or ROOT/'nbs'/'index.ipynb'))
        def cell(self, cell):
            if cell.cell_type == 'markdown' and cell.get('source'): cell.source = link_notebook_names(cell.source, self.pages)
    return notebook_links

def add_processors():
    """Put `hide_dash_headings` in place of nbdev's `rm_header_dash`, `notebook_streams` right after `strip_ansi`, and
    `notebook_links` before nbdev's `add_links`."""
    import nbdev.processors as P
    if getattr(P.FilterDefaults.base_procs, 'ragan_nb', False): return
    base, links = P.FilterDefaults.base_procs, notebook_links()
    def base_procs(self):
        procs = [hide_dash_headings if p is P.rm_header_dash else p for p in base(self)]
        i = procs.index(P.strip_ansi) + 1
        procs = procs[:i] + [notebook_streams] + procs[i:]
        i = procs.index(P.add_links)
        return procs[:i] + [links] + procs[i:]
    base_procs.ragan_nb = True
    P.FilterDefaults.base_procs = base_procs

# ---------------------------------------------------------------- show_doc

def short_type(s:str) -> str:
    "A type as a reader writes it: `__main__.X` and `ragan_nb.losses.X` -> `X`, `torch.nn.modules.module.Module` -> `nn.Module`."
    s = re.sub(r'\b(?:__main__|ragan_nb(?:\.\w+)*)\.(?=[A-Za-z_])', '', s)
    s = re.sub(r'\btorch\._C\.(?=Generator\b)', 'torch.', s)   # torch's own name for its generator class
    s = re.sub(r'\bNoneType\b', 'None', s)   # Union[NoneType, X] as it is written: None | X
    return re.sub(r'\btorch\.nn\.modules\.(?:\w+\.)+(?=[A-Z])', 'nn.', s)

def tidy_signatures():
    """Patch fastcore's docments (which `show_doc` uses): types through `short_type`, no `NoneType` guessed from a
    default of None (`device=None`, as the code reads, not `device:NoneType=None`), and no fastai event hooks.

    fastai's `Callback` takes every event (`after_create=None, before_fit=None, ...`) as a keyword through fastcore's
    `funcs_kwargs`, so a callback without its own `__init__` would list all 24; only the callback's own arguments stay."""
    import fastcore.docments as D
    if getattr(D._type_str, 'ragan_nb', False): return
    type_str, init = D._type_str, D._DocmentBase.__init__
    def _type_str(anno): return short_type(type_str(anno))
    def __init__(self, obj):
        init(self, obj)
        for v in self.dm.values():
            if v.get('anno') is type(None) and v.get('default') is None: v['anno'] = inspect.Parameter.empty
        hooks = set(getattr(obj, '_methods', None) or ()) if isinstance(obj, type) else set()
        for k in [k for k, v in self.dm.items() if k in hooks and v.get('default') is None]: del self.dm[k]
    _type_str.ragan_nb = True
    D._type_str, D._DocmentBase.__init__ = _type_str, __init__

def link_fastai_names():
    """nbdev links a backticked name to the docs of the library it comes from, but finds a bare name (`Learner`) only in
    the libraries of `strip_libs` (default: this one). Where pyproject.toml sets none, use this library, then fastai."""
    import nbdev.processors as P
    from nbdev.config import get_config
    from nbdev.doclinks import NbdevLookup
    if getattr(P.NbdevLookup, 'ragan_nb', False): return
    libs = get_config().get('strip_libs') or f'{get_config().lib_name} fastai'
    class Lookup(NbdevLookup):
        ragan_nb = True
        def __init__(self, strip_libs=None, incl_libs=None, skip_mods=None, ns=None):
            super().__init__(strip_libs or libs, incl_libs, skip_mods, ns)
    P.NbdevLookup = Lookup

# ---------------------------------------------------------------- processing and rendering

def process_nbs(force=False):
    "nbdev's processing of every notebook into `_proc/` (only those changed since the last build, unless `force`)."
    from nbdev.serve import proc_nbs
    only_doc_cells(); add_processors(); tidy_signatures(); link_fastai_names()
    cache = ROOT/'_proc'
    if cache.exists() and cache.stat().st_mtime < Path(__file__).stat().st_mtime: force = True   # this file changed
    os.chdir(ROOT)   # as `nbdev-docs` does: notebooks' show_doc cells run from the project root
    res = proc_nbs(str(ROOT/'nbs'), n_workers=0, force=force)   # serial: the patches above live in this process
    cache.touch()
    return res

def offline_katex(site:Path):
    "Copy the vendored KaTeX into the site and point every page at it instead of the CDN."
    shutil.copytree(KATEX_DIR, site/'site_libs'/'katex', dirs_exist_ok=True)
    for page in site.rglob('*.html'):
        text = page.read_text()
        if not KATEX_CDN.search(text): continue
        up = '../' * (len(page.relative_to(site).parts) - 1)
        page.write_text(KATEX_CDN.sub(f'{up}site_libs/katex', text))

_WEB_FONTS = re.compile(r'@import\s+url\(\s*["\']?https?://fonts\.(?:googleapis|gstatic)\.com[^)]*\)\s*;?')

def offline_fonts(site:Path):
    """Drop the theme's `@import` of web fonts (Bootswatch themes load theirs from Google Fonts): the pages then use the
    next fonts of the theme's own stack, the reader's system fonts, and the site requests nothing outside itself."""
    for css in site.rglob('*.css'):
        text = css.read_text()
        if _WEB_FONTS.search(text): css.write_text(_WEB_FONTS.sub('', text))

def quarto_output_files():
    """Make smalldocs honour `output-file`, as Quarto does: nbdev sets it to drop the number, so `05_losses.ipynb`
    becomes `losses.html` on both sites, and `losses.html` in a link or the navbar finds that page."""
    from pathlib import PurePosixPath
    from smalldocs.site import Site
    if getattr(Site.read, 'output_file', False): return
    read, find_page = Site.read, Site.find_page
    def _read(self, src):
        page = read(self, src)
        if of := page.front.get('output-file'):
            page.out = page.src.parent/str(of)
            self.warnings = [w for w in self.warnings if not w.endswith('output-file is not read by smalldocs')]
        return page
    def _find_page(self, target):
        if (found := find_page(self, target)) is not None: return found
        html = target if target.suffix == '.html' else PurePosixPath(f'{target}.html')
        return next((p for p in self.pages.values() if p.out in (target, html)), None)
    _read.output_file = True
    Site.read, Site.find_page = _read, _find_page

_SHOW_DOC = '<div class="cell-output cell-output-display cell-output-markdown">'
_SIG_CODE = re.compile(r'(<pre class="sourceCode python[^"]*"><code class="sourceCode python">)(.*?)(</code></pre>)', re.S)

def _hanging_lines(code:str) -> str:
    """Each line of a signature in a `.sig-line` block that wraps under its own indent plus four (styles.css); the text,
    spaces and line ends included, stays what it was, so copying the code gives the same code."""
    lines = code.split('\n')
    if any(l.count('<span') != l.count('</span>') for l in lines): return code   # a token spans lines: leave it
    ends = ['\n'] * (len(lines) - 1) + ['']
    return ''.join(f'<span class="sig-line" style="--indent:{len(l) - len(l.lstrip(" "))}ch">{l}{e}</span>' for l, e in zip(lines, ends))

def wrap_signatures(page:str) -> str:
    "The signatures of `show_doc` outputs (a markdown output of a cell), line by line through `_hanging_lines`."
    parts = page.split(_SHOW_DOC)
    for i in range(1, len(parts)):
        out, sep, rest = parts[i].partition('<div id="cell-')
        parts[i] = _SIG_CODE.sub(lambda m: m[1] + _hanging_lines(m[2]) + m[3], out) + sep + rest
    return _SHOW_DOC.join(parts)

def tidy_pages(site:Path, site_url:str):
    "Links to the published site -> relative links where the page exists here; signatures through `wrap_signatures`."
    own = re.compile(r'href="' + re.escape(site_url.rstrip('/')) + r'/([^"#]*\.html)(#[^"]*)?"')
    for page in site.rglob('*.html'):
        text, up = page.read_text(), '../' * (len(page.relative_to(site).parts) - 1)
        new = own.sub(lambda m: f'href="{up}{m[1]}{m[2] or ""}"' if (site/m[1]).exists() else m[0], text)
        new = wrap_signatures(new)
        if new != text: page.write_text(new)

def render(cache:Path, dest:Path):
    "smalldocs renders the processed project (`_quarto.yml` + `nbdev.yml`) and the site is moved to `dest`."
    import yaml
    from smalldocs.cli import main as smalldocs
    quarto_output_files()
    out = cache/dest.name
    shutil.rmtree(out, ignore_errors=True)
    if rc := smalldocs(['render', str(cache), '--quiet']): sys.exit(f'smalldocs render failed ({rc})')
    shutil.rmtree(dest, ignore_errors=True)
    shutil.move(str(out), str(dest))
    offline_katex(dest)
    offline_fonts(dest)
    site_url = yaml.safe_load((cache/'nbdev.yml').read_text())['website']['site-url']
    tidy_pages(dest, site_url)

def build(force=False):
    t = time.perf_counter()
    cache = process_nbs(force=force)
    render(Path(cache), ROOT/'_docs')
    print(f'docs: {ROOT/"_docs"/"index.html"} ({time.perf_counter()-t:.0f} s)')

if __name__ == '__main__': build(force='--force' in sys.argv)
