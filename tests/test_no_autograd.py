"""No inference path builds an autograd graph: one test per entry point, and a memory bound.

Reading a model never needs gradients, and a graph built by mistake is kept alive by whatever
holds the outputs: the KV cache of a 400-token decode then holds every step's activations
(commit 3204165 did that to every decode, and nothing noticed). The watch below sees every torch
call made in its block (a TorchFunctionMode, so code paths that never reach a hook are seen too)
and records each result that is a graph node (has a grad_fn); a path passes when it called torch and none did.
The training model's parameters require grad, so only inference or no-grad mode keeps them out.
"""

from __future__ import annotations

import io
import string

import pytest
import torch
from model_testing import save_tiny_gpt2_model, spiky_model
from torch.overrides import TorchFunctionMode

from gptlab.cli import main
from gptlab.inference.generate import GenerationConfig, decode_steps, generate, generate_text
from gptlab.model import GPT
from gptlab.model.config import ModelConfig
from gptlab.tokenizers.base import CharTokenizer

CHARS = list(" .,;:#!?\n" + string.ascii_lowercase + string.ascii_uppercase)


class GraphWatch(TorchFunctionMode):
    """Counts torch calls and remembers those whose result requires grad (a graph node)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.graph_built: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.calls += 1
        outputs = result if isinstance(result, tuple | list) else (result,)
        if any(isinstance(t, torch.Tensor) and t.grad_fn is not None for t in outputs):
            self.graph_built.append(getattr(func, "__name__", repr(func)))
        return result

    def check(self) -> None:
        assert self.calls > 0, "the path made no torch call: the watch saw nothing"
        assert not self.graph_built, f"autograd graph built by: {sorted(set(self.graph_built))}"


@pytest.fixture
def watch():
    with GraphWatch() as mode:
        yield mode
    mode.check()


@pytest.fixture(scope="module")
def model() -> GPT:
    """A model whose parameters require grad, as the trainer's live model."""
    model = spiky_model(
        ModelConfig(vocab_size=len(CHARS), block_size=32, n_layer=2, n_head=2, n_embd=16)
    )
    assert all(p.requires_grad for p in model.parameters())
    return model


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer(CHARS)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    return save_tiny_gpt2_model(tmp_path_factory.mktemp("tiny"), block_size=64)


GREEDY = GenerationConfig(max_new_tokens=12, temperature=0)
SAMPLED = GenerationConfig(max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=0)


@pytest.mark.parametrize("cache", ["dynamic", "static", "none"])
def test_generate(model, watch, cache):
    generate(model, [[1, 2, 3], [4, 5]], GenerationConfig(max_new_tokens=40, cache=cache, seed=0))


def test_generate_text(model, tokenizer, watch):
    generate_text(model, tokenizer, "hello", SAMPLED)


def test_decode_steps_computes_in_inference_mode_and_leaves_the_caller_alone(model):
    """Every step's forward pass runs in inference mode, while the code between steps (the
    caller's) keeps its own grad mode: a generator must not leak its mode across yields."""
    modes = []
    hook = model.register_forward_hook(
        lambda *_: modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
    )
    try:
        steps = decode_steps(model, [[1, 2, 3]], SAMPLED, logits=True)
        for step in steps:
            assert not step.logits.requires_grad
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    finally:
        hook.remove()
    assert len(modes) == SAMPLED.max_new_tokens
    assert all(inference and not grad for inference, grad in modes)


def test_speculative_decoding(model, watch):
    from gptlab.inference.speculative import speculative_generate

    draft = spiky_model(model.config, seed=1)
    speculative_generate(model, draft, [1, 2, 3], 12, draft_tokens=3)


def test_gptlab_sample(gpt2_folder, capsys, watch):
    assert (
        main(
            ["sample", "--checkpoint", str(gpt2_folder), "--prompt", "Hi", "--max-new-tokens", "5"]
        )
        == 0
    )


def test_gptlab_sample_speculative(gpt2_folder, capsys, watch):
    args = ["--prompt", "Hi", "--max-new-tokens", "5", "--greedy", "--draft", str(gpt2_folder)]
    assert main(["sample", "--checkpoint", str(gpt2_folder), *args]) == 0


