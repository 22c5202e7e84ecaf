"""`gptlab chat`: talk to an instruction-tuned model, one instruction per line."""

from __future__ import annotations

from gptlab.cli.common import add_threads_arg

EXIT_WORDS = ("exit", "quit")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with an instruction-tuned model (one instruction per line)",
        description="Read instructions from stdin, one per line; wrap each in the Alpaca template used by "
        "gptlab finetune instruct and stream the model's answer. Ends at end of input, an empty line or "
        "'exit'. Each line is answered on its own (no conversation memory).",
        epilog="example: gptlab chat --checkpoint runs/alpaca",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="DIR",
        help="a folder written by gptlab finetune instruct (or any model folder)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=256,
        metavar="N",
        help="answer length limit (default 256)",
    )
    parser.add_argument(
        "--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)"
    )
    parser.add_argument(
        "--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from gptlab.checkpoints.finetuned import TASK_FILE, load_finetuned
    from gptlab.device import resolve_device
    from gptlab.errors import GptlabError
    from gptlab.finetune.instruct import answer_config, answer_room, prompt_ids
    from gptlab.inference.decode import decode_steps

    device = resolve_device(args.device)
    if (Path(args.checkpoint) / TASK_FILE).is_file():
        loaded = load_finetuned(args.checkpoint, device)
        if loaded.task["kind"] != "instruct":
            raise GptlabError(
                f"{args.checkpoint} is a {loaded.task['kind']}, not an instruction model; use gptlab classify"
            )
        model, tokenizer = loaded.body, loaded.tokenizer
    else:  # a plain model folder: the template still applies, whatever the model learned
        from gptlab.checkpoints.load import load_model

        model, tokenizer = load_model(args.checkpoint, device)
        if tokenizer is None:
            raise GptlabError(
                f"{args.checkpoint} has no tokenizer.json; it cannot turn text into tokens"
            )
    config = answer_config(args.max_new_tokens, args.temperature, args.top_k, args.seed)
    interactive = sys.stdin.isatty()

    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        instruction = line.strip()
        if not line or not instruction or instruction.lower() in EXIT_WORDS:
            return 0
        try:
            ids = prompt_ids(tokenizer, instruction, "", model.config.block_size)
        except GptlabError as exc:  # one instruction too long: say so and take the next
            print(f"gptlab: {exc}", file=sys.stderr)
            continue
        room = answer_room(ids, model.config.block_size, args.max_new_tokens)
        answer = dataclasses.replace(config, max_new_tokens=room)
        for step in decode_steps(model, ids, answer, tokenizer=tokenizer):
            sys.stdout.write(step.text[0])
            sys.stdout.flush()
        print(flush=True)
