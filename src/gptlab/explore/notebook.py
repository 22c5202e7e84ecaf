"""`gptlab.explore.show(model, prompt)`: the explorer's views inline in a Jupyter notebook.

The exported page (gptlab.explore.export) in an iframe's srcdoc: self-contained, so it needs no
server, no network and no notebook extension, and a saved notebook keeps it.
"""

from __future__ import annotations

import html

from gptlab.explore.export import page_html
from gptlab.explore.session import Explorer
from gptlab.fileio import atomic_write_text


class InlinePage:
    """What show() returns: Jupyter draws it through _repr_html_; save() writes the page."""

    def __init__(self, page: str, height: int):
        self.page = page
        self.height = height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.page, quote=True)}" width="100%" '
            f'height="{self.height}" style="border:1px solid #ddd" '
            'sandbox="allow-scripts"></iframe>'
        )

    def save(self, path) -> None:
        atomic_write_text(path, self.page)


def show(model, prompt: str, tokenizer=None, height: int = 720, name: str = "model") -> InlinePage:
    """The views of `model` for `prompt`, precomputed. tokenizer defaults to GPT-2's."""
    if tokenizer is None:
        from gptlab.tokenizers.base import GPT2Tokenizer

        tokenizer = GPT2Tokenizer()
    # The views need eval mode (no dropout); a model being trained in the notebook goes back
    # to training mode afterwards.
    was_training = model.training
    try:
        page = page_html(Explorer(name, model.eval(), tokenizer), prompt, progress=False)
    finally:
        model.train(was_training)
    return InlinePage(page, height)
