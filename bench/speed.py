"""Milliseconds per GAN iteration (one critic step, then one generator step): ragan_nb's learner against a plain PyTorch loop.

RaSGAN, Adam(lr 2e-4, betas (0.5, 0.999)), one critic step then one generator step on a fresh batch, as in the papers.
`--model toy`: the MLPs of `ragan_nb.toys` on ring8 (the CPU proxy of the fixed per-batch cost);
`--model dcgan`: `ragan_nb.models.gan_models('dcgan')` at 32 px, 1 channel, z of 128.
Rows: the plain loop (fp32, eager), ragan_nb fp32 eager, then ragan_nb with bf16 autocast, torch.compile,
channels_last and all of them together, where the device and model take them. Each row is timed in chunks of
`--iters` iterations; one round runs one chunk of every row, in an order rotated from round to round; the table gives
the median over `--rounds` rounds of the time per iteration and of the ratio to the plain loop's chunk of the same round,
and the fastest chunk of each row (the least disturbed by other programs on a shared machine).
See bench/README.md for what is timed. Example: `python bench/speed.py --model toy --bs 64 --threads 1 --no-compile`.
"""
import argparse, copy, datetime, os, platform, shutil, statistics, sys, time, warnings

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', choices=('toy', 'dcgan'), default='toy', help='toy: ring8 MLPs (CPU proxy); dcgan: 32-px DCGAN')
    p.add_argument('--bs', type=int, default=64, help='batch size')
    p.add_argument('--iters', type=int, default=None, help='iterations per timed chunk (default: 200 toy, 30 dcgan on CPU, 100 dcgan on CUDA)')
    p.add_argument('--rounds', type=int, default=5, help='timed rounds; each runs one chunk of every row')
    p.add_argument('--threads', type=int, default=1, help='torch (and OpenMP/MKL) threads')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows (on the CPU compiling takes minutes)')
    p.add_argument('--compile-mode', default=None, help="torch.compile's mode, e.g. max-autotune-no-cudagraphs (default: torch's)")
    p.add_argument('--rows', default=None, help='comma-separated subset of: fp32,bf16,compile,channels_last,all,r1r2,r1r2_approx,approx_all '
                   '(default: every row the device and model take)')
    p.add_argument('--sigma', type=float, default=0.01, help='σ of the approximate R1/R2 rows (default 0.01)')
    p.add_argument('--csv', default=None, help='also write the table as CSV rows to this file')
    p.add_argument('--clock', choices=('auto', 'wall', 'cpu'), default='auto',
                   help="auto: the process's CPU time on the CPU (robust to other programs sharing the cores), wall time (with synchronize) on CUDA")
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    for name in ('bs', 'rounds', 'threads'):
        if getattr(a, name) < 1: p.error(f'--{name} must be a positive integer, got {getattr(a, name)}')
    if a.iters is not None and a.iters < 1: p.error(f'--iters must be a positive integer, got {a.iters}')
    return a

if __name__ == '__main__':   # thread pools are sized when torch is imported: set the environment first
    ARGS = parse_args()
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[var] = str(ARGS.threads)

warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated')   # raised while importing fastai
import torch
import torch.nn.functional as F
import fastai
from fastai.callback.core import Callback
from ragan_nb.gandata import gan_dls
from ragan_nb.learner import ragan_learner
from ragan_nb.models import gan_models
from ragan_nb.toys import toy_data, mlp_generator, mlp_critic

