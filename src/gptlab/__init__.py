"""gptlab: build, train, sample from, evaluate, fine-tune and look inside GPT-2-style models."""

from importlib.metadata import PackageNotFoundError, version

from gptlab.errors import GptlabError

try:
    __version__ = version("gptlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["GptlabError", "__version__"]
