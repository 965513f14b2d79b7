"""The modern recipe against the 2018 default on Fashion-MNIST: classifier Fréchet distance (CFD) after every epoch.

Configurations (DCGAN at 32 px, batch 64, the same seed and data for all):
  ralsgan      RaLSGAN, Adam(2e-4, 0.5, 0.999)                       (today's default)
  ralsgan_ema  the same + generator EMA (half-life 10,000 images), samples from the EMA
  r3gan        RpSGAN + R1 + R2 (γ = 0.1 each: R3GAN's 0.05 for our RpSGAN, whose critic loss has the factor 2 of
               arXiv 1901.02474) + EMA, Adam(2e-4, 0, 0.99)
CFD: `n` generated images against the 10,000 test images through the shipped Fashion-MNIST classifier.
Each configuration writes <out>/<name>.json after every epoch and is skipped when it is complete (re-run to continue).
Usage: python bench/recipe.py --out bench_results/recipe [--configs r3gan,ralsgan] [--epochs 5] [--n 5000]
"""
import argparse, json, os, sys, time
from pathlib import Path

CONFIGS = {
    'ralsgan': dict(loss='RaLSGAN'),
    'ralsgan_ema': dict(loss='RaLSGAN', ema=10_000),
    'r3gan': dict(loss='RpSGAN', r1=0.1, r2=0.1, ema=10_000, betas=(0., 0.99)),
}


def run(name, out, epochs, n, seed=0, threads=1):
    import torch
    torch.set_num_threads(threads)
    from fastai.callback.core import Callback
    from ragan_nb.data import image_dls
    from ragan_nb.models import gan_models
    from ragan_nb.learner import ragan_learner
    from ragan_nb.evaluate import evaluate
    fn = Path(out)/f'{name}.json'
    if fn.exists() and len(json.loads(fn.read_text())['epochs']) >= epochs: return json.loads(fn.read_text())
    torch.manual_seed(seed)
    dls = image_dls('fashion_mnist', bs=64, size=32, noise_size=(128, 1, 1), seed=seed, device='cpu')
    G, C = gan_models('dcgan', 32, 1, 128)
    res = dict(config=name, settings={k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[name].items()},
               n=n, seed=seed, threads=threads, epochs=[])

    class CFD(Callback):
        order = 95
        def after_epoch(self):
            g = getattr(self.learn, 'ema_generator', None) or self.learn.model.generator
            t = time.perf_counter()
            m = evaluate(g, 'fashion_mnist', metrics=('cfd', 'classes'), n=n, device='cpu')
            res['epochs'].append(dict(epoch=self.epoch + 1, cfd=m['cfd'], classes=m['classes_covered'],
                                      eval_s=round(time.perf_counter() - t, 1), train_s=round(t - self.t0, 1)))
            print(name, res['epochs'][-1], flush=True)
            fn.write_text(json.dumps(res, indent=1))
        def before_epoch(self): self.t0 = time.perf_counter()

    learn = ragan_learner(dls, G, C, cbs=CFD(), **CONFIGS[name])
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return res


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='bench_results/recipe')
    p.add_argument('--configs', default=','.join(CONFIGS))
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--n', type=int, default=5000)
    p.add_argument('--threads', type=int, default=1)
    a = p.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for name in a.configs.split(','):
        if name not in CONFIGS: sys.exit(f'recipe.py: error: unknown config {name!r}; choose from {", ".join(CONFIGS)}')
        run(name, a.out, a.epochs, a.n, threads=a.threads)
