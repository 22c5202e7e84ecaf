"""`gptlab sae train|eval|features|export`: sparse autoencoders on a model's activations."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gptlab.cli.common import add_threads_arg, check_output_file

EXAMPLES = """\
examples:
  gptlab sae train runs/my-run --hook blocks.1.hook_resid_post --features 2048 --k 32 --out runs/sae
  gptlab sae train runs/my-run --out runs/sae kind=relu l1_coefficient=5 tokens=2e6
  gptlab sae train --out runs/sae --resume          continue a killed run from its checkpoint
  gptlab sae eval runs/sae                          L0, variance explained, loss recovered, dead/dense
  gptlab sae features runs/sae --top 20             each feature: top contexts, density, logit effect
  gptlab sae features runs/sae --export features.html
  gptlab sae ablate runs/sae --feature 417 --prompt "ROMEO:"
  gptlab sae export runs/sae --out runs/sae-saelens   SAELens' cfg.json + sae_weights.safetensors
"""

# Flags that map onto SaeOptions fields (the rest are how to run, not what to train).
OPTION_FLAGS = ("model", "out", "hook", "features", "k", "kind", "tokens", "data")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sae",
        help="sparse autoencoders: train, evaluate, read features, export",
        description="Train a sparse autoencoder on a model's activations at one hook point, "
        "measure it, and read what its features respond to.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="sae_verb", metavar="VERB")
    verbs.required = True

    train = verbs.add_parser(
        "train",
        help="train an SAE on activations streamed from a model",
        description="Settings: defaults, then --config FILE.toml, then the flags, then KEY=VALUE "
        "(every setting and its default: --print-options).",
    )
    train.add_argument("model", nargs="?", metavar="RUN", help="a training run or model folder")
    train.add_argument(
        "--hook", help="hook point (default blocks.1.hook_resid_post; docs/hooks.md)"
    )
    train.add_argument("--features", type=int, metavar="N", help="dictionary width (default 2048)")
    train.add_argument("--k", type=int, metavar="K", help="topk: active features per token (32)")
    train.add_argument("--kind", choices=("topk", "relu"), help="topk (default) or relu (+ L1)")
    train.add_argument("--tokens", type=float, metavar="N", help="training budget in activations")
    train.add_argument("--data", metavar="DIR", help="a prepared folder (default: the run's data)")
    train.add_argument("--out", metavar="DIR", help="the SAE folder (default runs/sae-DATE-TIME)")
    train.add_argument("--config", metavar="FILE.toml", help="settings as `key = value` lines")
    train.add_argument("--resume", action="store_true", help="continue --out from its checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    train.add_argument(
        "--print-options", action="store_true", help="print the resolved settings as TOML and exit"
    )
    add_threads_arg(train)
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. lr=3e-4 seed=1")
    train.set_defaults(func=train_main)

    evaluate = verbs.add_parser(
        "eval",
        help="L0, variance explained, loss recovered, dead and dense features on held-out tokens",
    )
    evaluate.add_argument("sae", metavar="SAE_DIR")
    evaluate.add_argument(
        "--tokens", type=int, default=65_536, metavar="N", help="held-out tokens (default 65,536)"
    )
    evaluate.add_argument("--split", default="val", help="split of the data (default val)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads_arg(evaluate)
    evaluate.set_defaults(func=eval_main)

    features = verbs.add_parser(
        "features",
        help="what each feature responds to: top contexts, density, histogram, logit effect",
    )
    features.add_argument("sae", metavar="SAE_DIR")
    features.add_argument(
        "--top", type=int, default=10, metavar="N", help="contexts shown per feature (default 10)"
    )
    features.add_argument(
        "--feature", type=int, action="append", metavar="ID", help="show this feature (repeatable)"
    )
    features.add_argument(
        "--limit", type=int, default=10, metavar="N", help="features shown without --feature (10)"
    )
    features.add_argument(
        "--tokens", type=int, default=131_072, metavar="N", help="tokens scanned (default 131,072)"
    )
    features.add_argument("--export", metavar="FILE.html", help="write every live feature's page")
    features.add_argument("--overwrite", action="store_true", help="replace --export's file")
    features.add_argument("--device", default="auto")
    add_threads_arg(features)
    features.set_defaults(func=features_main)

    ablate = verbs.add_parser(
        "ablate",
        help="zero one feature at its hook: the next-token distribution and loss, before and after",
    )
    ablate.add_argument("sae", metavar="SAE_DIR")
    ablate.add_argument("--feature", type=int, required=True, metavar="ID")
    ablate.add_argument("--prompt", required=True, help="the text to run")
    ablate.add_argument("--top", type=int, default=8, metavar="N", help="tokens listed (default 8)")
    ablate.add_argument("--device", default="auto")
    add_threads_arg(ablate)
    ablate.set_defaults(func=ablate_main)

    export = verbs.add_parser("export", help="write the SAE in SAELens' format")
    export.add_argument("sae", metavar="SAE_DIR")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(func=export_main)


def train_main(args) -> int:
    from gptlab.sae.options import load_sae_options
    from gptlab.sae.train import train_sae

    if args.model and "=" in args.model:  # `sae train k=8`: no RUN given, only overrides
        args.overrides, args.model = [args.model, *args.overrides], None
    given = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    if "tokens" in given:
        given["tokens"] = int(given["tokens"])
    config_file = args.config
    if args.resume and config_file is None and args.out:
        from gptlab.sae.folder import latest_checkpoint, read_checkpoint_state

        checkpoint = latest_checkpoint(Path(args.out))
        if checkpoint is not None:  # resuming without settings means: the run's own settings
            given = {**read_checkpoint_state(checkpoint)["options"], **given}
    options = load_sae_options(config_file, given, args.overrides, validate=False)
    options.out = options.out or time.strftime("runs/sae-%Y%m%d-%H%M%S")
    if args.print_options:
        options.model = options.model or "RUN"
        print(options.validate(check_paths=False).to_toml())
        return 0
    train_sae(options.validate(), resume=args.resume, overwrite=args.overwrite)
    return 0


def eval_main(args) -> int:
    import json

    from gptlab.sae.evaluate import evaluate_sae, format_report

    report = evaluate_sae(args.sae, tokens=args.tokens, split=args.split, device=args.device)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def features_main(args) -> int:
    from gptlab.sae.features import feature_report, load_or_scan

    out = (
        check_output_file(args.export, args.overwrite, "--export", "features.html")
        if args.export
        else None
    )
    if out is not None:
        refuse_export_over_inputs(out, args.sae)
    scan = load_or_scan(args.sae, tokens=args.tokens, device=args.device)
    if out is not None:
        from gptlab.sae.page import write_page

        write_page(scan, out, top=args.top)
        print(f"wrote {out}")
        return 0
    import sys

    report = feature_report(
        scan, features=args.feature, limit=args.limit, top=args.top, color=sys.stdout.isatty()
    )
    print(report)
    return 0


def refuse_export_over_inputs(out: Path, sae_dir: str) -> None:
    """--export may sit beside the SAE's files (features.html), never on one it reads, nor in
    the model it reads: --overwrite would replace them with the page."""
    from gptlab.fileio import refuse_overlap
    from gptlab.sae.features import SCAN_FILE
    from gptlab.sae.folder import CONFIG_FILE, WEIGHTS_FILE, read_sae_config

    folder = Path(sae_dir)
    reads = {f"SAE's {name}": folder / name for name in (CONFIG_FILE, WEIGHTS_FILE, SCAN_FILE)}
    reads["SAE's model"] = read_sae_config(folder)["model"]
    refuse_overlap(out, reads, "--export")


def ablate_main(args) -> int:
    from gptlab.sae.intervene import ablate_feature, ablation_report

    print(
        ablation_report(ablate_feature(args.sae, args.feature, args.prompt, args.device), args.top)
    )
    return 0


def export_main(args) -> int:
    from gptlab.sae.folder import export_saelens

    out = export_saelens(args.sae, args.out, overwrite=args.overwrite)
    print(f"wrote {out} (SAELens: SAE.load_from_disk({str(out)!r}))")
    return 0
