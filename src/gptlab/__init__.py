"""gptlab: build, train, sample from, evaluate, fine-tune and look inside GPT-2-style models.

The public face, for a first script:

    from gptlab import GPT, ModelConfig, build_run_config, generate, load_model, save_model
    from gptlab.train import train   # (`gptlab.train` is the training package, so not here)

Each name is imported on first use (PEP 562), so `import gptlab` and `gptlab --help` do not
load torch; everything else lives in its own module (docs/architecture.md has the map).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from gptlab.errors import GptlabError

try:
    __version__ = version("gptlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# name -> the module that defines it
PUBLIC = {
    "GPT": "gptlab.model.gpt",
    "ModelConfig": "gptlab.model.config",
    "load_model": "gptlab.checkpoints.load",
    "save_model": "gptlab.checkpoints.model_folder",
    "generate": "gptlab.inference.generate",
    "generate_text": "gptlab.inference.generate",
    "GenerationConfig": "gptlab.inference.config",
    "build_run_config": "gptlab.train.config",
}

__all__ = ["GptlabError", "__version__", *PUBLIC]


def __getattr__(name: str):
    if name in PUBLIC:
        return getattr(import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'gptlab' has no attribute {name!r}")
