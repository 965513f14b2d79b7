__version__ = "0.1.0"
import warnings
# importing fastai trips torch's deprecation notice for torch.jit.script (fastai's code, not ours): keep our imports quiet
warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated')
