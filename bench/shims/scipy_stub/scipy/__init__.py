"A stand-in for SciPy (bench/shims/README.md): fastai imports it; ragan_nb never calls it."
__version__ = '0+stub'
def __getattr__(name):
    raise AttributeError(f"scipy.{name}: this is bench/shims' stand-in for SciPy, which is not installed here")
