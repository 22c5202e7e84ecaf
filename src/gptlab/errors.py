"""The one error type for mistakes a user can fix (bad config, missing file, unknown name).

The CLI prints a GptlabError as a single line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class GptlabError(Exception):
    """A user-facing error: the message says what was wrong and what to do about it."""


def require(condition: bool, message: str) -> None:
    """Raise GptlabError(message) unless condition holds (for validating user input)."""
    if not condition:
        raise GptlabError(message)
