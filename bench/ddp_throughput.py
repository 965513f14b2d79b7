"""Images per second of `ragan-train` with N processes against 1 process at the same global batch (issue 17).

Each run is the installed command, as a user runs it: `ragan-train --dataset fashion_mnist --loss RaLSGAN` (DCGAN at
32 px) on the first `--n-images` images, one epoch, `--bs` the global batch (each of N processes trains on bs/N rows of
it), `--device cpu` (gloo), `OMP_NUM_THREADS=1` and `MKL_NUM_THREADS=1` in every process. The configurations run
`--rounds` times each, interleaved (1, N, 1, N, ...), each in a fresh run folder. The time of a run is the epoch time
`ragan-train` prints: the training loop plus rank 0's sample grid, loss plot and checkpoint at the end of the epoch
(start-up, data loading and the launcher are not in it). images/s = the real images of the epoch's global batches
(n_images // bs * bs; fastai's GAN trainer makes each batch one critic or one generator step) / that time.
The table gives the median over the rounds, and each run's load average is printed: measure on a quiet machine.

Example (about 3 minutes on 2 cores): `.venv/bin/python bench/ddp_throughput.py --n-images 3200 --rounds 2`
"""
import argparse, os, re, statistics, subprocess, sys, tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-images', type=int, default=3200, help='training images (the first N of the dataset)')
    p.add_argument('--bs', type=int, default=64, help='the global batch, a multiple of --nproc')
    p.add_argument('--nproc', type=int, default=2, help='processes of the data-parallel runs')
    p.add_argument('--rounds', type=int, default=2, help='runs of each configuration, interleaved')
    p.add_argument('--dataset', default='fashion_mnist')
    p.add_argument('--loss', default='RaLSGAN')
    p.add_argument('--device', default='cpu', help='cpu (gloo) or cuda (NCCL, one GPU per process)')
    p.add_argument('--data', default=None, help="folder of the dataset's files (default: ragan-train's search)")
    p.add_argument('--sync-bn', action=argparse.BooleanOptionalAction, default=True,
                   help='batch norm over the global batch, so that N processes train as one does (default: on)')
    a = p.parse_args(argv)
    for k in ('n_images', 'bs', 'nproc', 'rounds'):
        if getattr(a, k) < 1: p.error(f"--{k.replace('_', '-')} must be a positive integer")
    if a.nproc < 2: p.error('--nproc must be at least 2 (the comparison is against 1 process)')
    if a.bs % a.nproc: p.error(f'--bs {a.bs} must be a multiple of --nproc {a.nproc}')
    if a.n_images < a.bs: p.error(f'--n-images {a.n_images} holds no batch of {a.bs}')
    return a


def epoch_seconds(a, nproc:int, out:Path) -> float:
    "Run one epoch with `nproc` processes; the epoch time `ragan-train` prints."
    cmd = [str(BIN/'ragan-train'), '--dataset', a.dataset, '--loss', a.loss, '--n-images', str(a.n_images), '--bs', str(a.bs),
           '--epochs', '1', '--device', a.device, '--quiet', '--out', str(out)]
    cmd += (['--nproc', str(nproc)] if nproc > 1 else []) + (['--sync-bn'] if a.sync_bn and nproc > 1 else [])
    cmd += ['--data', a.data] if a.data else []
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f"ragan-train failed with status {r.returncode}:\n{r.stderr[-3000:]}")
    m = re.search(r'^epoch 1/1: .*, ([\d.]+) s -> ', r.stdout, re.M)
    if m is None: sys.exit(f"no epoch line in ragan-train's output:\n{r.stdout[-3000:]}")
    return float(m[1])


def main(argv=None):
    a = parse_args(argv)
    images = a.n_images // a.bs * a.bs
    times = {1: [], a.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for n in (1, a.nproc) if r % 2 == 0 else (a.nproc, 1):
                load = os.getloadavg()[0]
                t = epoch_seconds(a, n, Path(tmp)/f'round{r}_{n}')
                times[n].append(t)
                print(f"round {r + 1}, {n} process(es): epoch {t:.1f} s, {images / t:.1f} images/s (load average {load:.2f})", flush=True)
    print(f"\n{a.dataset}, {a.loss}, DCGAN 32 px, {images} images per epoch, global batch {a.bs}, device {a.device}, "
          f"1 thread per process, {os.cpu_count()} cores, median of {a.rounds} run(s)"
          + (", --sync-bn" if a.sync_bn else ", batch norm per process") + "\n")
    print('| processes | rows per process | epoch (s) | images/s |')
    print('|---|---|---|---|')
    rate = {}
    for n in (1, a.nproc):
        t = statistics.median(times[n]); rate[n] = images / t
        print(f'| {n} | {a.bs // n} | {t:.1f} | {rate[n]:.1f} |')
    print(f"\n{a.nproc} processes: {rate[a.nproc] / rate[1]:.2f}x the images/s of 1 process")


if __name__ == '__main__': main()
