"""`gptlab inspect TOOL`: look inside a model, print tables, write pictures and data files.

Tools: attention, logit-lens, attribute, ablate, patch, test-prompt, neighbors. Each one loads a
model (--checkpoint | --hf | --preset), runs one function from gptlab.interp and writes its files
(PNG, HTML, JSON) into --out (default ./inspect_out/TOOL).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.cli.common import add_model_source_args, load_model_from_args
from gptlab.errors import GptlabError

DEFAULT_OUT_ROOT = Path("inspect_out")


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
        tool.set_defaults(func=run)


# ---- shared plumbing ---------------------------------------------------------------------------


def out_dir(args: argparse.Namespace) -> Path:
    directory = Path(args.out) if args.out else DEFAULT_OUT_ROOT / args.tool
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_json(path: Path, data: dict) -> Path:
    from gptlab.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False))
    return path


def report_files(paths: list[Path]) -> None:
    print("\nwrote:")
    for path in paths:
        print(f"  {path}")


def load(args: argparse.Namespace, min_tokens: int = 1):
    """(model, tokenizer, idx (1, T), token labels) for --prompt."""
    from gptlab.interp.tokens import encode_prompt, token_labels

    model, tokenizer = load_model_from_args(args)
    idx = encode_prompt(model, tokenizer, args.prompt, min_tokens=min_tokens)
    return model, tokenizer, idx, token_labels(tokenizer, idx[0].tolist())


def add_prompt(
    parser: argparse.ArgumentParser, help_text: str = "the text to run through the model"
) -> None:
    parser.add_argument("--prompt", required=True, metavar="TEXT", help=help_text)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_top_k(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=default,
        metavar="K",
        help=f"how many to list (default {default})",
    )


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
            save_ablation_heatmap(directory / "heads.png", result),
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
    files.append(write_json(directory / "patching.json", data))
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


# ---- heads (detectors) --------------------------------------------------------------------------


def add_repeated_tokens(parser: argparse.ArgumentParser, batch: int) -> None:
    """--length, --repeats, --batch, --seed: the repeated random sequences a tool runs on."""
    parser.add_argument(
        "--length",
        type=positive_int,
        metavar="N",
        help=f"random tokens per copy (default {DEFAULT_LENGTH}, or fewer if the copies would "
        "not fit the model's block_size)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=2, metavar="N", help="copies (default 2)"
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=batch,
        metavar="N",
        help=f"random sequences averaged over (default {batch})",
    )
    parser.add_argument("--seed", type=int, default=0, help="which random tokens (default 0)")


# Random tokens per copy unless --length says otherwise: long enough for a steady score, short
# enough that two copies fit the smallest models.
DEFAULT_LENGTH = 32


def repeated_length(args: argparse.Namespace, model) -> int:
    """--length, or the default shortened so that --repeats copies fit the model's block_size."""
    if args.length is not None:
        return args.length
    return min(DEFAULT_LENGTH, model.config.block_size // args.repeats)


def heads_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detect",
        default="previous-token,duplicate-token,induction",
        metavar="NAMES",
        help="comma-separated detectors: previous-token, duplicate-token, induction "
        "(default: all three)",
    )
    parser.add_argument(
        "--pattern",
        metavar="FILE",
        help="also score a custom target: a JSON (T, T) list of lists, T = length x repeats",
    )
    add_repeated_tokens(parser, batch=8)
    add_top_k(parser, 10)


def run_heads(args: argparse.Namespace) -> int:
    """Score every head as a previous-token, duplicate-token or induction head (or a custom pattern)."""
    from gptlab.interp.detectors import (
        detect_heads,
        detector_table,
        load_target_pattern,
        parse_detectors,
        save_detector_heatmaps,
    )
    from gptlab.interp.induction import repeated_random_tokens

    detectors = parse_detectors(args.detect)
    model, tokenizer = load_model_from_args(args)
    length = repeated_length(args, model)
    idx = repeated_random_tokens(
        model, length, args.repeats, args.batch, args.seed, tokenizer.eot_id
    )
    custom = None if args.pattern is None else load_target_pattern(args.pattern, idx.shape[1])
    scores = detect_heads(model, idx, detectors, custom)
    print(
        f"{args.batch} random sequences of {length} tokens x {args.repeats} copies "
        f"(seed {args.seed}); top {args.top_k} heads by the {list(scores)[-1]} score:"
    )
    print(detector_table(scores, args.top_k))
    directory = out_dir(args)
    data = {
        "sequences": {
            "length": length,
            "repeats": args.repeats,
            "batch": args.batch,
            "seed": args.seed,
        },
        **{name: values.tolist() for name, values in scores.items()},
    }
    report_files(
        [
            save_detector_heatmaps(directory / "heads.png", scores),
            write_json(directory / "heads.json", data),
        ]
    )
    return 0


