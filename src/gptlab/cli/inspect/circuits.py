"""Circuits read from the weights alone: `circuits` (one head's OV and QK circuits) and
`composition` (Q-, K- and V-composition between heads of different layers)."""

from __future__ import annotations

import argparse

from gptlab.cli.common import load_model_from_args
from gptlab.cli.inspect.common import add_top_k, out_dir, positive_int, report_files, write_json


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


def circuits_main(args: argparse.Namespace) -> int:
    """OV and QK circuits of one head: top tokens, copying scores and heatmaps."""
    from gptlab.interp.circuits import (
        check_circuit_model,
        check_qk_circuit_model,
        circuit_files,
        source_tokens,
        token_map_table,
        top_tokens,
    )
    from gptlab.interp.indices import check_head, check_layer

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


def composition_main(args: argparse.Namespace) -> int:
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
            write_json(directory / "composition.json", data),
        ]
    )
    return 0


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("circuits", circuits_arguments, circuits_main),
    ("composition", composition_arguments, composition_main),
]
