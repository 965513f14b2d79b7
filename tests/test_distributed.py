"""Data-parallel training equals one process on the global batch.

1. The library (`DistributedCallback`): gloo on the CPU, 2 processes x batch b against 1 process x batch 2b, same data,
   noise and initial weights, parameters compared to 1e-5 after several iterations (float64). A negative control (each
   process computes the loss on its own shard) must differ.
2. The command: `ragan-train --nproc 2` (torch's launcher) on the 8-Gaussian ring writes each file once, ends where one
   process with the same global `--bs` ends, and its checkpoint resumes with one process; bad input is one line, exit 2.
"""
import csv, json, os, shutil, socket, subprocess, sys, tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

B, N_BATCHES, NZ = 6, 8, 3
# name, ragan_learner kwargs (+ 'bn': batch norm in G, trained with sync_bn), n_crit
CASES = [
    ('RaLSGAN', {}, 1),
    ('RaSGAN-GP', {'gp_seed': 3}, 1),
    ('RcLSGAN-unbiased', {}, 2),
    ('RpSGAN-MVUE', {}, 1),
    ('realness', {'loss_kwargs': {'seed': 5}}, 1),
    ('RpSGAN', {'r1': 0.5, 'r2': 0.5, 'reg_every': 2}, 1),
    ('RaLSGAN', {'ema': 40.}, 1),     # the EMA's half-life counts the images of every process
    ('RaLSGAN', {'bn': True}, 1),     # batch norm over the global batch (GlobalBatchNorm) against torch's BatchNorm1d
]
IDS = [c[0] + ''.join(f'+{k}' for k in c[1] if k in ('r1', 'ema', 'bn')) for c in CASES]


def _nets(realness, bn=False):
    "Tiny float64 networks, no bias on the critic's last layer (it cancels in relativistic losses: its gradient is rounding noise)."
    from torch import nn
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(NZ, 16, bias=not bn), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(), nn.Linear(16, 2)).double()
    C = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 5 if realness else 1, bias=realness)).double()
    return G, C