TARGETS = [  # (what, ratio at most, applies to (model, device, bs, threads) -> bool, row it is read on)
    ('CPU toy proxy, batch 64, 1 thread', 1.15, lambda a: a.model == 'toy' and a.device == 'cpu' and a.bs == 64 and a.threads == 1, 'fp32'),
    ('DCGAN on CPU', 1.02, lambda a: a.model == 'dcgan' and a.device == 'cpu', 'fp32'),
    ('GPU eager fp32', 1.05, lambda a: a.device == 'cuda', 'fp32'),
    ('GPU bf16 + compile + channels_last', 0.60, lambda a: a.device == 'cuda' and ROW_NAMES['all'].endswith('bf16 + compile + channels_last'), 'all'),
]
ROW_NAMES = {'plain': 'plain PyTorch loop, fp32 eager', 'fp32': 'ragan_nb, fp32 eager', 'bf16': 'ragan_nb, bf16 autocast',
             'compile': 'ragan_nb, torch.compile', 'channels_last': 'ragan_nb, channels_last', 'all': 'ragan_nb, all of them',
             'r1r2': 'ragan_nb, + exact R1 + R2 (γ 0.1), fp32 eager',
             'r1r2_approx': 'ragan_nb, + approximate R1 + R2 (γ 0.1), fp32 eager',
             'approx_all': 'ragan_nb, + approximate R1 + R2, all of them (whole critic compiled)'}
PENALTY_ROWS = ('r1r2', 'r1r2_approx', 'approx_all')   # RaSGAN + R1 + R2: the cost of the penalties (the plain loop has none)

CLOCK = {'wall': time.perf_counter, 'cpu': time.process_time}
clock = time.perf_counter   # set by `run` from --clock

def sync(device):
    if device == 'cuda': torch.cuda.synchronize()

# --- models and data ---------------------------------------------------------------------------------------------
def make_models(model):
    "Generator, critic and the shape of one z."
    if model == 'toy': return mlp_generator(noise_size=2), mlp_critic(), (2,)
    G, C = gan_models('dcgan', 32, 1, 128)
    return G, C, (128, 1, 1)

def make_data(model, n, seed, device):
    "n real samples in [-1, 1], float32, resident on `device` (both sides draw their batches from this tensor)."
    if model == 'toy': return toy_data('ring8', n, seed=seed).to(device)
    g = torch.Generator().manual_seed(seed)   # uniform noise images: the content does not change the time
    return (torch.rand(n, 1, 32, 32, generator=g) * 2 - 1).to(device)

def adam_kwargs(device):
    "The same torch Adam kernels on both sides (ragan_learner's choice): fused on CUDA, foreach on the CPU."
    return dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8, **({'fused': True} if device == 'cuda' else {'foreach': True}))

# --- the plain loop ----------------------------------------------------------------------------------------------
def _bce(x, t): return F.binary_cross_entropy_with_logits(x, torch.full_like(x, t))
def rasgan_critic(r, f): return (_bce(r - f.mean(), 1.) + _bce(f - r.mean(), 0.)) / 2
def rasgan_generator(r, f): return (_bce(r - f.mean(), 0.) + _bce(f - r.mean(), 1.)) / 2

class PlainLoop:
    "A hand-written RaSGAN loop: a critic step, then a generator step on a fresh real batch; noise from a device generator."
    def __init__(self, G, C, data, bs, zshape, device, seed):
        self.G, self.C, self.data, self.bs, self.zshape, self.device = G.to(device), C.to(device), data, bs, zshape, device
        self.opt_g, self.opt_c = torch.optim.Adam(G.parameters(), **adam_kwargs(device)), torch.optim.Adam(C.parameters(), **adam_kwargs(device))
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def chunk(self, iters):
        "Train `iters` iterations on 2*iters fresh batches (a new order of the data every chunk)."
        G, C, bs = self.G, self.C, self.bs
        perm = torch.randperm(len(self.data), device=self.device, generator=self.gen)
        for it in range(iters):
            i = 2 * it
            z, x = torch.randn((bs,) + self.zshape, device=self.device, generator=self.gen), self.data[perm[i*bs:(i+1)*bs]]
            self.opt_c.zero_grad()
            r = C(x).view(-1)
            with torch.no_grad(): fake = G(z)
            rasgan_critic(r, C(fake).view(-1)).backward()
            self.opt_c.step()
            z, x = torch.randn((bs,) + self.zshape, device=self.device, generator=self.gen), self.data[perm[(i+1)*bs:(i+2)*bs]]
            for p in C.parameters(): p.requires_grad_(False)
            self.opt_g.zero_grad()
            f = C(G(z)).view(-1)
            rasgan_generator(C(x).view(-1), f).backward()
            self.opt_g.step()
            for p in C.parameters(): p.requires_grad_(True)

    def time_chunk(self, iters):
        "(seconds on the clock for `iters` iterations, None: no fit overhead, wall seconds)."
        sync(self.device); t, w = clock(), time.perf_counter()
        self.chunk(iters)
        sync(self.device)
        return clock() - t, None, time.perf_counter() - w

