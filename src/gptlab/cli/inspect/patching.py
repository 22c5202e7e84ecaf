"""Activation patching: `patch` (one clean/corrupted pair, by layer/position and by head),
`patch-sites` (a prompt set at every site), `path-patch` (earlier heads into one receiver) and
`attribution-patch` (the one-backward-pass estimate, checked against real patching)."""

from __future__ import annotations

import argparse

from gptlab.cli.inspect.common import (
    add_prompt,
    add_prompt_set,
    add_top_k,
    load,
    load_prompt_set_args,
    out_dir,
    report_files,
    write_json,
)


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


def patch_main(args: argparse.Namespace) -> int:
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


def patch_sites_main(args: argparse.Namespace) -> int:
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
    files.append(write_json(directory / "patch_sites.json", data))
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


def path_patch_main(args: argparse.Namespace) -> int:
    """Path patching from every earlier head into one receiver head's q, k or v."""
    from gptlab.interp.indices import check_head, check_layer
    from gptlab.interp.patching_sites import path_patching, save_site_heatmap, site_table

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
            write_json(directory / "path_patching.json", result.to_dict()),
        ]
    )
    return 0


def attribution_patch_arguments(parser: argparse.ArgumentParser) -> None:
    add_prompt_set(parser)
    add_top_k(parser, 8)


def attribution_patch_main(args: argparse.Namespace) -> int:
    """Attribution patching of every head (one backward pass), checked against real patching."""
    from gptlab.interp.patching_sites import (
        compare_attribution_patching,
        save_site_heatmap,
        site_table,
    )

    model, _, prompts = load_prompt_set_args(args)
    result = compare_attribution_patching(model, prompts)
    print(
        "Spearman rank correlation, estimate vs real patching over all heads: "
        + (
            f"{result.rank_correlation:.3f}"
            if result.rank_correlation == result.rank_correlation  # not NaN
            else "undefined (the estimates or the patches all score the same)"
        )
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
            write_json(directory / "attribution_patching.json", result.to_dict()),
        ]
    )
    return 0


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("patch", patch_arguments, patch_main),
    ("patch-sites", patch_sites_arguments, patch_sites_main),
    ("path-patch", path_patch_arguments, path_patch_main),
    ("attribution-patch", attribution_patch_arguments, attribution_patch_main),
]
