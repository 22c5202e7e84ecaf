"""`gptlab explore`: a local web app over gptlab models and training runs, working offline.

    sources.py    the folders named on the command line -> loaded, named Explorers
    session.py    Explorer: one model, its lock, the last prompt's cached forward pass
    views.py      the numbers behind each view (next token, attention, lens, attribution, ablation)
    streaming.py  generation streamed token by token (gptlab sample's loop)
    runs.py       a run folder's curves and samples, polled as it trains
    registry.py   every view declared once: request, function, export settings
    app.py        the FastAPI app (routes made from the registry)
    server.py     binding the port, uvicorn     export.py  one self-contained HTML page
    guards.py     Host check, body limits, request timeouts (what stands before the routes)
    notebook.py   show(model, prompt) for Jupyter
    static/       the page: HTML, CSS, plain JavaScript modules (no CDN, no network)

The web stack (fastapi, uvicorn) is the optional extra `gptlab[explore]`, imported only when
serving; exporting a page and show() need neither.
"""


def show(model, prompt: str, tokenizer=None, height: int = 720, name: str = "model"):
    """The explorer's views of `model` for `prompt`, inline in a Jupyter notebook (a cell
    ending in the result draws it; see gptlab.explore.notebook). tokenizer defaults to GPT-2's."""
    from gptlab.explore.notebook import show as show_inline

    return show_inline(model, prompt, tokenizer, height, name)


__all__ = ["show"]
