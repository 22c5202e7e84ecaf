"""`gptlab chat`: talk to an instruction-tuned model, one instruction per line, with memory."""

from __future__ import annotations

from gptlab.cli.common import add_threads_arg, seed_arg

EXIT_WORDS = ("exit", "quit")
RESET_WORD = "/reset"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with an instruction-tuned model (one instruction per line)",
        description="Read instructions from stdin, one per line, and stream the model's answers. The "
        "conversation is kept in the Alpaca template used by gptlab finetune instruct (one instruction / "
        "response block per turn) and read once: the KV cache carries it from turn to turn. When it "
        "would pass the model's context the oldest turns are dropped, with a notice. '/reset' starts "
        "over; end of input, an empty line or 'exit' ends.",
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
    parser.add_argument("--seed", type=seed_arg, default=None, help="random seed for sampling")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    add_threads_arg(parser)
    parser.set_defaults(func=main)


def main(args) -> int:
    import sys

    from gptlab.device import resolve_device
    from gptlab.finetune.chat import Conversation
    from gptlab.finetune.instruct import answer_config
    from gptlab.inference.precision import prepare_model

    model, tokenizer = load_chat_model(args.checkpoint, resolve_device(args.device))
    model = prepare_model(model)  # chat only decodes: the fastest fp32 layout on a CPU
    config = answer_config(args.max_new_tokens, args.temperature, args.top_k, args.seed)
    conversation = Conversation(model, tokenizer, config)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        instruction = line.strip()
        if not line or not instruction or instruction.lower() in EXIT_WORDS:
            return 0
        if instruction == RESET_WORD:
            conversation.reset()
            print("gptlab: conversation cleared", file=sys.stderr)
            continue
        answer_turn(conversation, instruction)


def load_chat_model(checkpoint: str, device):
    """(model, tokenizer) of an instruction model's folder, or of any model folder (the
    template still applies, whatever the model learned)."""
    from pathlib import Path

    from gptlab.checkpoints.finetuned import TASK_FILE, load_finetuned
    from gptlab.errors import GptlabError

    if (Path(checkpoint) / TASK_FILE).is_file():
        loaded = load_finetuned(checkpoint, device)
        if loaded.task["kind"] != "instruct":
            raise GptlabError(
                f"{checkpoint} is a {loaded.task['kind']}, not an instruction model; use gptlab classify"
            )
        return loaded.body, loaded.tokenizer
    from gptlab.checkpoints.load import load_model

    model, tokenizer = load_model(checkpoint, device)
    if tokenizer is None:
        raise GptlabError(f"{checkpoint} has no tokenizer.json; it cannot turn text into tokens")
    return model, tokenizer


def answer_turn(conversation, instruction: str) -> None:
    """Stream one answer; a turn that cannot fit, or history dropped to fit, is one line."""
    import sys

    from gptlab.errors import GptlabError

    try:
        dropped, pieces = conversation.ask(instruction)
    except GptlabError as exc:  # one instruction too long: say so and take the next
        print(f"gptlab: {exc}", file=sys.stderr)
        return
    if dropped:
        print(
            f"gptlab: the conversation outgrew the model's context "
            f"({conversation.model.config.block_size} tokens); dropped the oldest {dropped} turn(s)",
            file=sys.stderr,
        )
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    print(flush=True)