# ---- loss per position ---------------------------------------------------------------------------


def loss_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt",
        metavar="TEXT",
        help="the loss at each position of this text (default: repeated random tokens)",
    )
    add_repeated_tokens(parser, batch=16)
    parser.add_argument(
        "--ablate",
        action="append",
        metavar="L.H",
        help="also measure with head H of layer L zero-ablated (repeatable: all at once)",
    )


def parse_heads(model, specs: list[str]) -> dict[int, list[int]]:
    """["1.2", "0.3"] -> {1: [2], 0: [3]}, each layer and head checked."""
    from gptlab.interp.tokens import check_head, check_layer

    heads: dict[int, list[int]] = {}
    for spec in specs:
        layer, dot, head = spec.partition(".")
        if not dot or not layer.lstrip("-").isdigit() or not head.lstrip("-").isdigit():
            raise GptlabError(f"--ablate {spec!r} is not LAYER.HEAD, e.g. --ablate 1.2")
        layer, head = check_layer(model, int(layer)), check_head(model, int(head))
        heads.setdefault(layer, []).append(head)
    return heads


def run_loss(args: argparse.Namespace) -> int:
    """Loss at each position of a prompt, or of repeated random tokens (first copy vs repeats)."""
    from gptlab.interp.ablation import ablation_hooks
    from gptlab.interp.induction import (
        per_position_loss,
        repeated_loss_table,
        repeated_tokens_loss,
        save_position_loss_plot,
    )
    from gptlab.tables import format_table, quoted

    directory = out_dir(args)
    if args.prompt is not None:
        model, _, idx, tokens = load(args, min_tokens=2)
        if args.ablate:
            raise GptlabError("--ablate works with repeated random tokens; leave out --prompt")
        losses = per_position_loss(model, idx)[0]
        rows = [[t + 1, quoted(tokens[t + 1]), float(loss)] for t, loss in enumerate(losses)]
        print(format_table(["position", "token", "loss"], rows))
        print(f"mean loss {float(losses.mean()):.4f} over {len(losses)} predicted tokens")
        data = {
            "tokens": tokens,
            "position_loss": losses.tolist(),
            "mean_loss": float(losses.mean()),
        }
        picture = save_position_loss_plot(
            directory / "loss.png", losses, f"loss per position: {args.prompt[:50]!r}"
        )
    else:
        model, tokenizer = load_model_from_args(args)
        length = repeated_length(args, model)
        result = repeated_tokens_loss(
            model, length, args.repeats, args.batch, args.seed, tokenizer.eot_id
        )
        print(repeated_loss_table(result))
        data = result.to_dict()
        lines = {"loss": result.position_loss}
        if args.ablate:
            hooks = ablation_hooks(parse_heads(model, args.ablate), "zero")
            ablated = repeated_tokens_loss(
                model, length, args.repeats, args.batch, args.seed, tokenizer.eot_id, hooks
            )
            heads = ", ".join("L{}H{}".format(*spec.split(".")) for spec in args.ablate)
            print(
                f"\nwith {heads} zero-ablated: first copy {ablated.first_loss:.4f}, repeats "
                f"{ablated.repeated_loss:.4f} (was {result.repeated_loss:.4f})"
            )
            data["ablated"] = {"heads": args.ablate, **ablated.to_dict()}
            lines = {"clean": result.position_loss, f"{heads} zero-ablated": ablated.position_loss}
        picture = save_position_loss_plot(
            directory / "loss.png",
            lines,
            f"loss per position, {length} random tokens x {args.repeats} "
            f"(first copy {result.first_loss:.2f}, repeats {result.repeated_loss:.2f})",
            boundaries=[length * k for k in range(1, args.repeats)],
        )
    report_files([picture, write_json(directory / "loss.json", data)])
    return 0


# ---- circuits (OV / QK of one head) and composition -------------------------------------------


def circuits_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", type=int, required=True, metavar="N", help="the head's layer")
    parser.add_argument("--head", type=int, required=True, metavar="N", help="the head")
    parser.add_argument(
        "--tokens",
        metavar="TEXT",
        help="the source tokens to show, as text (default: up to 20 tokens spread over the "
        "vocabulary)",
    )
    parser.add_argument(
        "--positions",
        type=positive_int,
        default=32,
        metavar="N",
        help="positions in the positional QK picture (default 32, at most block_size)",
    )
    add_top_k(parser, 5)


