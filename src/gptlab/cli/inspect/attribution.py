"""Which heads matter for an output: `attribute` (direct logit attribution on one prompt),
`ablate` (the loss without each head) and `prompt-set` (both, averaged over a prompt set, on
the logit difference)."""

from __future__ import annotations

import argparse

from gptlab.cli.common import load_model_from_args
from gptlab.cli.inspect.common import (
    add_prompt,
    add_prompt_set,
    add_top_k,
    load,
    load_prompt_set_args,
    out_dir,
    positive_int,
    report_files,
    write_json,
)


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


def attribute_main(args: argparse.Namespace) -> int:
    """Direct logit attribution of a target token to each head, MLP and embedding."""
    from gptlab.interp.attribution import (
        attribution_table,
        direct_logit_attribution,
        save_attribution_plots,
    )
    from gptlab.interp.indices import check_position
    from gptlab.interp.tokens import single_token, token_label

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


def ablate_main(args: argparse.Namespace) -> int:
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


def prompt_set_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    parser.add_argument(
        "--mode", choices=("zero", "mean"), default="mean", help="ablation (default mean)"
    )
    add_top_k(parser, 8)


def prompt_set_main(args: argparse.Namespace) -> int:
    """Direct logit attribution and head ablation averaged over a prompt set, on the logit difference."""
    from gptlab.interp.set_metrics import (
        head_grid_table,
        set_head_ablation,
        set_logit_attribution,
    )
    from gptlab.plotting import head_grid_heatmap

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


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("attribute", attribute_arguments, attribute_main),
    ("ablate", ablate_arguments, ablate_main),
    ("prompt-set", prompt_set_arguments, prompt_set_main),
]
