"A stand-in for scipy.ndimage (bench/shims/README.md)."
def __getattr__(name):
    raise AttributeError(f"scipy.ndimage.{name}: this is bench/shims' stand-in for SciPy, which is not installed here")