def test_gptlab_chat(gpt2_folder, capsys, monkeypatch, watch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Say hi\nAnd again\n"))
    assert main(["chat", "--checkpoint", str(gpt2_folder), "--max-new-tokens", "5"]) == 0


def test_trainer_periodic_sample(model, tokenizer, watch):
    from gptlab.train.periodic_eval import sample_text

    model.train()
    try:
        sample_text(model, tokenizer, "hello", 10, temperature=0.8, seed=0)
        assert model.training  # the live training model goes back to training
    finally:
        model.eval()


def test_instruction_answers(model, tokenizer, watch):
    from gptlab.finetune.examples import InstructionExample
    from gptlab.finetune.instruct import answer_config, generate_answers

    small = spiky_model(
        ModelConfig(vocab_size=len(CHARS), block_size=256, n_layer=1, n_head=2, n_embd=16)
    )
    examples = [InstructionExample("Add", "two", "four"), InstructionExample("Say hi", "", "hi")]
    generate_answers(small, tokenizer, examples, answer_config(6), batch_size=2)


def test_perplexity_and_hellaswag_scoring(model, tokenizer, watch):
    from gptlab.eval.hellaswag import HellaSwagItem, score_endings
    from gptlab.eval.perplexity import evaluate_text

    evaluate_text(model, tokenizer, "hello there, how are you today?" * 3, progress=False)
    item = HellaSwagItem(context="a cat", endings=(" sat", " ran", " is", " a"), label=0)
    score_endings(model, tokenizer, [item], progress=False)


INSPECT_TOOLS = {  # the tools that only read the model (attribution-patch needs gradients)
    "attention": ["--prompt", "hello world"],
    "logit-lens": ["--prompt", "hello world", "--top-k", "3"],
    "attribute": ["--prompt", "hello world", "--target", "o"],
    "ablate": ["--prompt", "hello world", "--mode", "mean"],
    "patch": ["--prompt", "the cat", "--corrupted", "the dog", "--answer", " ", "--wrong", "s"],
    "test-prompt": ["--prompt", "hello wor", "--answer", "ld"],
    "neighbors": ["--token", "e", "--top-k", "4"],
    "heads": ["--batch", "2", "--length", "8"],
    "loss": ["--batch", "2", "--length", "8", "--repeats", "3", "--ablate", "1.0"],
    "circuits": ["--layer", "1", "--head", "1", "--positions", "8"],
    "composition": [],
    "prompt-set": ["--ioi", "2", "--template", "2"],
    "patch-sites": ["--ioi", "2", "--template", "2", "--site", "resid_pre"],
    "path-patch": ["--ioi", "2", "--template", "2", "--layer", "1", "--head", "0", "--input", "k"],
}


@pytest.fixture(scope="module")
def inspect_folder(tmp_path_factory):
    from gptlab.checkpoints.model_folder import save_model

    tokenizer = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.!?")
    folder = tmp_path_factory.mktemp("inspect")
    model = spiky_model(
        ModelConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=16)
    )
    save_model(folder, model, tokenizer)
    return str(folder)


@pytest.mark.parametrize("tool", INSPECT_TOOLS)
def test_inspect_tools_that_only_read(tool, inspect_folder, tmp_path, capsys, watch):
    args = [
        "--checkpoint",
        inspect_folder,
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        *INSPECT_TOOLS[tool],
    ]
    assert main(["inspect", tool, *args]) == 0


def test_every_bench_generate_row(gpt2_folder, tmp_path, capsys, watch):
    pytest.importorskip("transformers")
    args = ["--checkpoint", str(gpt2_folder), "--quick", "--draft", str(gpt2_folder)]
    assert main(["bench", "generate", *args]) == 0
    printed = capsys.readouterr().out
    for row in (
        "transformers generate",
        "no cache",
        "dynamic cache",
        "static cache",
        "int8",
        "speculative",
    ):
        assert row in printed


def test_explore_next_token_and_stream(tmp_path, watch):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from explore_testing import PROMPT, model_folder
    from fastapi.testclient import TestClient

    from gptlab.explore.app import create_app
    from gptlab.explore.sources import Source, load_sources

    served = load_sources([Source(str(model_folder(tmp_path / "model")))], "cpu")
    for param in served["model"].model.parameters():
        param.requires_grad_(True)  # as a live model would have them
    client = TestClient(create_app(served))
    response = client.post("/api/next_token", json={"prompt": PROMPT, "temperature": 0.7})
    assert response.status_code == 200, response.text
    body = {"prompt": PROMPT, "max_new_tokens": 5, "temperature": 0.8, "seed": 0}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200 and '"done"' in response.text, response.text


# -- memory --------------------------------------------------------------------------------------


def held_bytes(cache) -> int:
    """Bytes of tensor storage the KV cache keeps alive: its own keys and values, plus every
    tensor an autograd graph behind them saved (each node's `_saved_*` tensors). Parameters are
    left out (they are the model, not the decode's growth). Counted per storage, so a view is
    not counted twice: a deterministic measure, unlike the process's RSS."""
    storages: dict[int, int] = {}
    nodes, seen = [], set()

    def add(tensor: torch.Tensor) -> None:
        if isinstance(tensor, torch.nn.Parameter):
            return
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        if tensor.grad_fn is not None:
            nodes.append(tensor.grad_fn)

    for tensor in [*cache.keys, *cache.values]:
        if tensor is not None:
            add(tensor)
    while nodes:
        node = nodes.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name, None)
                if isinstance(value, torch.Tensor):
                    add(value)
        nodes += [next_node for next_node, _ in node.next_functions]
    return sum(storages.values())


def test_400_tokens_hold_less_than_twice_the_kv_cache():
    """The issue's case, smaller: a 400-token decode. The memory kept alive at each step (sampled
    in a forward pre-hook, where the decode's state is complete) stays under twice the final KV
    cache; with autograd on, the cache held every step's activations (~5x more), and the hook
    stops the decode at the first step past the bound."""
    config = ModelConfig(vocab_size=len(CHARS), block_size=512, n_layer=2, n_head=2, n_embd=32)
    model = spiky_model(config)
    prompt, new_tokens = [1, 2, 3, 4], 400
    positions = len(prompt) + new_tokens - 1  # the last token is chosen, never fed back
    kv_bytes = 2 * config.n_layer * positions * config.n_embd * 4  # keys and values, fp32
    held = []

    def measure(_module, _args, kwargs):
        cache = kwargs.get("kv_cache")
        if cache is not None and cache.seq_len > 0:
            held.append(held_bytes(cache))
            assert held[-1] < 2 * kv_bytes, f"step {len(held)}: {held[-1]} bytes held"

    hook = model.register_forward_pre_hook(measure, with_kwargs=True)
    try:
        generate(model, prompt, GenerationConfig(max_new_tokens=new_tokens, temperature=0))
    finally:
        hook.remove()
    assert len(held) == new_tokens - 1  # every decode step was measured
    assert kv_bytes / 2 < max(held) < 2 * kv_bytes
