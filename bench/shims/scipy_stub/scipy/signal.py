"""A stand-in for scipy.signal (bench/shims/README.md): torchmetrics imports it when a `scipy` is importable, and
patches `hamming` onto it from `windows` where it lacks one; ragan_nb's metrics never call it."""
from types import SimpleNamespace

def hamming(*args, **kwargs):
    raise NotImplementedError("scipy.signal.hamming: this is bench/shims' stand-in for SciPy, which is not installed here")

windows = SimpleNamespace(hamming=hamming)
