"""`gptlab inspect TOOL`: look inside a model, print tables, write pictures and data files.

Tools: attention, logit-lens, attribute, ablate, patch, test-prompt, neighbors, and the circuit
tools of cli/_inspect_circuits.py (heads, loss, circuits, composition, prompt-set, patch-sites,
path-patch, attribution-patch). Each one loads a
model (--checkpoint | --hf | --preset), runs one function from gptlab.interp and writes its files
(PNG, HTML, JSON) into --out (default ./inspect_out/TOOL).
"""

from __future__ import annotations

import argparse

from gptlab.cli._inspect_circuits import CIRCUIT_TOOLS
from gptlab.cli._inspect_plumbing import (
    DEFAULT_OUT_ROOT,
    add_prompt,
    add_top_k,
    load,
    out_dir,
    positive_int,
    refusing_a_file_as_out,
    report_files,
    write_json,
)
from gptlab.cli.common import add_model_source_args, load_model_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="look inside a model: attention maps, logit lens, attribution, ablation, patching",
        description="Look inside a model: each TOOL prints tables and writes pictures and data files.",
    )
    tools = parser.add_subparsers(dest="tool", metavar="TOOL")
    tools.required = True
    for name, add_arguments, run in TOOLS:
        help_text = run.__doc__.rstrip(".")
        tool = tools.add_parser(name, help=help_text, description=run.__doc__)
        add_model_source_args(tool)
        tool.add_argument(
            "--out", metavar="DIR", help=f"where files go (default: {DEFAULT_OUT_ROOT}/{name})"
        )
        add_arguments(tool)
        tool.set_defaults(func=refusing_a_file_as_out(run))


# ---- attention ---------------------------------------------------------------------------------


def attention_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    parser.add_argument(
        "--layer",
        type=int,
        action="append",
        metavar="N",
        help="show only this layer (repeatable)",
    )
    parser.add_argument(
        "--head",
        type=int,
        action="append",
        metavar="N",
        help="show only this head (repeatable)",
    )


def run_attention(args: argparse.Namespace) -> int:
    """Attention heatmaps (PNG grid) and an offline HTML browser of every layer and head."""
    from gptlab.interp.attention import (
        attention_patterns,
        attention_summary_table,
        save_attention_grid,
    )
    from gptlab.interp.attention_html import check_page_size, save_attention_html
    from gptlab.interp.tokens import check_head, check_layer

    model, _, idx, tokens = load(args)
    layers = [check_layer(model, n) for n in args.layer] if args.layer else None
    heads = [check_head(model, n) for n in args.head] if args.head else None
    n_layers = len(layers) if layers else model.config.n_layer
    check_page_size(n_layers, len(heads) if heads else model.config.n_head, len(tokens))
    patterns = attention_patterns(model, idx)  # (n_layer, n_head, T, T)
    print(f"{len(tokens)} tokens: {tokens}")
    print(attention_summary_table(patterns, tokens, layers, heads))
    directory = out_dir(args)
    title = f"attention: {args.prompt[:60]}"
    report_files(
        [
            save_attention_grid(directory / "attention.png", patterns, tokens, layers, heads),
            save_attention_html(
                directory / "attention.html", patterns, tokens, title, layers, heads
            ),
        ]
    )
    return 0


# ---- logit lens ---------------------------------------------------------------------------------


def logit_lens_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    add_top_k(parser, 5)
    parser.add_argument(
        "--position",
        type=int,
        default=-1,
        help="which position's predictions to print (default -1: the last)",
    )


def run_logit_lens(args: argparse.Namespace) -> int:
    """Top-k next-token predictions decoded from every layer's residual stream."""
    from gptlab.interp.logit_lens import logit_lens, logit_lens_table, save_next_token_heatmap
    from gptlab.interp.tokens import check_position

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


# ---- attribute ---------------------------------------------------------------------------------


def attribute_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    parser.add_argument(
        "--target",
        metavar="TOKEN",
        help="the token whose logit to explain (default: the top prediction)",
    )
    parser.add_argument(
        "--position", type=int, default=-1, help="which position's logit (default -1: the last)"
    )
    add_top_k(parser, 15)


def run_attribute(args: argparse.Namespace) -> int:
    """Direct logit attribution of a target token to each head, MLP and embedding."""
    from gptlab.interp.attribution import (
        attribution_table,
        direct_logit_attribution,
        save_attribution_plots,
    )
    from gptlab.interp.tokens import check_position, single_token, token_label

    model, tokenizer, idx, tokens = load(args)
    position = check_position(len(tokens), args.position)
    target_id = None if args.target is None else single_token(tokenizer, args.target, "--target")
    result = direct_logit_attribution(model, idx, target_id, position)
    target = token_label(tokenizer, result.target_id)
    print(attribution_table(result, target, args.top_k))
    directory = out_dir(args)
    files = save_attribution_plots(directory, result, target)
    files.append(write_json(directory / "attribution.json", {"target": target, **result.to_dict()}))
    report_files(files)
    return 0


# ---- ablate -------------------------------------------------------------------------------------


