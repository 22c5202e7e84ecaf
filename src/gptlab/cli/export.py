"""`gptlab export`: write a gptlab model as a Hugging Face GPT-2 folder (config.json +
model.safetensors), or with --format transformer-lens as a TransformerLens HookedTransformer
config + state dict (gptlab.model.transformer_lens)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptlab.errors import GptlabError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to Hugging Face GPT-2 format (GPT2LMHeadModel.from_pretrained loads it)",
        description="Write config.json and model.safetensors in the transformers GPT2LMHeadModel layout.",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="DIR",
        required=True,
        help="a gptlab model folder or training run folder",
    )
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="the folder to write (created if needed)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="write into --out even if it is not empty"
    )
    parser.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="hf",
        help="hf: a GPT2LMHeadModel folder (default); transformer-lens: config.json holding "
        "HookedTransformerConfig's arguments and model.safetensors in HookedTransformer's layout",
    )
    parser.set_defaults(func=main)


EXPORT_FORMATS = ("hf", "transformer-lens")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GptlabError(f"--out {out} is a file, not a folder")
    from gptlab.checkpoints.run import refuse_in_run_folder
    from gptlab.fileio import refuse_overlap

    # An export is not a gptlab model folder: written over the one it reads (or a run's
    # checkpoint) it would leave a model gptlab cannot load.
    refuse_overlap(out, {"--checkpoint": args.checkpoint}, "--out")
    refuse_in_run_folder(out, "--out")  # the command line names the setting by its flag
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise GptlabError(f"--out {out} is not empty; choose another folder or pass --overwrite")

    from gptlab.checkpoints.load import load_model
    from gptlab.fileio import removed_on_failure

    model, tokenizer = load_model(args.checkpoint, device="cpu")
    if args.format == "transformer-lens":
        from gptlab.model.transformer_lens import export_transformer_lens

        with removed_on_failure(out):
            export_transformer_lens(model, out)
        print(
            f"exported {model.num_parameters():,} parameters to {out} for TransformerLens: "
            "HookedTransformer(HookedTransformerConfig(**json.load(open('config.json')))) then "
            "load_state_dict(safetensors.torch.load_file('model.safetensors'), strict=False)"
        )
        return 0
    from gptlab.model.hf import export_hf

    with removed_on_failure(out):
        export_hf(model, out, tokenizer)
    print(
        f"exported {model.num_parameters():,} parameters to {out} "
        f"(load it with transformers.GPT2LMHeadModel.from_pretrained({str(out)!r}))"
    )
    return 0
