"A stand-in for sklearn.metrics (bench/shims/README.md): fastai.metrics imports it; ragan_nb's metrics are its own."
def __getattr__(name):
    raise AttributeError(f"sklearn.metrics.{name}: this is bench/shims' stand-in for scikit-learn, which is not installed here")
