"""`gptlab explore`: look inside models and training runs in the browser, offline."""

from __future__ import annotations

import argparse

from gptlab.cli.common import add_threads_arg, check_output_file

EXAMPLES = """examples:
  gptlab explore runs/shakespeare                 # serves http://127.0.0.1:8000
  gptlab explore --hf hf-gpt2/ --port 8100
  gptlab explore runs/a runs/b               # several models or runs, switchable in the page
  gptlab explore runs/shakespeare --export page.html --prompt "ROMEO:"   # one page, no server
  gptlab explore runs/my-run --sae runs/sae        # adds a Features tab (sparse autoencoder)
  gptlab explore runs/my-run --sae runs/sae --export page.html --prompt "ROMEO:"   # and saves it
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "explore",
        help="look inside models and runs in the browser (offline web app)",
        description="Serve a local web page over gptlab model folders, training run folders and "
        "Hugging Face GPT-2 folders: next-token bars, attention, logit lens, attribution, "
        "ablation and training curves. Needs the explore extra (pip install 'gptlab[explore]').",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folders", nargs="*", metavar="DIR", help="gptlab model folders or training run folders"
    )
    parser.add_argument(
        "--hf",
        action="append",
        default=[],
        metavar="DIR",
        help="a Hugging Face GPT-2 folder (repeatable)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument(
        "--export",
        metavar="FILE",
        help="write one self-contained HTML page for --prompt instead of serving",
    )
    parser.add_argument("--prompt", help="the prompt the exported page shows (with --export)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --export file"
    )
    parser.add_argument(
        "--sae",
        metavar="DIR",
        help="an SAE folder (gptlab sae train) for the first model: adds the Features tab "
        "(saved in an --export page for its prompt)",
    )
    add_threads_arg(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gptlab.device import resolve_device
    from gptlab.errors import GptlabError
    from gptlab.explore.sources import Source, load_sources

    sources = [Source(path) for path in args.folders] + [Source(path, hf=True) for path in args.hf]
    if args.export:
        if not args.prompt:
            raise GptlabError("--export needs --prompt: the text the page shows")
        if len(sources) != 1:
            raise GptlabError("--export writes one model's page: name exactly one folder")
        # Before the model loads: a page that cannot be written must not cost the wait.
        export_file = check_output_file(args.export, args.overwrite, "--export", "page.html")
    elif args.prompt:
        raise GptlabError("--prompt goes with --export (the served page has its own prompt box)")
    if args.export:
        from gptlab.explore.export import export_page

        explorers = load_sources(sources, resolve_device(args.device))
        explorer = next(iter(explorers.values()))
        if args.sae:
            from gptlab.explore.features import attach_sae

            attach_sae(explorer, args.sae)
        path = export_page(explorer, args.prompt, export_file)
        print(f"wrote {path}")
        return 0
    from gptlab.explore.server import bind, require_web_stack, serve

    require_web_stack()
    sock = bind(args.host, args.port)  # a port in use fails before minutes of model loading
    try:
        explorers = load_sources(sources, resolve_device(args.device))
        if args.sae:
            from gptlab.explore.features import attach_sae

            attach_sae(next(iter(explorers.values())), args.sae)
        serve(explorers, sock)
    finally:
        sock.close()
    return 0
