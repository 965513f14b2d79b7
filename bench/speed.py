"""Seconds per iteration (one critic step + one generator step): ragan_nb's GANLearner against a plain PyTorch loop.

RaSGAN, fastai `basic_generator`/`basic_critic` at 32x32, 64 features, batch 64, 1 channel, Adam(0.5, 0.999).
Both sides train the same networks on the same in-memory uint8 images; the order of the two is alternated over
`--rounds` rounds and the median round is reported. Usage: `python bench/speed.py [--iters 30] [--rounds 3]`.
"""
import argparse, copy, statistics, time
import torch
from fastai.vision.gan import basic_generator, basic_critic
from ragan_nb.gandata import gan_dls
from ragan_nb.callbacks import ragan_learner
from ragan_nb.losses import gan_losses

def plain_loop(G, C, images, iters, bs=64, nz=100, device='cpu'):
    "A hand-written loop: critic step, then a generator step on a fresh real batch (reference structure)."
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_c = torch.optim.Adam(C.parameters(), lr=2e-4, betas=(0.5, 0.999))
    crit, gen = gan_losses('RaSGAN')
    perm = torch.randperm(len(images))
    def batch(i):
        x = images[perm[i*bs:(i+1)*bs]].to(device).float().div(127.5).sub(1)
        return torch.randn(bs, nz, device=device), x
    for it in range(iters):
        z, x = batch(2*it)
        opt_c.zero_grad()
        with torch.no_grad(): fake = G(z)
        crit(C(x), C(fake)).backward(); opt_c.step()
        z, x = batch(2*it + 1)
        for p in C.parameters(): p.requires_grad_(False)
        opt_g.zero_grad()
        f = C(G(z)); gen(C(x), f).backward(); opt_g.step()
        for p in C.parameters(): p.requires_grad_(True)

def time_plain(G, C, images, iters, device):
    if device == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter(); plain_loop(G, C, images, iters, device=device)
    if device == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters

def time_ragan(G, C, images, iters, device, bar):
    dls = gan_dls(images[:64*2*iters], bs=64, noise_size=100, seed=0, device=device)
    learn = ragan_learner(dls, G, C, loss='RaSGAN')
    if device == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    if bar: learn.fit(1)
    else:
        with learn.no_bar(), learn.no_logging(): learn.fit(1)
    if device == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--bar', action='store_true', help='show the fastprogress bar on the ragan_nb side')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    G0, C0 = basic_generator(32, n_channels=1, n_extra_layers=0), basic_critic(32, n_channels=1, n_extra_layers=0)
    images = torch.randint(0, 256, (64*2*a.iters, 1, 32, 32), dtype=torch.uint8)
    # warm-up (allocator, kernels) on both paths
    time_plain(copy.deepcopy(G0).to(a.device), copy.deepcopy(C0).to(a.device), images, 3, a.device)
    time_ragan(copy.deepcopy(G0), copy.deepcopy(C0), images[:64*6], 3, a.device, False)
    rows = []
    for r in range(a.rounds):
        order = ['plain', 'ragan'] if r % 2 == 0 else ['ragan', 'plain']
        res = {}
        for which in order:
            G, C = copy.deepcopy(G0), copy.deepcopy(C0)
            res[which] = (time_plain(G.to(a.device), C.to(a.device), images, a.iters, a.device) if which == 'plain'
                          else time_ragan(G, C, images, a.iters, a.device, a.bar))
        rows.append(res)
        print(f"round {r}: plain {res['plain']:.4f} s/it  ragan_nb {res['ragan']:.4f} s/it  ratio {res['ragan']/res['plain']:.3f}")
    ratio = statistics.median(r['ragan']/r['plain'] for r in rows)
    print(f"device={a.device} threads={a.threads} iters={a.iters}: plain {statistics.median(r['plain'] for r in rows):.4f} s/it, "
          f"ragan_nb {statistics.median(r['ragan'] for r in rows):.4f} s/it, median ratio {ratio:.3f} (target <= 1.05)")