def run_circuits(args: argparse.Namespace) -> int:
    """OV and QK circuits of one head: top tokens, copying scores and heatmaps."""
    from gptlab.interp.circuits import (
        check_circuit_model,
        circuit_files,
        source_tokens,
        token_map_table,
        top_tokens,
    )
    from gptlab.interp.tokens import check_head, check_layer

    model, tokenizer = load_model_from_args(args)
    check_circuit_model(model)
    layer, head = check_layer(model, args.layer), check_head(model, args.head)
    sources = source_tokens(model, tokenizer, args.tokens)
    data = {}
    for kind in ("ov", "qk"):
        result = top_tokens(model, layer, head, kind, sources, args.top_k)
        print(token_map_table(result, tokenizer) + "\n")
        data[kind] = result.to_dict(tokenizer)
    directory = out_dir(args)
    files = circuit_files(directory, model, tokenizer, layer, head, sources, args.positions)
    files.append(write_json(directory / "circuits.json", data))
    report_files(files)
    return 0


def composition_arguments(parser: argparse.ArgumentParser) -> None:
    add_top_k(parser, 5)


def run_composition(args: argparse.Namespace) -> int:
    """Q-, K- and V-composition scores between heads of different layers (Elhage et al. 2021)."""
    from gptlab.interp.circuits import (
        composition_scores,
        composition_table,
        save_composition_heatmaps,
    )

    model, _ = load_model_from_args(args)
    scores = composition_scores(model)
    print(composition_table(scores, args.top_k))
    directory = out_dir(args)
    data = {kind: values.tolist() for kind, values in scores.items()}
    data["layout"] = "[earlier layer][earlier head][later layer][later head]; NaN: no composition"
    report_files(
        [
            save_composition_heatmaps(directory / "composition.png", scores),
            write_json(directory / "composition.json", json_safe(data)),
        ]
    )
    return 0


def json_safe(value):
    """NaN and infinities as null: JSON has no NaN (json.dumps would write invalid JSON)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


# ---- prompt sets: attribution and ablation, patching sites, path and attribution patching ------


def add_prompt_set(parser: argparse.ArgumentParser) -> None:
    """--prompts FILE | --ioi N (with --template, --seed): the prompt set a tool averages over."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--prompts",
        metavar="FILE",
        help="a JSONL prompt set: one {clean, corrupted, answer, wrong} object per line",
    )
    source.add_argument(
        "--ioi",
        type=positive_int,
        metavar="N",
        help="N generated IOI prompts with names that are single tokens in the model's tokenizer",
    )
    parser.add_argument(
        "--template", type=int, default=0, metavar="I", help="which IOI template (default 0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which IOI names (default 0)")


def load_prompt_set_args(args: argparse.Namespace):
    """(model, tokenizer, prompt set) from the model options and add_prompt_set's options."""
    from gptlab.interp.prompt_sets import ioi_prompt_set, load_prompt_set

    model, tokenizer = load_model_from_args(args)
    if args.prompts is not None:
        prompts = load_prompt_set(model, tokenizer, args.prompts)
    else:
        prompts = ioi_prompt_set(model, tokenizer, args.ioi, args.template, args.seed)
    print(f"{len(prompts)} prompts of {prompts.clean.shape[1]} tokens, e.g. {prompts.texts[0]}")
    return model, tokenizer, prompts


def prompt_set_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    parser.add_argument(
        "--mode", choices=("zero", "mean"), default="mean", help="ablation (default mean)"
    )
    add_top_k(parser, 8)


def run_prompt_set(args: argparse.Namespace) -> int:
    """Direct logit attribution and head ablation averaged over a prompt set, on the logit difference."""
    from gptlab.interp.set_metrics import (
        head_grid_heatmap,
        head_grid_table,
        set_head_ablation,
        set_logit_attribution,
    )

    model, _, prompts = load_prompt_set_args(args)
    attribution = set_logit_attribution(model, prompts)
    ablation = set_head_ablation(model, prompts, args.mode)
    print(
        f"mean logit difference {attribution.logit_diff:.4f} "
        f"(sum of attribution terms {attribution.total():.4f})\n"
    )
    print("direct logit attribution per head, largest first:")
    print(head_grid_table(attribution.heads, "mean logit diff", args.top_k))
    print(f"\n{args.mode}-ablating each head, largest change first:")
    print(head_grid_table(ablation.change, "change in logit diff", args.top_k))
    directory = out_dir(args)
    report_files(
        [
            head_grid_heatmap(
                directory / "attribution.png",
                attribution.heads,
                f"direct logit attribution of the logit difference ({len(prompts)} prompts)",
                "mean logit difference",
            ),
            head_grid_heatmap(
                directory / "ablation.png",
                ablation.change,
                f"{args.mode}-ablation: change in logit difference (clean "
                f"{ablation.clean_logit_diff:.3f})",
                "change in mean logit difference",
            ),
            write_json(
                directory / "prompt_set.json",
                {
                    "prompts": prompts.texts,
                    "attribution": attribution.to_dict(),
                    "ablation": ablation.to_dict(),
                },
            ),
        ]
    )
    return 0


