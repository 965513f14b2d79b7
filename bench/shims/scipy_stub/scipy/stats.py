"A stand-in for scipy.stats (bench/shims/README.md): fastai.metrics imports it."
def __getattr__(name):
    raise AttributeError(f"scipy.stats.{name}: this is bench/shims' stand-in for SciPy, which is not installed here")
