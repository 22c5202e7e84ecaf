"""`gptlab sample`: continue a prompt with a model, streaming the text as it is produced."""

from __future__ import annotations

import argparse
import contextlib
import sys


def register(subparsers) -> None:
    from gptlab.cli.common import add_model_source_args, seed_arg

    parser = subparsers.add_parser(
        "sample",
        help="continue a prompt with a model",
        description="Generate a continuation of --prompt and print it (only the continuation). "
        "Sampling is shaped by --temperature, --top-k, --top-p and --repetition-penalty; --greedy "
        "always takes the most likely token, so its output is deterministic.",
    )
    add_model_source_args(parser)
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=100,
        metavar="N",
        help="tokens to generate (default 100)",
    )
    parser.add_argument(
        "--greedy",
        action="store_true",
        help="take the most likely token every step (deterministic)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="> 1 flatter, < 1 sharper; 0 = greedy (default 1)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="sample only among the K most likely tokens",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        metavar="P",
        help="sample from the smallest set of tokens with probability >= P (default 1: off)",
    )
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        metavar="R",
        help="> 1 discourages tokens already in the text (default 1: off)",
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        default=1,
        metavar="N",
        help="how many continuations to generate (default 1)",
    )
    parser.add_argument(
        "--seed",
        type=seed_arg,
        default=None,
        metavar="S",
        help="random seed: the same seed gives the same text",
    )
    parser.add_argument(
        "--stop", nargs="+", default=[], metavar="STR", help="stop before any of these strings"
    )
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="print the text when it is complete, not as it comes",
    )
    sae = parser.add_argument_group("steering with a sparse autoencoder (gptlab sae train)")
    sae.add_argument("--sae", metavar="DIR", help="an SAE folder trained on this model")
    sae.add_argument(
        "--steer",
        action="append",
        default=[],
        metavar="ID:SCALE",
        help="add SCALE x feature ID's direction at the SAE's hook while sampling (repeatable)",
    )
    speed = parser.add_argument_group("speed (see `gptlab bench generate` for what each buys)")
    speed.add_argument(
        "--cache",
        choices=["dynamic", "static", "none"],
        default="dynamic",
        help="KV cache: growing (default), preallocated, or none (recompute the context)",
    )
    speed.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step (implies --cache static)",
    )
    speed.add_argument(
        "--dtype",
        default="fp32",
        help="weight/activation dtype: fp32 (default), bf16 or fp16 (float32, bfloat16, float16 "
        "also work; fp16 needs a GPU, on CPU fp32 is used)",
    )
    speed.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="int8 weights in every linear layer (CPU)",
    )
    speed.add_argument(
        "--draft",
        metavar="DIR",
        help="speculative decoding with this small model (same tokenizer; needs --greedy)",
    )
    speed.add_argument(
        "--draft-tokens",
        type=int,
        default=4,
        metavar="K",
        help="draft tokens per round (default 4)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import warnings

    # A switch that cannot apply here (fp16 on CPU, compile without a compiler) says so in one
    # line and decoding goes on without it.
    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=UserWarning, module=r"gptlab\.")
        warnings.showwarning = lambda message, *_args, **_kwargs: print(
            f"gptlab: warning: {message}", file=sys.stderr
        )
        return sample(args)


def sample(args: argparse.Namespace) -> int:
    from gptlab.cli.common import load_model_from_args
    from gptlab.device import dtype_name
    from gptlab.errors import require
    from gptlab.inference.config import GenerationConfig
    from gptlab.inference.precision import prepare_model

    require(len(args.prompt) > 0, "--prompt is empty; give some text to continue")
    args.dtype = dtype_name(args.dtype, "--dtype")
    if args.draft:
        require(args.greedy, "--draft (speculative decoding) is greedy only here: add --greedy")
        require(args.num_samples == 1, "--draft decodes one sequence: drop --num-samples")
    # Validate everything before loading a model, so a typo fails at once.
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        num_samples=args.num_samples,
        seed=args.seed,
        stop_strings=tuple(args.stop),
        cache="static" if args.compile else args.cache,
        compile=args.compile,
    )
    require(not args.steer or args.sae, "--steer needs --sae DIR, the SAE whose features it adds")
    require(
        not (args.sae and (args.draft or args.compile)), "--sae works without --draft and --compile"
    )
    model, tokenizer = load_model_from_args(args)
    model = prepare_model(model, args.dtype, args.quantize, compile=args.compile)
    if args.draft:
        return sample_speculative(args, model, tokenizer)
    steering = contextlib.nullcontext()
    if args.sae:
        from gptlab.sae.intervene import steer_model

        steering = steer_model(model, args.sae, args.steer)

    # One sequence streams as it grows; several are printed one after another when done.
    with steering:
        if config.num_samples == 1 and not args.no_stream:
            return stream_one(model, tokenizer, args.prompt, config)
        from gptlab.inference.generate import generate_text

        generations = generate_text(model, tokenizer, args.prompt, config)
    for generation in generations:
        if config.num_samples > 1:
            print(f"--- sample {generation.sample_index + 1}/{config.num_samples} ---")
        sys.stdout.write(generation.text)
        print()
    return 0


def stream_one(model, tokenizer, prompt: str, config) -> int:
    """Print one continuation piece by piece as decode_steps produces it."""
    from gptlab.inference.decode import decode_steps
    from gptlab.inference.generate import encode_prompts

    for step in decode_steps(model, encode_prompts(tokenizer, prompt), config, tokenizer=tokenizer):
        sys.stdout.write(step.text[0])
        sys.stdout.flush()
    print()
    return 0


def sample_speculative(args: argparse.Namespace, model, tokenizer) -> int:
    """Greedy decoding with a draft model; the acceptance rate goes to stderr."""
    from gptlab.checkpoints.load import load_model
    from gptlab.device import model_device
    from gptlab.inference.precision import prepare_model
    from gptlab.inference.speculative import check_draft_compatible, speculative_generate

    draft, draft_tokenizer = load_model(args.draft, device=model_device(model))
    check_draft_compatible(tokenizer, draft_tokenizer)
    draft = prepare_model(draft, args.dtype, args.quantize)
    prompt_ids = tokenizer.encode(args.prompt, allow_special=True)
    result = speculative_generate(
        model,
        draft,
        prompt_ids,
        args.max_new_tokens,
        draft_tokens=args.draft_tokens,
        eot_id=tokenizer.eot_id,
    )
    print(tokenizer.decode(result.token_ids))
    print(
        f"speculative decoding: {result.acceptance_rate:.0%} of {result.proposed} draft tokens "
        f"accepted, {result.target_passes} target passes for {len(result.token_ids)} tokens",
        file=sys.stderr,
    )
    return 0