def ablate_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT", help="measure the loss on this text")
    source.add_argument(
        "--data", metavar="PREPARED_DIR", help="measure the loss on batches of a prepared dataset"
    )
    parser.add_argument(
        "--mode",
        choices=("zero", "mean"),
        default="zero",
        help="replace a head's output by 0 or by its mean",
    )
    parser.add_argument("--split", default="val", help="dataset split with --data (default val)")
    parser.add_argument(
        "--batches",
        type=positive_int,
        default=4,
        metavar="N",
        help="batches with --data (default 4)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="sequences per batch with --data (default 8)",
    )
    parser.add_argument(
        "--block-size",
        type=positive_int,
        default=None,
        help="tokens per sequence with --data (default: the model's block_size, at most 256)",
    )
    parser.add_argument(
        "--data-seed", type=int, default=0, help="which random windows with --data (default 0)"
    )
    add_top_k(parser, 10)


def run_ablate(args: argparse.Namespace) -> int:
    """Zero- or mean-ablate each head in turn and measure the loss increase."""
    from gptlab.interp.ablation import (
        ablation_table,
        dataset_sample,
        head_ablation,
        prompt_batches,
        save_ablation_heatmap,
    )

    if args.prompt is not None:
        model, _, idx, _ = load(args, min_tokens=2)
        batches = prompt_batches(idx)
    else:
        model, tokenizer = load_model_from_args(args)
        batches = dataset_sample(
            model,
            args.data,
            args.split,
            args.batches,
            args.batch_size,
            args.block_size,
            args.data_seed,
            tokenizer=tokenizer,
        )
    result = head_ablation(model, batches, mode=args.mode)
    print(ablation_table(result, args.top_k))
    directory = out_dir(args)
    report_files(
        [
            save_ablation_heatmap(directory / "ablate_heads.png", result),
            write_json(directory / "ablation.json", result.to_dict()),
        ]
    )
    return 0


# ---- patch --------------------------------------------------------------------------------------


def patch_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser, "the clean prompt")
    parser.add_argument(
        "--corrupted",
        required=True,
        metavar="TEXT",
        help="the corrupted prompt (same number of tokens)",
    )
    parser.add_argument(
        "--answer", required=True, metavar="TOKEN", help="the clean prompt's answer (one token)"
    )
    parser.add_argument(
        "--wrong",
        metavar="TOKEN",
        help="the corrupted prompt's answer; metric = logit(answer) - logit(wrong) (default metric: p(answer))",
    )
    add_top_k(parser, 10)


def run_patch(args: argparse.Namespace) -> int:
    """Activation patching from a clean to a corrupted prompt, by layer/position and by head."""
    from gptlab.interp.patching import (
        activation_patching,
        answer_probability,
        check_same_length,
        logit_difference,
        patching_tables,
        save_patching_heatmaps,
    )
    from gptlab.interp.tokens import encode_prompt, single_token, token_labels

    model, tokenizer, clean, tokens = load(args)
    corrupted_ids = tokenizer.encode(args.corrupted)
    check_same_length(
        clean[0].tolist(), corrupted_ids, tokens, token_labels(tokenizer, corrupted_ids)
    )
    corrupted = encode_prompt(model, tokenizer, args.corrupted)
    answer_id = single_token(tokenizer, args.answer, "--answer")
    if args.wrong is not None:
        metric = logit_difference(answer_id, single_token(tokenizer, args.wrong, "--wrong"))
        metric_name = f"logit({args.answer!r}) - logit({args.wrong!r})"
    else:
        metric, metric_name = answer_probability(answer_id), f"p({args.answer!r})"
    result = activation_patching(model, clean, corrupted, metric)
    print(patching_tables(result, tokens, metric_name, args.top_k))
    directory = out_dir(args)
    files = save_patching_heatmaps(directory, result, tokens, metric_name)
    data = {"tokens": tokens, "metric": metric_name, **result.to_dict()}
    files.append(write_json(directory / "patch.json", data))
    report_files(files)
    return 0


# ---- test-prompt --------------------------------------------------------------------------------


def prompt_test_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt(parser)
    parser.add_argument(
        "--answer",
        required=True,
        metavar="TEXT",
        help="the expected continuation (GPT-2 words start with a space: ' Paris')",
    )
    add_top_k(parser, 10)


def run_test_prompt(args: argparse.Namespace) -> int:
    """Rank, probability and logit of an expected answer, plus the top-k alternatives."""
    from gptlab.interp.prompts import prompt_test_tables, rank_answer

    model, tokenizer = load_model_from_args(args)
    result = rank_answer(model, tokenizer, args.prompt, args.answer, k=args.top_k)
    print(prompt_test_tables(result))
    report_files([write_json(out_dir(args) / "test_prompt.json", result.to_dict())])
    return 0


# ---- neighbors ----------------------------------------------------------------------------------


def neighbors_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        required=True,
        metavar="TEXT",
        help="one token (GPT-2 words start with a space: ' king')",
    )
    add_top_k(parser, 10)


def run_neighbors(args: argparse.Namespace) -> int:
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


# (name, add its arguments, run it); each run function's docstring is the tool's help line.
TOOLS = [
    ("attention", attention_arguments, run_attention),
    ("logit-lens", logit_lens_arguments, run_logit_lens),
    ("attribute", attribute_arguments, run_attribute),
    ("ablate", ablate_arguments, run_ablate),
    ("patch", patch_arguments, run_patch),
    ("test-prompt", prompt_test_arguments, run_test_prompt),
    ("neighbors", neighbors_arguments, run_neighbors),
    *CIRCUIT_TOOLS,
]
