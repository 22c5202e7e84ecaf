"""Import heavy optional dependencies where they are used, with a message naming the extra."""

import importlib
from types import ModuleType

from gptlab.errors import GptlabError


def import_optional(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a GptlabError telling the user which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise GptlabError(
            f"this needs the optional package '{module.split('.')[0]}' "
            f"(install it with: pip install 'gptlab[{extra}]')"
        ) from exc
