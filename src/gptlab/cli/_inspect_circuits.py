"""The circuit-hunting tools of `gptlab inspect`: head detectors, loss per position, weight-based
circuits and composition, and the prompt-set tools (attribution and ablation on the logit
difference, patching at every site, path patching, attribution patching). Registered through
cli/inspect.py's TOOLS list."""

from __future__ import annotations

import argparse

from gptlab.cli._inspect_plumbing import (
    add_top_k,
    json_safe,
    load,
    out_dir,
    positive_int,
    report_files,
    write_json,
)
from gptlab.cli.common import load_model_from_args, seed_arg
from gptlab.errors import GptlabError

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
    parser.add_argument("--seed", type=seed_arg, default=0, help="which random tokens (default 0)")


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
        check_qk_circuit_model,
        circuit_files,
        source_tokens,
        token_map_table,
        top_tokens,
    )
    from gptlab.interp.tokens import check_head, check_layer

    model, tokenizer = load_model_from_args(args)
    check_circuit_model(model)
    check_qk_circuit_model(model)  # the tool shows both circuits: refused before any work
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
    parser.add_argument("--seed", type=seed_arg, default=0, help="which IOI names (default 0)")


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
    files.append(write_json(directory / "patch_sites.json", json_safe(data)))
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
            write_json(directory / "attribution_patching.json", json_safe(result.to_dict())),
        ]
    )
    return 0


# (name, add its arguments, run it), appended to cli/inspect.py's TOOLS.
CIRCUIT_TOOLS = [
    ("heads", heads_arguments, run_heads),
    ("loss", loss_arguments, run_loss),
    ("circuits", circuits_arguments, run_circuits),
    ("composition", composition_arguments, run_composition),
    ("prompt-set", prompt_set_arguments, run_prompt_set),
    ("patch-sites", patch_sites_arguments, run_patch_sites),
    ("path-patch", path_patch_arguments, run_path_patch),
    ("attribution-patch", attribution_patch_arguments, run_attribution_patch),
]
