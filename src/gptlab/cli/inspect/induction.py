"""Induction and other head behaviours on repeated random tokens: `heads` (score every head as
a previous-token, duplicate-token or induction head) and `loss` (the loss per position, the
repeats' drop, and how much of it some heads carry)."""

from __future__ import annotations

import argparse

from gptlab.cli.common import load_model_from_args, seed_arg
from gptlab.cli.inspect.common import (
    add_top_k,
    load,
    out_dir,
    positive_int,
    report_files,
    write_json,
)
from gptlab.errors import GptlabError

# Random tokens per copy unless --length says otherwise: long enough for a steady score, short
# enough that two copies fit the smallest models.
DEFAULT_LENGTH = 32


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
    parser.add_argument("--seed", type=seed_arg, default=0, help="which random tokens (default 0)")


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


def heads_main(args: argparse.Namespace) -> int:
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
    from gptlab.interp.indices import check_head, check_layer

    heads: dict[int, list[int]] = {}
    for spec in specs:
        layer, dot, head = spec.partition(".")
        if not dot or not layer.lstrip("-").isdigit() or not head.lstrip("-").isdigit():
            raise GptlabError(f"--ablate {spec!r} is not LAYER.HEAD, e.g. --ablate 1.2")
        layer, head = check_layer(model, int(layer)), check_head(model, int(head))
        heads.setdefault(layer, []).append(head)
    return heads


def loss_main(args: argparse.Namespace) -> int:
    """Loss at each position of a prompt, or of repeated random tokens (first copy vs repeats)."""
    from gptlab.interp.induction import (
        ablated_repeated_loss,
        prompt_loss,
        prompt_loss_table,
        repeated_loss_table,
        repeated_tokens_loss,
        save_position_loss_plot,
    )

    directory = out_dir(args)
    if args.prompt is not None:
        model, _, idx, tokens = load(args, min_tokens=2)
        if args.ablate:
            raise GptlabError("--ablate works with repeated random tokens; leave out --prompt")
        result = prompt_loss(model, idx, tokens)
        print(prompt_loss_table(result))
        data = result.to_dict()
        picture = save_position_loss_plot(
            directory / "loss.png", result.position_loss, f"loss per position: {args.prompt[:50]!r}"
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
            ablated = ablated_repeated_loss(
                model, result, parse_heads(model, args.ablate), tokenizer.eot_id
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


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("heads", heads_arguments, heads_main),
    ("loss", loss_arguments, loss_main),
]
