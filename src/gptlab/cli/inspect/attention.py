"""`gptlab inspect attention`: every head's attention pattern as a PNG grid and an HTML browser."""

from __future__ import annotations

import argparse

from gptlab.cli.inspect.common import add_prompt, load, out_dir, report_files


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


def attention_main(args: argparse.Namespace) -> int:
    """Attention heatmaps (PNG grid) and an offline HTML browser of every layer and head."""
    from gptlab.interp.attention import (
        attention_patterns,
        attention_summary_table,
        save_attention_grid,
    )
    from gptlab.interp.attention_html import check_page_size, save_attention_html
    from gptlab.interp.indices import check_head, check_layer

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


# (name, add its arguments, its main); each main function's docstring is the tool's help line.
TOOLS = [
    ("attention", attention_arguments, attention_main),
]
