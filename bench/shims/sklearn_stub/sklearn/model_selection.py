"A stand-in for sklearn.model_selection (bench/shims/README.md)."
def train_test_split(*args, **kwargs):
    raise NotImplementedError("train_test_split: this is bench/shims' stand-in for scikit-learn, which is not installed here")
