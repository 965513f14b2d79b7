"""One prepared GPU command: a prioritised, resumable queue of jobs run under a hard deadline.

Every call runs the units of the queue that are not done yet, in order, as many at once as `--jobs` says, and stops
cleanly before `--deadline` seconds: a unit that would not finish in time is not started, one still running at the
deadline is stopped and its last checkpoint comes back to be carried into the next call. Everything a call writes goes
into `--out` (at most 8 files of at most 16 MiB: the queue's state, a log, three CSVs and up to three files of samples
or checkpoints); `--collect OUT` copies a call's files into the committed results folder (`nbs/results/gpu/`).

Jobs, in order: (1) the speed table (`bench/speed.py`: plain loop against `ragan_learner`, DCGAN and toy, each speed
option; `ragan-train`'s time per epoch on Fashion-MNIST) and the aggregate throughput of N = 1, 2, 4, 8 training
processes on one device; (2) Fashion-MNIST, 20 epochs, the r3gan recipe and RaLSGAN, SGAN, RaSGAN, 3 seeds, 10,000
samples each as uint8 and their classifier distance; (3) Stacked MNIST at PacGAN's budget, 6 losses, 3 seeds, modes
and reverse KL; (4) the 2-D toys at PacGAN's protocol (400 epochs), 3 seeds. See bench/README.md.

`--device cpu --tiny` runs every job at a toy budget (the CPU rehearsal, tests/test_gpu_suite.py).
"""
import argparse, datetime, importlib.util, io, json, math, os, shutil, signal, subprocess, sys, tarfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT/'nbs'/'results'/'gpu'   # the committed results: queue.json, the CSVs, the scores of the samples
CARRY = ROOT/'gpu_carry'               # checkpoints of interrupted units (git-ignored, carried to the next call)
SHIMS = HERE/'shims'                   # stand-ins for modules fastai imports but ragan_nb never calls
MAX_FILES, MAX_BYTES = 8, 16 * 2**20   # what comes back from the remote's output folder
PACK_BYTES = 15 * 2**20                # each samples/carry file stays under this
CSVS = {'speed.csv': ('unit', 'row'), 'throughput.csv': ('unit',), 'runs.csv': ('unit',)}   # file: the key of a row
BLOBS = ('carry.tar.gz', 'samples_1.npz', 'samples_2.npz')   # with queue.json, suite.log and the CSVs: 8 files
MARGIN = 20.   # seconds kept at the end of a call for stopping workers and packing the outputs (6 % of a short one)

FMNIST_ENTRIES = ('r3gan', 'RaLSGAN', 'SGAN', 'RaSGAN')
STACKED_LOSSES = ('SGAN', 'RSGAN', 'RaSGAN', 'RaLSGAN', 'RpSGAN+R1+R2', 'realness')
TOY_LOSSES = ('SGAN', 'LSGAN', 'HingeGAN', 'RSGAN', 'RaSGAN', 'RaLSGAN', 'RaHingeGAN', 'RpSGAN', 'RpSGAN+R1+R2', 'realness')
TOYS = ('grid25', 'ring8')
SEEDS = (0, 1, 2)
JOB_NS = (1, 2, 4, 8)
STACKS, STACK_EPOCHS, STACK_BS = 128_000, 50, 64   # PacGAN's Stacked MNIST budget: 100,000 batches
STACKED_TEST = 26_000                               # the stacks the MNIST test split gives (`split='test'`)
JOB_TITLES = {'speed': 'speed table', 'throughput': 'aggregate throughput of N processes',
              'fmnist': 'Fashion-MNIST, 20 epochs, 10,000 samples per run', 'stacked': "Stacked MNIST at PacGAN's budget",
              'toys': "2-D toys at PacGAN's protocol"}

def now() -> str: return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
def unit_dir_name(uid:str) -> str: return uid.replace('/', '__').replace('+', '_p_')

# --- the queue ------------------------------------------------------------------------------------------------------
def stacked_epochs(tiny:bool) -> int:
    "Epochs over the 26,000 test stacks that give PacGAN's 128,000 x 50 stacks seen (100,000 batches of 64)."
    return 1 if tiny else math.ceil(STACKS * STACK_EPOCHS / STACKED_TEST)