# --- ragan_nb ------------------------------------------------------------------------------------------------------
class LoopStart(Callback):
    "Time stamp just before the first batch of the training epoch (the last `before_train` handler)."
    order = 10_000
    def before_train(self): sync(self.learn.bench_device); self.learn.bench_t0 = clock()

class LoopEnd(Callback):
    "Time stamp just after the last batch (the first `after_train` handler)."
    order = -10_000
    def after_train(self): sync(self.learn.bench_device); self.learn.bench_t1 = clock()

class RaganRow:
    "One `ragan_learner`, built once; a chunk is one `fit(1)` over a DataLoader of exactly 2*iters batches."
    def __init__(self, G, C, data, bs, zshape, device, seed, iters, **learner_kwargs):
        dls = gan_dls(data[:2*iters*bs], bs=bs, noise_size=zshape, seed=seed, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            self.learn = ragan_learner(dls, G.to(device), C.to(device), loss='RaSGAN', cbs=[LoopStart(), LoopEnd()], **learner_kwargs)
        self.learn.bench_device, self.device = device, device
        assert len(dls.train) == 2 * iters, (len(dls.train), iters)

    def time_chunk(self, iters):
        "(seconds on the clock for the whole fit(1), seconds of it outside the batch loop, wall seconds)."
        with self.learn.no_bar(), self.learn.no_logging():
            sync(self.device); t, w = clock(), time.perf_counter()
            self.learn.fit(1)
            sync(self.device); total, wall = clock() - t, time.perf_counter() - w
        return total, total - (self.learn.bench_t1 - self.learn.bench_t0), wall

def row_kwargs(row, options, compile_arg, sigma=0.01):
    "`ragan_learner`'s arguments of a row; 'all' joins every option this device and model take."
    if row in PENALTY_ROWS:
        pen = dict(r1=0.1, r2=0.1, penalty_seed=0, **(dict(r1_approx=sigma, r2_approx=sigma) if row != 'r1r2' else {}))
        return {**(row_kwargs('all', options, compile_arg) if row == 'approx_all' else {}), **pen}
    if row == 'all': return dict(precision='bf16' if 'bf16' in options else 'fp32', channels_last='channels_last' in options,
                                 compile=compile_arg if 'compile' in options else False)
    return dict(fp32={}, bf16=dict(precision='bf16'), compile=dict(compile=compile_arg), channels_last=dict(channels_last=True))[row]

def rows_for(a):
    "The rows this device and model take (and why others are left out)."
    rows, skipped = ['fp32'], []
    if a.device == 'cuda' and not torch.cuda.is_bf16_supported(): skipped.append('bf16 (not supported by this GPU)')
    else: rows.append('bf16')
    can_compile = a.device == 'cuda' or shutil.which(os.environ.get('CXX', 'g++')) is not None
    if a.no_compile: skipped.append('compile (--no-compile)')
    elif not can_compile: skipped.append('compile (no C++ compiler for inductor on the CPU)')
    else: rows.append('compile')
    if a.model == 'dcgan': rows.append('channels_last')
    else: skipped.append('channels_last (MLPs have no 4-d weights)')
    if len(rows) > 2: rows.append('all')   # 'all' must differ from a single option
    options = [r for r in rows if r not in ('fp32', 'all')]
    ROW_NAMES['all'] = 'ragan_nb, ' + ' + '.join(options)
    rows += ['r1r2', 'r1r2_approx'] + (['approx_all'] if 'all' in rows else [])
    if 'all' in rows: ROW_NAMES['approx_all'] = f"ragan_nb, + approximate R1 + R2, {' + '.join(options)} (whole critic compiled)"
    if a.rows:
        want = a.rows.split(',')
        bad = [r for r in want if r not in ROW_NAMES or r == 'plain']
        if bad: raise SystemExit(f"--rows: unknown {', '.join(bad)}; choose from fp32,bf16,compile,channels_last,all,{','.join(PENALTY_ROWS)}")
        rows = [r for r in rows if r in want]
    return rows, options, skipped

# --- the bench -----------------------------------------------------------------------------------------------------
def device_name(device):
    if device == 'cuda': return torch.cuda.get_device_name()
    try:
        with open('/proc/cpuinfo') as f: model = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration): model = platform.processor() or platform.machine()
    return f'CPU ({model}, {os.cpu_count()} cores)'

