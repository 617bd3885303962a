__version__ = "0.1.0"

from .load import load                 # the public entry point: load(path_or_repo, device, dtype)
from . import generate as _generate    # noqa: F401  (adds Llama.generate and Llama.chat)
