"""Out of memory, out of disk, a checkpoint cut short (issue 25): one error line and an exit status of their own
(`ragan_nb.commands`: 4 out of memory, 5 no space left), the last good checkpoint kept, and `--resume` falling back
to the newest checkpoint that reads. The failures are injected (a `torch.save` that raises `OSError(ENOSPC)`, a
backward pass that raises `torch.OutOfMemoryError`), so no tmpfs or memory limit is needed."""
import json, subprocess, sys
from pathlib import Path
import pytest
import torch
from conftest import command_env

# ragan-train's entry point in this interpreter, after `kind` ('disk' or 'memory') was made to fail on call `after` + 1.
INJECT = """
import errno, sys, torch
kind, after, *args = sys.argv[1:]
calls = [0]
def failing(real, exc):
    def f(*a, **k):
        calls[0] += 1
        if calls[0] > int(after): raise exc
        return real(*a, **k)
    return f
if kind == 'disk': torch.save = failing(torch.save, OSError(errno.ENOSPC, 'No space left on device'))
else: torch.Tensor.backward = failing(torch.Tensor.backward,
                                      torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB'))
from ragan_nb.cli import ragan_train
sys.argv = ['ragan-train', *args]
ragan_train()
"""

TOY = ['--dataset', 'ring8', '--n-images', 512, '--bs', 64, '--device', 'cpu', '--quiet']

def injected(kind:str, after:int, *args, cwd:Path):
    return subprocess.run([sys.executable, '-c', INJECT, kind, str(after), *map(str, args)], capture_output=True, text=True,
                          env=command_env(), cwd=cwd, timeout=300)

def one_error_line(r, prog='ragan-train') -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert 'Traceback' not in r.stderr + r.stdout and len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), r.stderr
    return lines[0]

def test_disk_full_during_training(commands, tmp_path):
    "The epoch-2 checkpoint cannot be written: exit 5, one line naming the run and the checkpoint kept; --resume works."
    d = tmp_path/'ring8_RaLSGAN'
    r = injected('disk', 1, *TOY, '--epochs', 3, '--out', tmp_path, cwd=tmp_path)
    assert r.returncode == 5, (r.returncode, r.stderr[-2000:])
    line = one_error_line(r)
    assert line == (f"ragan-train: error: no space left on the disk holding {d}; the last good checkpoint, "
                    f"{d/'checkpoints'/'epoch_001.pth'}, is kept: free some space and continue with --resume"), line
    assert sorted(p.name for p in (d/'checkpoints').iterdir()) == ['epoch_001.pth']   # no half-written file beside it
    assert torch.load(d/'checkpoints'/'epoch_001.pth', weights_only=True)['epoch'] == 1
    r = commands('ragan-train', *TOY, '--epochs', 3, '--out', tmp_path, '--resume', cwd=tmp_path)
    assert r.returncode == 0 and 'epoch 2/3' in r.stdout and 'epoch 3/3' in r.stdout, r.stderr

def test_out_of_memory(tmp_path):
    "A failed allocation in the first step: exit 4 and one line with the batch size, no traceback."
    r = injected('memory', 0, *TOY, '--epochs', 1, '--out', tmp_path, cwd=tmp_path)
    assert r.returncode == 4, (r.returncode, r.stderr[-2000:])
    assert one_error_line(r) == ('ragan-train: error: out of memory at batch size 64: '
                                 'CUDA out of memory. Tried to allocate 2.00 GiB')

def test_resume_skips_a_truncated_newest_checkpoint(commands, tmp_path):
    "epoch_002.pth cut in half (a disk that filled, a copy cut off): --resume says so and continues from epoch_001.pth."
    assert commands('ragan-train', *TOY, '--epochs', 2, '--out', tmp_path, cwd=tmp_path).returncode == 0
    ck = tmp_path/'ring8_RaLSGAN'/'checkpoints'
    fn = ck/'epoch_002.pth'; fn.write_bytes(fn.read_bytes()[:fn.stat().st_size // 2])
    r = commands('ragan-train', *TOY, '--epochs', 3, '--out', tmp_path, '--resume', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '--resume: skipped epoch_002.pth: torch.load cannot read it' in r.stdout, r.stdout
    assert 'epoch 2/3' in r.stdout and 'epoch 3/3' in r.stdout, r.stdout   # epoch 2 trained again, then 3
    assert torch.load(ck/'epoch_002.pth', weights_only=True)['epoch'] == 2   # the broken file replaced by a good one

def test_resume_refuses_when_no_checkpoint_reads(commands, tmp_path):
    "The only checkpoint cut short: nothing to fall back to, one error line naming it (exit 2)."
    assert commands('ragan-train', *TOY, '--epochs', 1, '--out', tmp_path, cwd=tmp_path).returncode == 0
    fn = tmp_path/'ring8_RaLSGAN'/'checkpoints'/'epoch_001.pth'; fn.write_bytes(fn.read_bytes()[:100])
    r = commands('ragan-train', *TOY, '--epochs', 2, '--out', tmp_path, '--resume', cwd=tmp_path)
    assert r.returncode == 2 and 'epoch_001.pth is not a ragan-train checkpoint' in one_error_line(r), r.stderr

def test_log_output_is_one_line_per_epoch(commands, tmp_path):
    "Output to a file (not a terminal), without --quiet: no progress-bar frames, one line per epoch, numbered on."
    args = ['--dataset', 'ring8', '--n-images', 512, '--bs', 64, '--device', 'cpu', '--out', tmp_path]
    r = commands('ragan-train', *args, '--epochs', 2, cwd=tmp_path)
    assert r.returncode == 0 and '\r' not in r.stdout and 'train_loss' not in r.stdout, r.stdout[:500]
    assert [l.split(':')[0] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['epoch 1/2', 'epoch 2/2']
    r = commands('ragan-train', *args, '--epochs', 3, '--resume', cwd=tmp_path)
    assert [l.split(':')[0] for l in r.stdout.splitlines() if l.startswith('epoch ')] == ['epoch 3/3'], r.stdout
    assert f"next: ragan-eval {tmp_path/'ring8_RaLSGAN'}" in r.stdout.splitlines(), r.stdout

def test_table_counts_epochs_from_one_across_a_resume(tmp_path):
    "fastai's table (a terminal's output) numbers epochs as the 'epoch N/M' lines do: 1, then 2 after a resume."
    code = ("import sys; from ragan_nb.train import train\n"
            "rows = []\n"
            "for e, resume in ((1, False), (2, True)):\n"
            "    learn = train(sys.argv[1], resume=resume, dataset='grid9', n_images=256, bs=64, epochs=e, device='cpu',\n"
            "                  progress=True)\n"
            "    rows.append(learn.recorder.log[0])\n"
            "print('ROWS', rows)")
    r = subprocess.run([sys.executable, '-c', code, str(tmp_path)], capture_output=True, text=True, env=command_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'ROWS [1, 2]' in r.stdout, r.stdout[-500:]