def patch_sites_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    # Checked by gptlab.interp.patching_sites.check_site when the tool runs (importing it here
    # would load torch for every `gptlab --help`).
    parser.add_argument(
        "--site",
        action="append",
        metavar="SITE",
        help="where to patch (repeatable; default all): resid_pre, resid_mid, attn_out, mlp_out, "
        "z, z_position, q, k, v or pattern",
    )
    add_top_k(parser, 8)


def run_patch_sites(args: argparse.Namespace) -> int:
    """Activation patching over a prompt set at resid_pre/mid, attn_out, mlp_out, z, q, k, v, pattern."""
    from gptlab.interp.patching_sites import (
        SITES,
        check_site,
        patch_site,
        save_site_heatmap,
        site_table,
    )
    from gptlab.interp.tokens import token_labels

    sites = [check_site(site) for site in args.site] if args.site else list(SITES)
    model, tokenizer, prompts = load_prompt_set_args(args)
    tokens = token_labels(tokenizer, prompts.clean[0].tolist())
    directory = out_dir(args)
    files, data = [], {"prompts": prompts.texts, "tokens": tokens}
    for site in sites:
        result = patch_site(model, prompts, site)
        print(f"\n{site}: clean {result.clean_metric:.4f}, corrupted {result.corrupted_metric:.4f}")
        print(site_table(result, args.top_k))
        files.append(save_site_heatmap(directory / f"{site}.png", result, tokens))
        data[site] = result.to_dict()
    files.append(write_json(directory / "patching.json", json_safe(data)))
    report_files(files)
    return 0


def path_patch_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    parser.add_argument("--layer", type=int, required=True, metavar="N", help="receiver's layer")
    parser.add_argument("--head", type=int, required=True, metavar="N", help="receiver head")
    parser.add_argument(
        "--input", choices=("q", "k", "v"), default="q", help="the receiver's input (default q)"
    )
    add_top_k(parser, 8)


def run_path_patch(args: argparse.Namespace) -> int:
    """Path patching from every earlier head into one receiver head's q, k or v."""
    from gptlab.interp.patching_sites import path_patching, save_site_heatmap, site_table
    from gptlab.interp.tokens import check_head, check_layer

    model, _, prompts = load_prompt_set_args(args)
    receiver = (check_layer(model, args.layer), check_head(model, args.head))
    result = path_patching(model, prompts, receiver, args.input)
    print(
        f"{result.site}: clean {result.clean_metric:.4f}, corrupted {result.corrupted_metric:.4f}"
    )
    print(site_table(result, args.top_k))
    directory = out_dir(args)
    report_files(
        [
            save_site_heatmap(directory / "path_patching.png", result),
            write_json(directory / "path_patching.json", json_safe(result.to_dict())),
        ]
    )
    return 0


def attribution_patch_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    add_top_k(parser, 8)


def run_attribution_patch(args: argparse.Namespace) -> int:
    """Attribution patching of every head (one backward pass), checked against real patching."""
    from gptlab.interp.patching_sites import (
        compare_attribution_patching,
        save_site_heatmap,
        site_table,
    )

    model, _, prompts = load_prompt_set_args(args)
    result = compare_attribution_patching(model, prompts)
    print(
        f"Spearman rank correlation, estimate vs real patching over all heads: {result.rank_correlation:.3f}"
    )
    print("\nestimate, most restoring first:")
    print(site_table(result.estimate, args.top_k))
    print("\nreal patching:")
    print(site_table(result.actual, args.top_k))
    directory = out_dir(args)
    report_files(
        [
            save_site_heatmap(directory / "estimate.png", result.estimate),
            save_site_heatmap(directory / "actual.png", result.actual),
            write_json(directory / "attribution_patching.json", json_safe(result.to_dict())),
        ]
    )
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
    ("heads", heads_arguments, run_heads),
    ("loss", loss_arguments, run_loss),
    ("circuits", circuits_arguments, run_circuits),
    ("composition", composition_arguments, run_composition),
    ("prompt-set", prompt_set_arguments, run_prompt_set),
    ("patch-sites", patch_sites_arguments, run_patch_sites),
    ("path-patch", path_patch_arguments, run_path_patch),
    ("attribution-patch", attribution_patch_arguments, run_attribution_patch),
]
