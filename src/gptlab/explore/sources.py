"""What `gptlab explore` serves: the models and runs named on the command line, loaded once.

A source is a gptlab model folder, a training run folder (its best checkpoint, and its curves
and samples), an unmerged LoRA folder, or a Hugging Face GPT-2 folder (--hf). A run folder that
has logged metrics but saved no checkpoint yet (a run that just started) is served for its
curves only. Each source gets a short name for the page's model menu; requests name a source by
it, and nothing else a request says ever becomes a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptlab.checkpoints.open import open_model
from gptlab.checkpoints.run import find_run_checkpoint
from gptlab.errors import GptlabError
from gptlab.explore.session import Explorer
from gptlab.fileio import is_run_folder


@dataclass(frozen=True)
class Source:
    path: str
    hf: bool = False  # a Hugging Face GPT-2 folder (or hub name) rather than a gptlab folder


def load_sources(sources: list[Source], device) -> dict[str, Explorer]:
    """One Explorer per source, by unique name, every one loaded before the server starts (a
    missing folder or a broken checkpoint fails at once, not on the first request)."""
    if not sources:
        raise GptlabError("name at least one model folder, run folder or --hf folder to explore")
    served: dict[str, Explorer] = {}
    for source in sources:
        name = unique_name(source_name(source), served)
        served[name] = load_source(name, source, device)
    return served


def source_name(source: Source) -> str:
    path = Path(source.path)
    base = path.resolve().name if path.exists() else source.path.rstrip("/").split("/")[-1]
    return f"hf:{base}" if source.hf else base


def unique_name(name: str, taken: dict) -> str:
    """`name`, or `name-2`, `name-3` ... when two sources share a folder name."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def load_source(name: str, source: Source, device) -> Explorer:
    if source.hf:
        from gptlab.checkpoints.hf_hub import load_hf_model

        model, tokenizer = load_hf_model(source.path)
        return Explorer(name, model.to(device).eval(), tokenizer)
    path = Path(source.path)
    if not path.exists():
        raise GptlabError(f"{path} does not exist: name a model folder, run folder or --hf folder")
    run_dir = path if is_run_folder(path) else None
    if run_dir is not None and find_run_checkpoint(path) is None:
        return Explorer(name, None, None, run_dir=run_dir)  # curves only, until a checkpoint lands
    model, tokenizer = open_model(path, device)
    return Explorer(name, model.eval(), tokenizer, run_dir=run_dir)