def _batches(world, rank):
    "The global batches (noise, real), cut into this process's rows, as `ShardedGANDataLoader` cuts them."
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(N_BATCHES):
        z, x = torch.randn(2*B, NZ, generator=g, dtype=torch.float64), torch.randn(2*B, 2, generator=g, dtype=torch.float64)
        s = slice(rank*(2*B//world), (rank + 1)*(2*B//world))
        out.append((z[s], x[s]))
    return out


def _train(world, rank, name, kwargs, n_crit):
    from fastai.data.load import DataLoader
    from fastai.data.core import DataLoaders
    from ragan_nb.learner import ragan_learner
    from ragan_nb.distributed import DistributedCallback

    class Fixed(DataLoader):
        "The given batches, in order, every epoch."
        def __init__(self, batches): self.batches = batches; super().__init__(range(len(batches)), bs=1, num_workers=0)
        def create_batches(self, samps): yield from self.batches
        def __len__(self): return len(self.batches)

    kw = dict(kwargs); bn = kw.pop('bn', False)
    G, C = _nets(name == 'realness', bn)
    dls = DataLoaders(Fixed(_batches(world, rank)), Fixed([]), device='cpu')
    cbs = [DistributedCallback(sync_bn=bn)] if world > 1 else []
    learn = ragan_learner(dls, G, C, name, n_crit=n_crit, cbs=cbs, **kw)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    out = list(G.parameters()) + list(C.parameters()) + list(G.buffers())   # buffers: batch norm's running statistics
    if 'ema' in kw: out += list(learn.ema_generator.parameters())
    return [t.detach().clone() for t in out]


def _worker(rank, world, port, out):
    "Every case, then the negative control, in one pair of processes (starting one costs seconds: fastai's import)."
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        res = {name + str(kwargs): _train(world, rank, name, kwargs, n_crit) for name, kwargs, n_crit in CASES}
        import ragan_nb.distributed as D
        D.gather_batch = lambda t: t            # negative control: per-process losses, gradients still averaged
        res['local RaLSGAN'] = _train(world, rank, 'RaLSGAN', {}, 1)
        if rank == 0: torch.save(res, out)
    finally: dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def two():
    "Parameters after training with 2 gloo processes, by case."
    out = Path(tempfile.mkdtemp())/'params.pt'
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


def _max_diff(a, b): return max((x - y).abs().max().item() for x, y in zip(a, b))


@pytest.mark.parametrize('name,kwargs,n_crit', CASES, ids=IDS)
def test_two_processes_equal_one_on_the_global_batch(two, name, kwargs, n_crit):
    one = _train(1, 0, name, kwargs, n_crit)
    d = _max_diff(one, two[name + str(kwargs)])
    assert d < 1e-5, f'{name} {kwargs}: 2 processes differ from 1 by {d:.2e}'


def test_per_process_statistics_differ(two):
    "The negative control: RaLSGAN with each process's own batch means is a different algorithm."
    assert _max_diff(_train(1, 0, 'RaLSGAN', {}, 1), two['local RaLSGAN']) > 1e-4


# ---- the command ----------------------------------------------------------------------------------------------------
BIN = Path(sys.executable).parent
RUN = 'ring8_LSGAN'
# 8 global batches of 64 per epoch; batch norm over the global batch, so that 2 processes are the 1-process algorithm.
# LSGAN rather than a relativistic loss: these are flat along the critic's biases (a constant shift of C cancels in
# C(x_r) - C(x_f)), so in float32 those get gradients of pure rounding noise, which Adam turns into steps of ~lr/10
# that differ between any two summation orders. The relativistic losses are compared above, in float64.
TOY = ['--dataset', 'ring8', '--loss', 'LSGAN', '--n-images', 512, '--bs', 64, '--sync-bn', '--device', 'cpu', '--quiet']


def _run(*args, exe='ragan-train', timeout=300):
    "A command as a user runs it, in a fresh process, one thread per process."
    env = {k: v for k, v in os.environ.items() if k not in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK')}
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run([str(BIN/exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def _ck(out, epoch):
    return torch.load(out/RUN/'checkpoints'/f'epoch_{epoch:03d}.pth', map_location='cpu', weights_only=True)


def _model_diff(a, b):
    "Largest difference between the weights and batch-norm statistics of two checkpoints."
    assert a['model'].keys() == b['model'].keys()
    return max((a['model'][k].double() - b['model'][k].double()).abs().max().item() for k in a['model'])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One epoch with `--nproc 2`; two epochs with one process; the 2-process run resumed to epoch 2 with one process."
    out = tmp_path_factory.mktemp('ddp')
    two = _run(*TOY, '--epochs', 1, '--nproc', 2, '--out', out/'two')
    one = _run(*TOY, '--epochs', 2, '--out', out/'one')
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.returncode == 0, one.stderr[-3000:]
    shutil.copytree(out/'two', out/'resumed')
    resumed = _run(*TOY, '--epochs', 2, '--resume', '--out', out/'resumed')
    return out, two, one, resumed


def test_two_processes_write_each_file_once(runs):
    out, two, _, _ = runs
    d = out/'two'/RUN
    assert sorted(p.name for p in d.iterdir()) == ['checkpoints', 'config.json', 'epoch_001.png', 'history.csv', 'loss.png']
    assert [p.name for p in (d/'checkpoints').iterdir()] == ['epoch_001.pth']
    lines = two.stdout.splitlines()
    assert sum(l.startswith('epoch 1/1') for l in lines) == 1 and sum(l.startswith('samples: ') for l in lines) == 1, two.stdout
    assert 'error' not in two.stderr.lower(), two.stderr
    cfg = json.loads((d/'config.json').read_text())
    assert (cfg['nproc'], cfg['bs'], cfg['sync_bn']) == (2, 64, True)
    assert len(list(csv.DictReader(open(d/'history.csv')))) == 512 // 64   # one row per global batch, not one per process


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
    out, *_ = runs
    a, b = _ck(out/'two', 1), _ck(out/'one', 1)
    assert _model_diff(a, b) < 1e-5, _model_diff(a, b)
    for x, y in zip(a['history'], b['history']): assert abs(x['loss'] - y['loss']) < 1e-5 and x['kind'] == y['kind']
    assert a['rng']['data'].equal(b['rng']['data'])   # the loader's generator: the same state, whatever the processes
    assert _model_diff(a, _ck(out/'one', 2)) > 1e-3   # the check can fail: another epoch is far away


def test_a_two_process_checkpoint_resumes_with_one_process(runs):
    out, _, _, resumed = runs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from" not in resumed.stdout   # --quiet
    a, b = _ck(out/'resumed', 2), _ck(out/'one', 2)
    assert _model_diff(a, b) < 1e-5, _model_diff(a, b)
    assert json.loads((out/'resumed'/RUN/'config.json').read_text())['nproc'] == 1
    assert len(a['history']) == 2 * 512 // 64


def test_bad_input_is_one_line_before_any_process_starts(tmp_path):
    "Every option is checked before torchrun starts (the other checks of --nproc: nbs/14_config, nbs/22_cli)."
    r = _run('--dataset', 'ring8', '--device', 'cpu', '--nproc', 2, '--bs', 63, '--out', tmp_path/'runs')
    assert r.returncode == 2 and r.stderr.startswith('ragan-train: error: ') and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'bs is the global batch, split evenly over the processes: 63 is not a multiple of nproc 2' in r.stderr
    assert not (tmp_path/'runs').exists()


def test_torchrun_itself_and_a_disagreeing_nproc(tmp_path):
    "`torchrun … --no-python ragan-train`: the processes check --nproc against the processes torchrun started."
    r = _run('--standalone', '--nproc_per_node', 2, '--no-python', '--', BIN/'ragan-train', *TOY, '--nproc', 4, '--out', tmp_path,
             exe='torchrun')
    assert r.returncode != 0
    assert r.stderr.count('ragan-train: error: nproc 4, but torchrun started 2 processes') == 1, r.stderr[-3000:]   # rank 0 says it
    assert not any(tmp_path.iterdir())