def make_queue(tiny:bool=False) -> list:
    "The units in priority order: dicts with id, job, kind, exclusive (timed alone), batches (for the estimate)."
    q = [dict(id=f'speed/{m}', job='speed', kind='speed', model=m, exclusive=True) for m in ('dcgan', 'toy')]
    q.append(dict(id='speed/ragan-train', job='speed', kind='train_speed', exclusive=True))
    q += [dict(id=f'throughput/N{n}', job='throughput', kind='throughput', n_procs=n, exclusive=True)
          for n in ((1, 2) if tiny else JOB_NS)]
    seeds = SEEDS[:1] if tiny else SEEDS
    fm = dict(epochs=1, n_images=128, bs=32, n=200, n_real=500) if tiny else dict(epochs=20, n_images=None, bs=64, n=10_000)
    for s in seeds:
        for e in (FMNIST_ENTRIES[:2] if tiny else FMNIST_ENTRIES):
            q.append(dict(id=f'fmnist/{e}/seed{s}', job='fmnist', kind='fmnist', entry=e, seed=s, **fm,
                          batches=fm['epochs'] * (fm['n_images'] or 60_000) // fm['bs']))
    st = dict(epochs=stacked_epochs(tiny), n_images=128 if tiny else None, bs=32 if tiny else STACK_BS, n=500 if tiny else 26_000)
    for s in seeds:
        for l in (STACKED_LOSSES[2:3] + STACKED_LOSSES[4:5] if tiny else STACKED_LOSSES):
            q.append(dict(id=f'stacked/{l}/seed{s}', job='stacked', kind='stacked', entry=l, seed=s, **st,
                          batches=st['epochs'] * (st['n_images'] or STACKED_TEST) // st['bs']))
    ty = dict(epochs=1, n_images=400, bs=50, n=500) if tiny else dict(epochs=400, n_images=200_000, bs=100, n=2500)
    for toy in TOYS[:1] if tiny else TOYS:
        for s in seeds:
            for l in TOY_LOSSES[4:5] if tiny else TOY_LOSSES:
                q.append(dict(id=f'toys/{toy}/{l}/seed{s}', job='toys', kind='toys', toy=toy, entry=l, seed=s, **ty,
                              batches=ty['epochs'] * ty['n_images'] // ty['bs']))
    return q

# seconds per batch (one critic or generator step) before anything was measured, and fixed costs per unit
DEFAULT_S_PER_BATCH = {'cuda': dict(dcgan=0.011, toy=0.004), 'cpu': dict(dcgan=0.15, toy=0.003)}
FIXED_S = {'speed': 200., 'train_speed': 150., 'throughput': 60., 'fmnist': 30., 'stacked': 40., 'toys': 20.}   # compiling: ~1 min a row
TINY_FIXED_S = {'speed': 5., 'train_speed': 10., 'throughput': 12., 'fmnist': 8., 'stacked': 8., 'toys': 4.}

def estimate(u:dict, state:dict, device:str, tiny:bool, running:int=1) -> float:
    "Seconds unit `u` is expected to take with `running` units at once (the measured slowdown of that many processes)."
    cal = state.get('calibration', {})
    spb = {**DEFAULT_S_PER_BATCH['cpu' if device == 'cpu' else 'cuda'], **cal.get('s_per_batch', {})}
    fixed = (TINY_FIXED_S if tiny else FIXED_S)[u['kind']] * cal.get('fixed_factor', 1.)
    net = 'toy' if u['kind'] == 'toys' else 'dcgan'
    if u['kind'] == 'stacked': spb_u = spb[net] * 1.1   # 3 channels, and RealnessGAN's 10 outputs
    else: spb_u = spb[net] * (2.5 if u['kind'] == 'toys' else 1.)   # PacGAN's toy networks: 400 and 5x200 units
    est = fixed + u.get('batches', 0) * spb_u
    slow = cal.get('slowdown', {}).get(str(running), 1. + 0.5 * (running - 1))
    est *= slow if running > 1 else 1.
    return max(est, state['units'].get(u['id'], {}).get('min_s', 0.))

# --- state ------------------------------------------------------------------------------------------------------------
def load_state(results:Path|None, queue:list) -> dict:
    fn = results/'queue.json' if results else None
    st = json.loads(fn.read_text()) if fn and fn.is_file() else {}
    st.setdefault('suite', 1); st.setdefault('units', {}); st.setdefault('calls', []); st.setdefault('calibration', {})
    for u in queue: st['units'].setdefault(u['id'], dict(status='queued', attempts=0))
    return st

def job_summary(state:dict, queue:list, device:str, tiny:bool, command:str) -> dict:
    "Per job: units done and left, the seconds left (estimated) and the command that runs them."
    jobs = {}
    for u in queue:
        j = jobs.setdefault(u['job'], dict(title=JOB_TITLES[u['job']], units=0, done=0, est_s_left=0.,
                                          command=f"{command} --only {u['job']}"))
        j['units'] += 1
        if state['units'][u['id']]['status'] == 'done': j['done'] += 1
        else: j['est_s_left'] = round(j['est_s_left'] + estimate(u, state, device, tiny), 0)
    return jobs

# --- environment: what the suite relies on ----------------------------------------------------------------------
def shim_paths() -> list:
    "Folders of stand-ins for modules fastai imports at import time that are missing here (scipy, sklearn)."
    return [str(SHIMS/f'{m}_stub') for m in ('scipy', 'sklearn') if importlib.util.find_spec(m) is None]

SHIMS_USED = []   # the stand-ins this process appended to sys.path

def use_shims():
    for p in shim_paths():
        if p not in sys.path: sys.path.append(p); SHIMS_USED.append(Path(p).name)   # after site-packages: a real module wins

def preflight(device:str, tiny:bool, log) -> dict:
    "Check, before any work, what the suite relies on; a dict of facts for the log; SystemExit naming what is missing."
    import inspect, platform
    facts, bad = {'python': platform.python_version()}, []
    if sys.version_info < (3, 10): bad.append(f"Python >= 3.10 (this is {platform.python_version()})")
    import torch, torchvision
    facts.update(torch=torch.__version__, torchvision=torchvision.__version__, shims=list(SHIMS_USED))
    tv = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2])
    if tv < (2, 4): bad.append(f"torch >= 2.4 (this is {torch.__version__})")
    if 'materialize_grads' not in inspect.signature(torch.autograd.grad).parameters:
        bad.append("torch.autograd.grad(..., materialize_grads=) (the zero-centred penalties)")
    if not hasattr(torch, 'compile'): bad.append("torch.compile")
    import torch._dynamo as dynamo
    facts['dynamo_limit'] = next((k for k in ('recompile_limit', 'cache_size_limit') if hasattr(dynamo.config, k)), None)
    if facts['dynamo_limit'] is None: bad.append("torch._dynamo.config.recompile_limit or cache_size_limit")
    if 'fused' not in inspect.signature(torch.optim.Adam).parameters: bad.append("torch.optim.Adam(fused=)")
    if device == 'cuda':
        if not torch.cuda.is_available(): bad.append("a CUDA device (--device cuda)")
        else:
            facts.update(gpu=torch.cuda.get_device_name(), bf16=torch.cuda.is_bf16_supported(),
                         gpu_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                         triton=importlib.util.find_spec('triton') is not None)
    facts['c_compiler'] = c_compiler()   # triton builds its launchers with one: without it, no torch.compile rows
    for m in ('fastai', 'fastcore', 'fastprogress'):
        try: facts[m] = __import__(m).__version__
        except Exception as e: bad.append(f"{m} ({type(e).__name__}: {e})")
    if not bad:
        try:
            import ragan_nb.train, ragan_nb.bench, ragan_nb.evaluate   # noqa: F401  what the workers import
            import torchmetrics   # imported late by the classifier metrics: a broken one fails here, not in every unit
            facts['torchmetrics'] = torchmetrics.__version__
            facts['ragan_nb'] = __import__('ragan_nb').__version__
            facts['evaluate_samples'] = hasattr(ragan_nb.evaluate, 'evaluate_samples')
            facts['pacgan_protocol'] = 'pacgan' in getattr(ragan_nb.bench, 'PROTOCOLS', {})
            from ragan_nb.data import find_dataset
            for name in ('fashion_mnist', 'mnist'):
                try: facts[f'data_{name}'] = find_dataset(name, split='train' if name == 'fashion_mnist' else 'test',
                                                          download=False)[1]
                except Exception as e: facts[f'data_{name}'] = f'missing ({type(e).__name__})'
            from ragan_nb.classifier import classifier
            for name in ('fashion_mnist', 'mnist'): classifier(name, verbose=False)
        except Exception as e: bad.append(f"import ragan_nb.train, ragan_nb.bench, ragan_nb.evaluate ({type(e).__name__}: {e})")
    for k, v in facts.items(): log(f"preflight: {k} = {v}")
    if bad: raise SystemExit("gpu_suite: missing: " + '; '.join(bad))
    return facts

def c_compiler() -> str|None:
    return shutil.which(os.environ.get('CC', 'cc')) or shutil.which('gcc')

def worker_env(a, threads:int) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED='1')
    e['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in e.get('PYTHONPATH', '').split(os.pathsep) if p])   # shims: main()
    return e

# --- workers: one unit each, in its own process ---------------------------------------------------------------
class Forked:
    "A worker forked from this process (on the CPU: no second import of torch and fastai), with `Popen`'s methods."
    def __init__(self, fn, log:Path, threads:int):
        sys.stdout.flush(); sys.stderr.flush()
        self.pid, self.returncode = os.fork(), None
        if self.pid == 0:   # the child: its own session (stopped as a group), its output into the log
            code = 1
            try:
                os.setsid()
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644); os.dup2(fd, 1); os.dup2(fd, 2)
                import torch; torch.set_num_threads(threads)
                fn(); code = 0
            except BaseException:
                import traceback; traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush(); os._exit(code)
    def poll(self):
        if self.returncode is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid: self.returncode = os.waitstatus_to_exitcode(st)
        return self.returncode
    def wait(self, timeout=None):
        t = time.monotonic()
        while self.poll() is None:
            if timeout is not None and time.monotonic() - t > timeout: raise subprocess.TimeoutExpired('worker', timeout)
            time.sleep(0.05)
        return self.returncode

def spawn(a, args:list, fn, log:Path, threads:int):
    "Start a worker: forked on the CPU (`fn` runs in the child), else a fresh `python gpu_suite.py *args` (CUDA wants one)."
    if a.device == 'cpu' and hasattr(os, 'fork'): return Forked(fn, log, threads)
    f = open(log, 'w')
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=f, stderr=subprocess.STDOUT,
                         env=worker_env(a, threads), start_new_session=True)
    f.close()
    return p
def _uint8(x):
    import torch
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

def _train(wd:Path, cfg:dict):
    "Train (or resume, when the folder holds a checkpoint) one run in `wd/runs`; (learner, run folder)."
    from ragan_nb.train import train
    from ragan_nb.config import check_config
    from ragan_nb.runs import run_dir_of, last_checkpoint
    d = run_dir_of(wd/'runs', cfg['dataset'], check_config(**cfg)['loss'])
    learn = train(wd/'runs', resume=last_checkpoint(d) is not None, quiet=True, **cfg)
    return learn, d

def _loss_kwargs(entry:str) -> dict:
    if entry == 'r3gan': return dict(recipe='r3gan')
    from ragan_nb.bench import bench_entry
    return bench_entry(entry)

def _run_row(u, learn, d, t0) -> dict:
    from ragan_nb.runs import read_checkpoint, last_checkpoint
    hist = read_checkpoint(last_checkpoint(d))['history'] if last_checkpoint(d) else []
    ts = list(getattr(learn, 'epoch_times', []) or [])
    return dict(status='diverged' if learn.nonfinite is not None else 'ok', epochs=u['epochs'],
                iterations=sum(h['kind'] == 'generator' for h in hist), train_s=round(time.perf_counter() - t0, 1),
                s_per_epoch=round(sum(ts) / len(ts), 2) if ts else None)

def work_fmnist(u, a, wd:Path) -> dict:
    import numpy as np, torch
    from ragan_nb.runs import load_generator
    from ragan_nb.evaluate import generated_batches
    from ragan_nb.config import noise_shape
    cfg = dict(dataset='fashion_mnist', epochs=u['epochs'], seed=u['seed'], bs=u['bs'], n_images=u['n_images'],
               device=a.device, **_loss_kwargs(u['entry']), **run_options(a))
    t0 = time.perf_counter()
    learn, d = _train(wd, cfg)
    row = dict(dataset='fashion_mnist', loss=u['entry'], seed=u['seed'], **_run_row(u, learn, d, t0))
    if row['status'] != 'ok': return row
    t1 = time.perf_counter()
    G, _, _, _ = load_generator(d, ema=True)
    x = torch.cat([_uint8(b).cpu() for b in generated_batches(G, u['n'], noise_shape('fashion_mnist'), bs=500,
                                                                seed=u['seed'], device=a.device)])
    np.savez_compressed(wd/'samples.npz', samples=x.numpy())
    r = samples_metrics(x, 'fashion_mnist', ('cfd', 'classes'), a.device, u.get('n_real'))
    row.update(generator='EMA' if G.is_ema else 'raw', n_samples=u['n'], samples=sample_key(u['id']),
               eval_s=round(time.perf_counter() - t1, 1), **{k: r[k] for k in ('cfd', 'classes_covered', 'kl_uniform')})
    return row

def samples_metrics(x, dataset:str, metrics, device, n_real=None) -> dict:
    "Metrics of uint8 samples: `ragan_nb.evaluate.evaluate_samples` (what `ragan-eval --samples` runs)."
    from ragan_nb.evaluate import evaluate_samples
    return evaluate_samples(x, dataset, metrics, n_real=n_real, device=device)

def sample_key(uid:str) -> str: return unit_dir_name(uid)

def work_stacked(u, a, wd:Path) -> dict:
    import warnings
    from ragan_nb.runs import load_generator
    from ragan_nb.evaluate import evaluate
    cfg = dict(dataset='stacked_mnist', split='test', epochs=u['epochs'], seed=u['seed'], bs=u['bs'],
               n_images=u['n_images'], device=a.device, **_loss_kwargs(u['entry']), **run_options(a))
    t0 = time.perf_counter()
    learn, d = _train(wd, cfg)
    row = dict(dataset='stacked_mnist', split='test', loss=u['entry'], seed=u['seed'], **_run_row(u, learn, d, t0))
    if row['status'] != 'ok': return row
    t1 = time.perf_counter()
    G, _, _, _ = load_generator(d, ema=True)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Stacked MNIST modes from')   # the rehearsal's few samples
        r = evaluate(G, 'stacked_mnist', ('modes',), n=u['n'], seed=u['seed'], device=a.device)
    row.update(n_samples=u['n'], eval_s=round(time.perf_counter() - t1, 1), modes=r['modes'], n_modes=r['n_modes'],
               modes_kl=r['modes_kl'])
    return row

def work_toys(u, a, wd:Path) -> dict:
    import pandas as pd
    import ragan_nb.bench as rb
    kw = dict(epochs=u['epochs'], n_images=u['n_images'], bs=u['bs'], n=u['n'], metrics=('modes',), device=a.device,
              verbose=False)
    if 'pacgan' in getattr(rb, 'PROTOCOLS', {}): kw['protocol'] = 'pacgan'
    t0 = time.perf_counter()
    rb.bench(wd/'bench', u['toy'], [u['entry']], [u['seed']], **kw)
    r = pd.read_csv(wd/'bench'/'results.csv').iloc[-1].to_dict()
    keep = ('status', 'train_s', 'eval_s', 'iterations', 'modes', 'n_modes', 'high_quality', 'modes_kl', 'lr', 'bs', 'n')
    row = dict(dataset=u['toy'], loss=u['entry'], seed=u['seed'], epochs=u['epochs'], protocol=kw.get('protocol', 'default'),
               **{k: r[k] for k in keep if k in r})
    row['n_samples'] = row.pop('n', u['n'])
    row['train_s'] = round(time.perf_counter() - t0, 1) if pd.isna(row.get('train_s')) else row['train_s']
    return row

def work_speed(u, a, wd:Path) -> dict:
    "bench/speed.py's table (in this process) as CSV rows; its markdown table goes to the worker's log."
    tiny = ['--iters', '3' if u['model'] == 'toy' else '1', '--rounds', '1', '--bs', '16', '--no-compile'] if a.tiny else []
    rows = None if a.device == 'cuda' else ('fp32,r1r2_approx' if a.tiny else 'fp32,channels_last,r1r2,r1r2_approx')
    if a.device == 'cuda' and c_compiler() is None: tiny.append('--no-compile')   # logged by the preflight
    if u['model'] == 'toy' and rows: rows = rows.replace('channels_last,', '')
    sys.path.insert(0, str(HERE))
    import speed
    speed.run(speed.parse_args(['--model', u['model'], '--device', a.device, '--csv', str(wd/'speed.csv'),
                                '--threads', str(a.threads)] + tiny + (['--rows', rows] if rows else [])))
    import pandas as pd
    return dict(speed_rows=pd.read_csv(wd/'speed.csv').to_dict('records'))

def work_train_speed(u, a, wd:Path) -> dict:
    "`ragan-train`'s seconds per epoch on Fashion-MNIST (2 epochs: the second is timed), per speed option set."
    from ragan_nb.train import train
    import torch
    sets = [('fp32', {})]
    if a.device == 'cuda':
        sets.append(('channels_last', dict(channels_last=True)))
        if torch.cuda.is_bf16_supported() and c_compiler():
            sets.append(('bf16 + compile + channels_last', dict(precision='bf16', compile=True, channels_last=True)))
    n_images = 512 if a.tiny else None
    rows = []
    for name, opts in sets:
        t0 = time.perf_counter()
        learn = train(wd/name.replace(' ', ''), quiet=True, dataset='fashion_mnist', loss='RaLSGAN', epochs=2, n_images=n_images,
                      device=a.device, seed=0, **opts)
        ts, batches = learn.epoch_times, len(learn.dls.train)
        rows.append(dict(unit=u['id'], model='fashion_mnist ragan-train', row=name, row_name=f"ragan-train, {name}",
                         s_per_epoch=round(ts[-1], 2), first_epoch_s=round(ts[0], 2), batches_per_epoch=batches,
                         ms_per_batch=round(ts[-1] / batches * 1e3, 3), n_images=n_images or 60_000, bs=64,
                         wall_s=round(time.perf_counter() - t0, 1)))
    return dict(speed_rows=rows)

def work_member(a, wd:Path):
    "One of the N processes of a throughput unit: 2 epochs of a Fashion-MNIST run; the second epoch's batches per second."
    from ragan_nb.train import train
    n_images = 64 * (8 if a.tiny else 300)
    learn = train(wd, quiet=True, dataset='fashion_mnist', loss='RaLSGAN', epochs=2, n_images=n_images, device=a.device,
                  seed=a.member, **run_options(a))
    (wd/'member.json').write_text(json.dumps(dict(batches=len(learn.dls.train), seconds=learn.epoch_times[-1])))

def work_throughput(u, a, wd:Path) -> dict:
    n = u['n_procs']
    threads = max(1, a.threads if a.device == 'cpu' else (os.cpu_count() or 2) // n)
    procs = []
    for i in range(n):
        md = wd/f'member{i}'; md.mkdir(parents=True, exist_ok=True)
        args = ['--member', str(i), '--work', str(md), '--device', a.device] + (['--tiny'] if a.tiny else [])
        am = argparse.Namespace(**{**vars(a), 'member': i})
        procs.append((spawn(a, args, lambda am=am, md=md: work_member(am, md), md/'member.log', threads), md, None))
    for p, md, _ in procs: p.wait()
    res = []
    for p, md, _ in procs:
        if p.returncode: raise RuntimeError(f"throughput member {md.name} exited with {p.returncode}: "
                                            + (md/'member.log').read_text()[-1500:])
        res.append(json.loads((md/'member.json').read_text()))
    per = [r['batches'] / r['seconds'] for r in res]
    return dict(n_jobs=n, threads_per_process=threads, aggregate_batches_per_s=round(sum(per), 2),
                per_process_batches_per_s=round(sum(per) / n, 2))

WORKERS = dict(fmnist=work_fmnist, stacked=work_stacked, toys=work_toys, speed=work_speed, train_speed=work_train_speed,
               throughput=work_throughput)

def run_options(a) -> dict:
    "The speed options of the training runs (`--run-options`): they change no setting of the algorithm."
    opts = [o for o in (a.run_options or '').split(',') if o]
    bad = [o for o in opts if o not in ('bf16', 'compile', 'channels_last')]
    if bad: raise SystemExit(f"--run-options: unknown {', '.join(bad)}; choose from bf16,compile,channels_last")
    return dict(precision='bf16' if 'bf16' in opts else None, compile=True if 'compile' in opts else None,
                channels_last=True if 'channels_last' in opts else None)

def run_worker(a):
    "`--worker ID`: run one unit, write result.json into its work folder."
    u = next(u for u in make_queue(a.tiny) if u['id'] == a.worker)
    wd = Path(a.work); wd.mkdir(parents=True, exist_ok=True)
    import warnings
    warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated')
    import torch
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    res = WORKERS[u['kind']](u, a, wd)
    res['seconds'] = round(time.perf_counter() - t0, 1)
    (wd/'result.json').write_text(json.dumps(res, default=str))

# --- the scheduler ----------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, a):
        self.a, self.t0 = a, time.monotonic()
        self.out = Path(a.out); self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(a.work or (self.out.parent/(self.out.name + '.work')))
        self.queue = make_queue(a.tiny)
        if a.only:
            want = a.only.split(',')
            self.queue = [u for u in self.queue if u['job'] in want or u['id'] in want]
        self.results = Path(a.results) if a.results else None
        self.state = load_state(self.results, make_queue(a.tiny))
        self.log_f = open(self.out/'suite.log', 'a')
        self.finished, self.blobs = [], {}   # unit ids done in this call; samples and carry to pack

    def log(self, msg:str):
        line = f"[{time.monotonic() - self.t0:6.1f} s] {msg}"
        print(line, file=self.log_f, flush=True)
        if not self.a.quiet: print(line, file=sys.stderr, flush=True)

    def margin(self) -> float: return min(MARGIN, max(3., 0.06 * self.a.deadline))
    def left(self) -> float: return self.a.deadline - (time.monotonic() - self.t0) - self.margin()

    def pending(self) -> list:
        return [u for u in self.queue if self.state['units'][u['id']]['status'] != 'done'
                and self.state['units'][u['id']].get('attempts', 0) < self.a.max_attempts]

    def n_jobs(self) -> int:
        if self.a.jobs != 'auto': return int(self.a.jobs)
        if self.a.tiny: return 2   # the rehearsal runs units side by side whatever this machine measured
        return int(self.state['calibration'].get('best_jobs', 4))

    def start(self, u:dict, running:int) -> dict:
        wd = self.work/unit_dir_name(u['id'])
        if wd.exists(): shutil.rmtree(wd)
        carried = Path(self.a.carry)/unit_dir_name(u['id'])
        if carried.is_dir(): shutil.copytree(carried, wd); self.log(f"{u['id']}: resuming from the carried checkpoint")
        wd.mkdir(parents=True, exist_ok=True)
        threads = self.a.threads if self.a.device == 'cpu' else max(1, (os.cpu_count() or 2) // max(1, self.n_jobs()))
        args = ['--worker', u['id'], '--work', str(wd), '--device', self.a.device, '--threads', str(threads)] + (
               ['--tiny'] if self.a.tiny else []) + (['--run-options', self.a.run_options] if self.a.run_options else [])
        aw = argparse.Namespace(**{**vars(self.a), 'worker': u['id'], 'work': str(wd), 'threads': threads})
        p = spawn(self.a, args, lambda: run_worker(aw), wd/'worker.log', threads)
        est = estimate(u, self.state, self.a.device, self.a.tiny, running)
        self.log(f"start {u['id']} (estimated {est:.0f} s, {running} running)")
        return dict(u=u, p=p, wd=wd, t=time.monotonic(), est=est)

    def stop(self, w:dict):
        "Stop a worker at the deadline: SIGTERM to its process group, SIGKILL after 5 s."
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try: os.killpg(w['p'].pid, sig)
            except ProcessLookupError: break
            try: w['p'].wait(wait); break
            except subprocess.TimeoutExpired: continue

    def finish(self, w:dict):
        "Record a worker that exited: its row(s), its samples, the calibration."
        u, st, dt = w['u'], self.state['units'][w['u']['id']], round(time.monotonic() - w['t'], 1)
        st['attempts'] = st.get('attempts', 0) + 1
        res_fn = w['wd']/'result.json'
        if w['p'].returncode or not res_fn.is_file():
            tail = (w['wd']/'worker.log').read_text()[-1500:] if (w['wd']/'worker.log').is_file() else ''
            st.update(status='failed', seconds=dt, error=tail.strip().splitlines()[-1][:300] if tail.strip() else '')
            self.log(f"FAILED {u['id']} after {dt} s (exit {w['p'].returncode}); the end of its log:\n{tail}")
            return
        res = json.loads(res_fn.read_text())
        st.update(status='done', seconds=dt, finished=now(), call=len(self.state['calls']))
        st.pop('error', None); st.pop('min_s', None)
        self.finished.append(u['id'])
        self.rows(u, res)
        if (w['wd']/'samples.npz').is_file(): self.blobs[sample_key(u['id'])] = w['wd']/'samples.npz'
        self.calibrate(u, res, dt, w['est'])
        self.log(f"done {u['id']} in {dt} s (estimated {w['est']:.0f} s)")

    def rows(self, u:dict, res:dict):
        meta = dict(device=self.facts.get('gpu', 'cpu'), torch=self.facts['torch'], call=len(self.state['calls']), finished=now())
        if 'speed_rows' in res:
            self.new_rows['speed.csv'] += [{**meta, **r, 'unit': u['id']} for r in res['speed_rows']]
        elif u['kind'] == 'throughput': self.new_rows['throughput.csv'].append({**meta, **res, 'unit': u['id']})
        else:
            r = {k: v for k, v in res.items() if k != 'seconds'}
            self.new_rows['runs.csv'].append({'unit': u['id'], 'job': u['job'], 'options': self.a.run_options or 'fp32', **r, **meta})

    def calibrate(self, u:dict, res:dict, dt:float, est:float):
        cal = self.state['calibration']
        spb = cal.setdefault('s_per_batch', {})
        for r in res.get('speed_rows', []):
            if r.get('row') == 'fp32' and r.get('model') == 'fashion_mnist ragan-train': spb['dcgan'] = r['ms_per_batch'] / 1e3
            if u.get('model') == 'toy' and r.get('row') == 'fp32' and 'ms_median' in r: spb['toy'] = r['ms_median'] / 2e3
        if u['kind'] == 'throughput':
            thr = {r['n_jobs']: r['aggregate_batches_per_s'] for r in self.state.get('throughput', [])}
            thr[res['n_jobs']] = res['aggregate_batches_per_s']
            self.state['throughput'] = [dict(n_jobs=k, aggregate_batches_per_s=v) for k, v in sorted(thr.items())]
            if 1 in thr:
                cal['slowdown'] = {str(k): round(k * thr[1] / v, 3) for k, v in thr.items()}
                best = max(thr.values())
                cal['best_jobs'] = min(k for k, v in thr.items() if v >= 0.9 * best)   # the fewest within 10 % of the best
        if u['kind'] in ('fmnist', 'stacked', 'toys') and est > 0:   # a running correction of the fixed costs
            cal['fixed_factor'] = round(min(4., max(0.25, cal.get('fixed_factor', 1.) * (0.5 + 0.5 * dt / est))), 3)

    def run(self):
        a = self.a
        self.log(f"call {len(self.state['calls']) + 1}: {' '.join(sys.argv[1:])}")
        if a.device == 'cpu':
            import torch; torch.set_num_threads(a.threads)   # before any work: the workers are forked from here
        self.facts = preflight(a.device, a.tiny, self.log)
        self.new_rows = {k: [] for k in CSVS}
        call = dict(n=len(self.state['calls']) + 1, started=now(), device=self.facts.get('gpu', 'cpu'), facts=self.facts)
        self.state['calls'].append(call)
        running = []
        while True:
            for w in [w for w in running if w['p'].poll() is not None]: running.remove(w); self.finish(w)
            if self.left() <= 0:
                for w in running: self.interrupt(w)
                running = []
                break
            todo = [u for u in self.pending() if u['id'] not in {w['u']['id'] for w in running}]
            if not todo and not running: break
            started = False
            if not any(w['u'].get('exclusive') for w in running):
                for u in todo:
                    if u.get('exclusive') and running: break   # an exclusive unit waits for an empty device
                    if len(running) >= self.n_jobs(): break
                    est = estimate(u, self.state, a.device, a.tiny, len(running) + 1)
                    if est > self.left():
                        if not running and u is todo[0] and est > a.deadline - self.margin() and self.too_long_alone(u):
                            pass   # it cannot fit in any call: start it anyway, its checkpoint is carried
                        else:
                            self.skip_note(u, est); continue
                    running.append(self.start(u, len(running) + 1)); started = True
                    if u.get('exclusive'): break
            if not started and not running:
                break   # nothing fits in the time left
            time.sleep(0.5 if a.tiny else 2.)
        self.pack()
        call.update(ended=now(), seconds=round(time.monotonic() - self.t0, 1), finished=self.finished)
        left = self.pending()
        self.log(f"{len(self.finished)} unit(s) finished in this call; {len(left)} left" +
                 (f", next: {left[0]['id']} (~{estimate(left[0], self.state, a.device, a.tiny):.0f} s)" if left else ''))
        self.write_state()
        problems = check_outputs(self.out)
        for p in problems: self.log(f"OUTPUT PROBLEM: {p}")
        self.log_f.close()
        return 1 if problems else 0

    def carryable(self, u) -> bool: return u['kind'] in ('fmnist', 'stacked', 'toys')   # if its checkpoint fits in 15 MiB
    def too_long_alone(self, u) -> bool: return u['kind'] == 'toys'   # the only checkpoints small enough to carry

    def skip_note(self, u, est):
        key = ('skip', u['id'])
        if key in getattr(self, '_noted', set()): return
        self._noted = getattr(self, '_noted', set()) | {key}
        self.log(f"not started {u['id']}: estimated {est:.0f} s, {max(self.left(), 0):.0f} s left in this call")

    def interrupt(self, w:dict):
        "The deadline came: stop the worker; keep the unit's last checkpoint to carry to the next call."
        self.stop(w)
        u, st = w['u'], self.state['units'][w['u']['id']]
        dt = round(time.monotonic() - w['t'], 1)
        st.update(status='interrupted', min_s=round(max(st.get('min_s', 0), dt * 1.3), 0))
        if self.carryable(u) and any(w['wd'].rglob('checkpoints/epoch_*.pth')): self.blobs[('carry', u['id'])] = w['wd']
        self.log(f"stopped {u['id']} at the deadline after {dt} s")

    def pack(self):
        "Write the samples (up to two .npz files) and the carried checkpoints (one .tar.gz) into the output folder."
        import numpy as np
        for f in BLOBS: (self.out/f).unlink(missing_ok=True)
        samples = {k: v for k, v in self.blobs.items() if isinstance(k, str)}
        files, cur, size = [], {}, 0
        for k, fn in samples.items():
            b = fn.stat().st_size
            if cur and size + b > PACK_BYTES: files.append(cur); cur, size = {}, 0
            cur[k], size = fn, size + b
        if cur: files.append(cur)
        for i, group in enumerate(files):
            if i >= 2:
                for k in group: self.log(f"samples of {k} do not fit in this call's files: score them in a later call")
                continue
            arrays = {k: np.load(fn)['samples'] for k, fn in group.items()}
            np.savez_compressed(self.out/f'samples_{i + 1}.npz', **arrays)
            for k in group: self.state['units'][next(u['id'] for u in self.queue if sample_key(u['id']) == k)]['samples_file'] = f'samples_{i + 1}.npz'
        carry = {k[1]: v for k, v in self.blobs.items() if isinstance(k, tuple)}
        if carry:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode='w:gz') as tf:
                for uid, wd in carry.items():
                    for p in carry_files(wd):
                        name = f"{unit_dir_name(uid)}/{p.relative_to(wd)}"
                        if p.suffix == '.pth': add_bytes(tf, name, checkpoint_without_history(p))
                        else: tf.add(p, arcname=name)
            if buf.tell() <= PACK_BYTES: (self.out/'carry.tar.gz').write_bytes(buf.getvalue())
            else: self.log(f"the checkpoints to carry take {buf.tell() / 2**20:.1f} MiB, over {PACK_BYTES / 2**20:.0f} MiB: not kept")

    def write_state(self):
        import pandas as pd
        for fn, key in CSVS.items():
            old = pd.read_csv(self.results/fn) if self.results and (self.results/fn).is_file() else pd.DataFrame()
            new = pd.DataFrame(self.new_rows[fn])
            df = pd.concat([old, new], ignore_index=True) if len(new) else old
            if len(df): df = df.drop_duplicates([k for k in key if k in df], keep='last')
            if len(df): df.to_csv(self.out/fn, index=False)
        cmd = 'python bench/gpu_suite.py --out $OUT --deadline 330' + (' --device cpu --tiny' if self.a.tiny else '')
        self.state['jobs'] = job_summary(self.state, make_queue(self.a.tiny), self.a.device, self.a.tiny, cmd)
        self.state['tiny'] = self.a.tiny
        (self.out/'queue.json').write_text(json.dumps(self.state, indent=1, default=str))

def checkpoint_without_history(fn:Path) -> bytes:
    "A checkpoint's bytes without its per-iteration history (the bulk of a long run's file; a resumed run starts a new one)."
    import torch
    ck = torch.load(fn, map_location='cpu', weights_only=False)
    ck['history'], ck['history_dropped'] = [], True
    buf = io.BytesIO(); torch.save(ck, buf)
    return buf.getvalue()

def add_bytes(tf:tarfile.TarFile, name:str, data:bytes):
    info = tarfile.TarInfo(name); info.size, info.mtime = len(data), time.time()
    tf.addfile(info, io.BytesIO(data))

def carry_files(wd:Path) -> list:
    "What an interrupted unit needs to resume: everything but images, and only the newest checkpoint of each run."
    keep = []
    for p in sorted(wd.rglob('*')):
        if not p.is_file() or p.suffix == '.png' or p.name in ('worker.log', 'result.json'): continue
        if p.parent.name == 'checkpoints' and p != max(p.parent.glob('epoch_*.pth')): continue
        keep.append(p)
    return keep

def check_outputs(out:Path) -> list:
    "What is wrong with a call's output folder: more than 8 files, a file over 16 MiB, a folder, an unreadable state."
    out, problems = Path(out), []
    items = list(out.iterdir())
    if len(items) > MAX_FILES: problems.append(f"{len(items)} entries in {out.name}, at most {MAX_FILES} come back")
    for p in items:
        if not p.is_file(): problems.append(f"{p.name} is not a plain file")
        elif p.stat().st_size > MAX_BYTES: problems.append(f"{p.name} is {p.stat().st_size / 2**20:.1f} MiB, over 16 MiB")
    try: json.loads((out/'queue.json').read_text())
    except Exception as e: problems.append(f"queue.json: {type(e).__name__}")
    return problems

def collect(out:Path, results:Path=RESULTS, carry:Path=CARRY, samples:Path|None=None):
    "The local step after a call: its files into the results folder, samples into `results/samples/`, checkpoints into `carry`."
    import numpy as np
    out, results = Path(out), Path(results)
    samples = Path(samples) if samples else results/'samples'
    problems = check_outputs(out)
    if problems: raise SystemExit('gpu_suite --collect: ' + '; '.join(problems))
    results.mkdir(parents=True, exist_ok=True)
    for fn in ('queue.json', *CSVS):
        if (out/fn).is_file(): shutil.copy2(out/fn, results/fn)
    if (out/'suite.log').is_file():
        with open(results/'suite.log', 'a') as f: f.write((out/'suite.log').read_text())
    for fn in sorted(out.glob('samples_*.npz')):
        samples.mkdir(parents=True, exist_ok=True)
        with np.load(fn) as z:
            for k in z.files: np.savez_compressed(samples/f'{k}.npz', samples=z[k])
    st = json.loads((out/'queue.json').read_text())
    for uid, u in st['units'].items():   # a carried checkpoint is dropped once its unit is done
        if u['status'] == 'done' and (Path(carry)/unit_dir_name(uid)).exists(): shutil.rmtree(Path(carry)/unit_dir_name(uid))
    if (out/'carry.tar.gz').is_file():
        Path(carry).mkdir(parents=True, exist_ok=True)
        with tarfile.open(out/'carry.tar.gz') as tf:
            for name in {m.name.split('/')[0] for m in tf.getmembers()}:
                if (Path(carry)/name).exists(): shutil.rmtree(Path(carry)/name)
            tf.extractall(carry, filter='data') if sys.version_info >= (3, 12) else tf.extractall(carry)
    print(f"collected {out} into {results}" + (f"; samples in {samples}" if samples.is_dir() else ''))

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=os.environ.get('OUT', 'gpu_out'), help="folder of this call's files (default: $OUT)")
    p.add_argument('--results', default=None, help='the results of earlier calls (default: nbs/results/gpu; none with --tiny)')
    p.add_argument('--carry', default=None, help='checkpoints of interrupted units carried from earlier calls (default: gpu_carry)')
    p.add_argument('--work', default=None, help="scratch folder of the workers (default: next to --out; not returned)")
    p.add_argument('--deadline', type=float, default=330., help='seconds this call may take in all (default 330)')
    p.add_argument('--jobs', default='auto', help='units at once (auto: the throughput measurement, else 4; 2 with --tiny)')
    p.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    p.add_argument('--threads', type=int, default=1, help='torch threads per worker on the CPU')
    p.add_argument('--tiny', action='store_true', help='every job at a toy budget (the CPU rehearsal)')
    p.add_argument('--only', default=None, help='comma-separated jobs (speed, throughput, fmnist, stacked, toys) or unit ids')
    p.add_argument('--run-options', default=None, help='speed options of the training runs: bf16,compile,channels_last')
    p.add_argument('--max-attempts', type=int, default=3, help='a unit that failed this many times is left out')
    p.add_argument('--list', action='store_true', help='print the queue with its state and estimates, and exit')
    p.add_argument('--init', action='store_true', help="write a queue.json of the whole queue into --results if it has none")
    p.add_argument('--collect', metavar='OUT', default=None, help="copy a call's files into --results (the local step)")
    p.add_argument('--quiet', action='store_true')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    p.add_argument('--member', type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.results is None and not a.tiny: a.results = str(RESULTS)
    if a.carry is None: a.carry = str(CARRY) if not a.tiny else str(Path(a.out).parent/(Path(a.out).name + '.carry'))
    return a

def main(argv=None):
    a = parse_args(argv)
    use_shims()
    if a.worker: return run_worker(a)
    if a.member is not None:
        import warnings; warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated')
        return work_member(a, Path(a.work))
    if a.collect: return collect(a.collect, Path(a.results or RESULTS), Path(a.carry))
    if a.init:
        q, res = make_queue(a.tiny), Path(a.results or RESULTS)
        if (res/'queue.json').is_file(): return print(f"{res/'queue.json'} exists: nothing to do")
        st = load_state(None, q)
        st['jobs'] = job_summary(st, q, a.device, a.tiny, 'python bench/gpu_suite.py --out $OUT --deadline 330')
        res.mkdir(parents=True, exist_ok=True); (res/'queue.json').write_text(json.dumps(st, indent=1))
        return print(f"wrote {res/'queue.json'}: {len(q)} units queued")
    if a.list:
        q = make_queue(a.tiny); st = load_state(Path(a.results) if a.results else None, q)
        for u in q: print(f"{u['id']:40s} {st['units'][u['id']]['status']:12s} ~{estimate(u, st, a.device, a.tiny):.0f} s")
        return 0
    return Suite(a).run()

if __name__ == '__main__': sys.exit(main())