def log(*args): print(*args, file=sys.stderr, flush=True)

def run(a):
    if a.device == 'auto': a.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if a.device == 'cuda' and not torch.cuda.is_available(): raise SystemExit('--device cuda: no CUDA device here')
    global clock
    if a.clock == 'auto': a.clock = 'wall' if a.device == 'cuda' else 'cpu'
    if a.clock == 'cpu' and a.device == 'cuda': raise SystemExit('--clock cpu times the host only; use --clock wall on CUDA')
    clock = CLOCK[a.clock]
    if a.iters is None: a.iters = 200 if a.model == 'toy' else (100 if a.device == 'cuda' else 30)
    torch.set_num_threads(a.threads)
    rows, options, skipped = rows_for(a)
    compile_arg = dict(mode=a.compile_mode) if a.compile_mode else True
    if 'compile' in options:   # each learner compiles 5 variants of `_call_impl` (G, C, frozen or not): two learners pass dynamo's default limit of 8
        import torch._dynamo as dynamo
        limit = 'recompile_limit' if hasattr(dynamo.config, 'recompile_limit') else 'cache_size_limit'   # the older name
        setattr(dynamo.config, limit, max(getattr(dynamo.config, limit), 64))
    torch.manual_seed(a.seed)
    G0, C0, zshape = make_models(a.model)
    data = make_data(a.model, 2 * a.iters * a.bs, a.seed, a.device)
    load0 = os.getloadavg()[0]
    sides = {'plain': PlainLoop(copy.deepcopy(G0), copy.deepcopy(C0), data, a.bs, zshape, a.device, a.seed)}
    for r in rows:   # every side starts from the same weights
        sides[r] = RaganRow(copy.deepcopy(G0), copy.deepcopy(C0), data, a.bs, zshape, a.device, a.seed, a.iters,
                            **row_kwargs(r, options, compile_arg, a.sigma))
    warm = {}
    for name, side in sides.items():   # warm-up: allocator, kernels, and the compilation of the compiled rows
        warm[name] = (side.time_chunk(a.iters)[2], side.time_chunk(a.iters)[2])
        log(f'warm-up {name}: first chunk {warm[name][0]:.2f} s, second {warm[name][1]:.2f} s (wall)')
    names = list(sides)
    times, overhead, walls = ({n: [] for n in names} for _ in range(3))
    for rd in range(a.rounds):
        order = names[rd % len(names):] + names[:rd % len(names)]
        for n in order:
            t, o, w = sides[n].time_chunk(a.iters)
            times[n].append(t / a.iters); overhead[n].append(o); walls[n].append(w)
        log(f'round {rd}: ' + '  '.join(f'{n} {times[n][-1]*1e3:.2f}' for n in names) + ' ms/it')
    load1 = os.getloadavg()[0]
    ratios = {n: [t / p for t, p in zip(times[n], times['plain'])] for n in names}
    print(report(a, names, times, overhead, ratios, warm, walls, skipped, load0, load1))
    if a.csv: write_csv(a, names, times, overhead, ratios, warm, walls)

