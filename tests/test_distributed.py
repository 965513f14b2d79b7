"""Data-parallel training equals one process on the global batch: gloo on the CPU, 2 processes x batch b against
1 process x batch 2b, same data, noise and initial weights, parameters compared to 1e-5 after several iterations.
A negative control (each process computes the loss on its own shard) must differ."""
import os, socket, sys, tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

B, N_BATCHES, NZ = 6, 8, 3
# name, ragan_learner kwargs, n_crit
CASES = [
    ('RaLSGAN', {}, 1),
    ('RaSGAN-GP', {'gp_seed': 3}, 1),
    ('RcLSGAN-unbiased', {}, 2),
    ('RpSGAN-MVUE', {}, 1),
    ('realness', {'loss_kwargs': {'seed': 5}}, 1),
    ('RpSGAN', {'r1': 0.5, 'r2': 0.5, 'reg_every': 2}, 1),
]


def _nets(realness):
    "Tiny float64 networks: no batch norm (its statistics are per process) and no bias on the critic's last layer."
    from torch import nn
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(NZ, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    C = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 5 if realness else 1, bias=realness)).double()
    return G, C


def _batches(world, rank):
    "The global batches (noise, real), cut into this process's shard."
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

    G, C = _nets(name == 'realness')
    dls = DataLoaders(Fixed(_batches(world, rank)), Fixed([]), device='cpu')
    cbs = [DistributedCallback()] if world > 1 else []
    learn = ragan_learner(dls, G, C, name, n_crit=n_crit, cbs=cbs, **kwargs)
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    return [p.detach().clone() for p in list(G.parameters()) + list(C.parameters())]


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


@pytest.mark.parametrize('name,kwargs,n_crit', CASES, ids=[c[0] + ('+R1R2' if 'r1' in c[1] else '') for c in CASES])
def test_two_processes_equal_one_on_the_global_batch(two, name, kwargs, n_crit):
    one = _train(1, 0, name, kwargs, n_crit)
    d = _max_diff(one, two[name + str(kwargs)])
    assert d < 1e-5, f'{name}: 2 processes differ from 1 by {d:.2e}'


def test_per_process_statistics_differ(two):
    "The negative control: RaLSGAN with each process's own batch means is a different algorithm."
    assert _max_diff(_train(1, 0, 'RaLSGAN', {}, 1), two['local RaLSGAN']) > 1e-4
