"""What the model predicts and how it embeds tokens: `logit-lens` (every layer's next-token
guess), `test-prompt` (the rank of an expected answer) and `neighbors` (nearest tokens in the
embedding)."""

from __future__ import annotations

import argparse

from gptlab.cli.common import load_model_from_args
from gptlab.cli.inspect.common import add_prompt, add_top_k, load, out_dir, report_files, write_json


def logit_lens_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    add_top_k(parser, 5)
    parser.add_argument(
        "--position",
        type=int,
        default=-1,
        help="which position's predictions to print (default -1: the last)",
    )


def logit_lens_main(args: argparse.Namespace) -> int:
    """Top-k next-token predictions decoded from every layer's residual stream."""
    from gptlab.interp.indices import check_position
    from gptlab.interp.logit_lens import logit_lens, logit_lens_table, save_next_token_heatmap

    model, tokenizer, idx, tokens = load(args)
    position = check_position(len(tokens), args.position)
    lens = logit_lens(model, idx, k=args.top_k)
    print(logit_lens_table(lens, tokenizer, tokens, position))
    directory = out_dir(args)
    files = [write_json(directory / "logit_lens.json", {"tokens": tokens, **lens.to_dict()})]
    if len(tokens) > 1:  # a one-token prompt has no next token to score
        files.append(save_next_token_heatmap(directory / "next_token_prob.png", lens, tokens))
    report_files(files)
    return 0


def prompt_test_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    parser.add_argument(
        "--answer",
        required=True,
        metavar="TEXT",
        help="the expected continuation (GPT-2 words start with a space: ' Paris')",
    )
    add_top_k(parser, 10)


def test_prompt_main(args: argparse.Namespace) -> int:
    """Rank, probability and logit of an expected answer, plus the top-k alternatives."""
    from gptlab.interp.prompts import prompt_test_tables, rank_answer

    model, tokenizer = load_model_from_args(args)
    result = rank_answer(model, tokenizer, args.prompt, args.answer, k=args.top_k)
    print(prompt_test_tables(result))
    report_files([write_json(out_dir(args) / "test_prompt.json", result.to_dict())])
    return 0


def neighbors_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        required=True,
        metavar="TEXT",
        help="one token (GPT-2 words start with a space: ' king')",
    )
    add_top_k(parser, 10)


def neighbors_main(args: argparse.Namespace) -> int:
    """Nearest tokens by cosine similarity in the token embedding."""
    from gptlab.interp.neighbors import nearest_tokens, neighbors_table
    from gptlab.interp.tokens import single_token, token_label

    model, tokenizer = load_model_from_args(args)
    token_id = single_token(tokenizer, args.token, "--token")
    neighbors = nearest_tokens(model, token_id, k=args.top_k)
    print(neighbors_table(tokenizer, token_id, neighbors))
    data = {
        "token": token_label(tokenizer, token_id),
        "token_id": token_id,
        "neighbors": [
            {"token": token_label(tokenizer, i), "id": i, "cosine": cosine}
            for i, cosine in neighbors
        ],
    }
    report_files([write_json(out_dir(args) / "neighbors.json", data)])
    return 0


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("logit-lens", logit_lens_arguments, logit_lens_main),
    ("test-prompt", prompt_test_arguments, test_prompt_main),
    ("neighbors", neighbors_arguments, neighbors_main),
]
