"A stand-in for scikit-learn (bench/shims/README.md): fastai imports it; ragan_nb never calls it."
__version__ = '0+stub'
