"""Instruction tuning: the exact template, -100 masking by hand, an end-to-end run, chat and merge."""

import io
import json

import pytest
import torch
from model_testing import save_tiny_gpt2_model

from gptlab.checkpoints.finetuned import load_finetuned
from gptlab.checkpoints.load import load_model
from gptlab.cli import main
from gptlab.finetune.examples import read_instructions
from gptlab.finetune.instruct import (
    EncodedExample,
    encode_example,
    format_prompt,
    inputs_and_targets,
)
from gptlab.finetune.instruct_job import finetune_instruct
from gptlab.finetune.options import InstructOptions
from gptlab.tokenizers.base import GPT2Tokenizer


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    return save_tiny_gpt2_model(tmp_path_factory.mktemp("tiny-gpt2"), block_size=160)


@pytest.fixture(scope="module")
def alpaca_slice(tmp_path_factory, shared_data):
    records = json.loads(
        (shared_data / "instruction_data_alpaca" / "instruction-data.json").read_text()
    )
    path = tmp_path_factory.mktemp("alpaca") / "slice.json"
    path.write_text(json.dumps(records[:24]))
    return path


def test_template_is_exactly_alpaca():
    assert format_prompt("Add 2 and 3.", "") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n"
    )
    assert format_prompt("Fix the grammar.", "He go home.").endswith(
        "### Instruction:\nFix the grammar.\n\n### Input:\nHe go home.\n\n### Response:\n"
    )


def test_masking_by_hand():
    # prompt [1, 2, 3] + response [4, 5] + end 9; prompt [6, 7] + response [8] + end 9; pad 0
    long = EncodedExample(ids=[1, 2, 3, 4, 5, 9], prompt_length=3)
    short = EncodedExample(ids=[6, 7, 8, 9], prompt_length=2)
    inputs, targets = inputs_and_targets([long, short], pad_id=0)
    assert inputs.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]
    assert targets.tolist() == [[-100, -100, 4, 5, 9], [-100, 8, 9, -100, -100]]
    _, kept = inputs_and_targets([long, short], pad_id=0, keep_prompt_loss=True)
    assert kept.tolist() == [[2, 3, 4, 5, 9], [7, 8, 9, -100, -100]]


def test_prompt_length_matches_encoding_the_whole_text(shared_data):
    tokenizer = GPT2Tokenizer()
    for example in read_instructions(
        shared_data / "instruction_data_alpaca" / "instruction-data.json"
    )[:50]:
        encoded, cut = encode_example(tokenizer, example, max_length=1024)
        prompt = format_prompt(example.instruction, example.input)
        assert not cut
        assert encoded.ids == tokenizer.encode(prompt + example.output) + [tokenizer.eot_id]
        assert encoded.prompt_length == len(tokenizer.encode(prompt))


def test_long_examples_are_cut_to_max_length():
    tokenizer = GPT2Tokenizer()
    from gptlab.finetune.examples import InstructionExample

    encoded, cut = encode_example(
        tokenizer, InstructionExample("Say it.", "", "word " * 200), max_length=64
    )
    assert cut and len(encoded.ids) == 65  # 64 inputs and 64 targets


def test_instruct_end_to_end_chat_and_sample(
    tiny_gpt2_dir, alpaca_slice, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "alpaca"
    result = finetune_instruct(
        InstructOptions(
            data=str(alpaca_slice),
            init=str(tiny_gpt2_dir),
            out=str(out),
            epochs=2,
            lr=3e-3,
            batch_size=8,
            answers=2,
            max_new_tokens=4,
            device="cpu",
            val_fraction=0.1,
            test_fraction=0.1,
        ),
        log=lambda line: None,
    )
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    records = json.loads((out / "test_answers.json").read_text())
    assert len(records) == 2 and set(records[0]) == {
        "instruction",
        "input",
        "output",
        "model_response",
    }
    model, tokenizer = load_model(out)  # a standard model folder: sample/eval can use it
    assert model.config.n_embd == 16 and tokenizer.eot_id == 50256

    monkeypatch.setattr("sys.stdin", io.StringIO("Name a color.\nexit\nnever read\n"))
    assert main(["chat", "--checkpoint", str(out), "--max-new-tokens", "3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # one answer line, then the loop ended
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out),
                "--prompt",
                "Hi",
                "--max-new-tokens",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )


def test_lora_instruct_saves_the_adapter_alone_and_merges(tiny_gpt2_dir, alpaca_slice, tmp_path):
    out = tmp_path / "lora"
    finetune_instruct(
        InstructOptions(
            data=str(alpaca_slice),
            init=str(tiny_gpt2_dir),
            out=str(out),
            epochs=1,
            lr=1e-2,
            batch_size=8,
            answers=0,
            device="cpu",
            lora_rank=2,
            lora_alpha=4,
        ),
        log=lambda line: None,
    )
    assert (out / "adapter" / "adapter.safetensors").is_file() and not (
        out / "model.safetensors"
    ).exists()
    tokens = torch.tensor([[464, 3290, 318, 257]])
    adapted, _ = load_finetuned(out).body(tokens)
    base, _ = load_model(tiny_gpt2_dir)[0].eval()(tokens)
    assert not torch.allclose(adapted, base)  # the adapter learned something

    assert main(["finetune", "merge", "--checkpoint", str(out)]) == 0
    merged, _ = load_model(out)[0].eval()(tokens)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


def test_a_small_context_keeps_the_whole_instruction_and_shortens_the_answer(tiny_gpt2_dir):
    """block_size 160 < the default 256 new tokens: the answer is cut, never the prompt."""
    import dataclasses

    from gptlab.errors import GptlabError
    from gptlab.finetune.examples import InstructionExample
    from gptlab.finetune.instruct import answer_config, generate_answers, prompt_ids
    from gptlab.inference.generate import generate

    model, tokenizer = load_model(tiny_gpt2_dir)
    examples = [
        InstructionExample("Name a primary colour.", "", ""),
        InstructionExample("Translate to French.", "good morning", ""),
        InstructionExample("Repeat this.", "word " * 200, ""),  # the prompt alone fills the context
    ]
    config = answer_config(256)
    answers = generate_answers(model, tokenizer, examples, config, batch_size=1)
    for example, answer in zip(examples[:2], answers, strict=False):
        ids = prompt_ids(tokenizer, example.instruction, example.input, 160)
        assert tokenizer.decode(ids) == format_prompt(example.instruction, example.input)
        room = 160 - len(ids)
        (reference,) = generate(
            model, ids, dataclasses.replace(config, max_new_tokens=room), tokenizer=tokenizer
        )
        assert answer == reference.text.strip()
    assert answers[2] == ""
    with pytest.raises(GptlabError, match=r"the prompt is \d+ tokens and the model's context 160"):
        prompt_ids(tokenizer, examples[2].instruction, examples[2].input, 160)