def write_csv(a, names, times, overhead, ratios, warm, walls):
    "The table's numbers, one row per run (bench/gpu_suite.py collects them)."
    import csv
    med = statistics.median
    with open(a.csv, 'w', newline='') as f:
        w = csv.DictWriter(f, ['model', 'row', 'row_name', 'ms_median', 'ratio_median', 'ratio_min', 'ratio_max', 'ms_best',
                               'ratio_best', 'overhead_ms', 'first_chunk_s', 'chunk_s', 'bs', 'iters', 'rounds', 'clock',
                               'device_name', 'torch', 'threads'])
        w.writeheader()
        for n in names:
            w.writerow(dict(model=a.model, row=n, row_name=ROW_NAMES[n], ms_median=round(med(times[n]) * 1e3, 3),
                            ratio_median=round(med(ratios[n]), 3), ratio_min=round(min(ratios[n]), 3), ratio_max=round(max(ratios[n]), 3),
                            ms_best=round(min(times[n]) * 1e3, 3), ratio_best=round(min(times[n]) / min(times['plain']), 3),
                            overhead_ms=None if n == 'plain' else round(med(overhead[n]) * 1e3, 2),
                            first_chunk_s=round(warm[n][0], 2), chunk_s=round(med(walls[n]), 3), bs=a.bs, iters=a.iters,
                            rounds=a.rounds, clock=a.clock, device_name=device_name(a.device), torch=torch.__version__,
                            threads=torch.get_num_threads()))

def report(a, names, times, overhead, ratios, warm, walls, skipped, load0, load1):
    med = statistics.median
    what = ('toy MLPs (`ragan_nb.toys`, z of 2) on ring8' if a.model == 'toy' else 'DCGAN (`gan_models`), 32 px, 1 channel, z of 128')
    out = [f"**{what}**, RaSGAN, batch {a.bs}, {a.iters} iterations per chunk, {a.rounds} rounds", '',
           f"device: {device_name(a.device)} · torch {torch.__version__} · fastai {fastai.__version__} · threads {torch.get_num_threads()} · "
           f"{a.clock} clock · {datetime.date.today()} · load average {load0:.1f} at the start, {load1:.1f} at the end", '',
           '| run | ms / iteration (median) | ratio to plain (median of rounds) | ratio range | ms / iteration (best chunk) '
           '| ratio of best chunks | fit overhead, ms per fit |', '|---|---|---|---|---|---|---|']
    for n in names:
        o = '–' if n == 'plain' else f'{med(overhead[n])*1e3:.1f}'
        rng = '–' if n == 'plain' else f'{min(ratios[n]):.2f}–{max(ratios[n]):.2f}'
        out.append(f'| {ROW_NAMES[n]} | {med(times[n])*1e3:.2f} | {med(ratios[n]):.2f} | {rng} | {min(times[n])*1e3:.2f} '
                   f'| {min(times[n]) / min(times["plain"]):.2f} | {o} |')
    out.append('')
    if skipped: out.append('Not run: ' + '; '.join(skipped) + '.')
    for n in names:
        if n == 'compile' or (n == 'all' and 'compile' in ROW_NAMES['all']):
            out.append(f"{ROW_NAMES[n]}: the first (warm-up) chunk took {warm[n][0]:.1f} s of wall time, about "
                       f"{warm[n][0] - med(walls[n]):.1f} s of it compiling; a timed chunk {med(walls[n]):.1f} s.")
    out += ['', 'Targets (issue 16, ratio to the plain fp32 eager loop):', '']
    for what, limit, applies, row in TARGETS:
        got = ''
        if applies(a) and row in ratios:
            r, best = med(ratios[row]), min(times[row]) / min(times['plain'])
            got = (f' · this run ({ROW_NAMES[row]}): {r:.2f} (best chunks {best:.2f}), '
                   + ('met' if r <= limit else f'missed by {r - limit:.2f}'))
        out.append(f'- {what}: ≤ {limit:.2f}{got}')
    return '\n'.join(out)

if __name__ == '__main__': run(ARGS)
