"""Build the docs site into `_docs/` without Quarto: `make docs` runs this.

1. nbdev processes `nbs/` into `_proc/`, as `nbdev-docs` does before it calls Quarto: directives, `show_doc`
   (the API reference), hidden cells, frontmatter.
2. smalldocs, a pure-Python renderer, reads the same `_quarto.yml` (navbar, sidebar, KaTeX maths) and writes
   the website into `_proc/_docs`, which is moved to `_docs/`, where `nbdev-docs` puts its own.
3. KaTeX comes from `tools/katex/` (vendored, MIT) instead of a CDN, so the site works offline.

Two adaptations, each in one function below: the processing runs only the cells the docs need (`only_doc_cells`),
and smalldocs 0.5.4 (pinned in pyproject.toml) learns Quarto's `output-file` (`quarto_output_files`), so pages get
nbdev's URLs (`05_losses.ipynb` -> `losses.html`). Where Quarto is installed, `nbdev-docs` builds the site from the
same `_quarto.yml`. `python tools/build_docs.py --force` reprocesses every notebook instead of only changed ones."""
import os, re, shutil, sys, time
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

def process_nbs(force=False):
    "nbdev's processing of every notebook into `_proc/` (only those changed since the last build, unless `force`)."
    from nbdev.serve import proc_nbs
    only_doc_cells()
    os.chdir(ROOT)   # as `nbdev-docs` does: notebooks' show_doc cells run from the project root
    return proc_nbs(str(ROOT/'nbs'), n_workers=0, force=force)   # serial: the patch above lives in this process

def offline_katex(site:Path):
    "Copy the vendored KaTeX into the site and point every page at it instead of the CDN."
    shutil.copytree(KATEX_DIR, site/'site_libs'/'katex', dirs_exist_ok=True)
    for page in site.rglob('*.html'):
        text = page.read_text()
        if not KATEX_CDN.search(text): continue
        up = '../' * (len(page.relative_to(site).parts) - 1)
        page.write_text(KATEX_CDN.sub(f'{up}site_libs/katex', text))

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

def render(cache:Path, dest:Path):
    "smalldocs renders the processed project (`_quarto.yml` + `nbdev.yml`) and the site is moved to `dest`."
    from smalldocs.cli import main as smalldocs
    quarto_output_files()
    out = cache/dest.name
    shutil.rmtree(out, ignore_errors=True)
    if rc := smalldocs(['render', str(cache), '--quiet']): sys.exit(f'smalldocs render failed ({rc})')
    shutil.rmtree(dest, ignore_errors=True)
    shutil.move(str(out), str(dest))
    offline_katex(dest)

def build(force=False):
    t = time.perf_counter()
    cache = process_nbs(force=force)
    render(Path(cache), ROOT/'_docs')
    print(f'docs: {ROOT/"_docs"/"index.html"} ({time.perf_counter()-t:.0f} s)')

if __name__ == '__main__': build(force='--force' in sys.argv)
