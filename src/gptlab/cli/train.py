"""`gptlab train`: train a model from a preset, a TOML file and key=value overrides."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gptlab.cli.common import add_threads_arg, run_overrides
from gptlab.errors import GptlabError

EXAMPLES = """\
examples:
  gptlab train                                   char-level TinyShakespeare, about 90 s on a laptop CPU
  gptlab train --preset small-bpe data.source=fineweb.jsonl
  gptlab train --config my.toml train.lr=3e-4 model.n_layer=6 --out runs/deeper
  gptlab train --out runs/deeper --resume        continue from the latest checkpoint
  torchrun --nproc_per_node=8 -m gptlab train --preset gpt2 --out runs/gpt2
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: char-level TinyShakespeare)",
        description="Train a GPT. Settings come from a preset (default shakespeare-char), then a TOML "
        "file, then section.key=value overrides. The run folder gets config.toml, metrics.jsonl, "
        "loss.png, samples.txt and checkpoints/.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="a run config (e.g. a copy of configs/*.toml or RUN/config.toml)",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="a named preset (see --list-presets); default shakespeare-char",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="the run folder (default: runs/NAME-DATE-TIME)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --out and start again"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as TOML and exit"
    )
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    add_threads_arg(parser, default=None)  # passed on as train.threads, kept in config.toml
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="e.g. train.lr=1e-3 model.n_layer=6 train.max_steps=none",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gptlab.presets import preset_names
    from gptlab.train.config import DEFAULT_PRESET, build_run_config

    if args.list_presets:
        print("\n".join(preset_names()))
        return 0
    config_file = args.config
    if args.resume and config_file is None and args.preset is None:
        # Resuming without naming a config means: the run's own config (plus any overrides).
        if args.out is None:
            raise GptlabError("--resume needs --out DIR, the run folder to continue")
        from gptlab.train.run_folder import RUN_CONFIG_FILE

        config_file = Path(args.out) / RUN_CONFIG_FILE
        if not config_file.is_file():
            raise GptlabError(f"nothing to resume: {args.out} holds no {RUN_CONFIG_FILE}")
    config = build_run_config(
        preset=args.preset, config_file=config_file, overrides=run_overrides(args)
    )
    if args.print_config:
        print(config.to_toml())
        return 0

    out = args.out
    if out is None:
        from gptlab.train.distributed import launched_by_torchrun

        if launched_by_torchrun():
            raise GptlabError(
                "with torchrun, give the run folder explicitly (--out DIR), the same on every process"
            )
        name = args.preset or (Path(args.config).stem if args.config else DEFAULT_PRESET)
        out = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

    from gptlab.train import train

    train(config, out, resume=args.resume, overwrite=args.overwrite)
    return 0
