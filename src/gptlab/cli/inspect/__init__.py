"""`gptlab inspect TOOL`: look inside a model, print tables, write pictures and data files.

One module per family of tools, each with its TOOLS list: attention.py (attention),
predictions.py (logit-lens, test-prompt, neighbors), attribution.py (attribute, ablate,
prompt-set), patching.py (patch, patch-sites, path-patch, attribution-patch), induction.py
(heads, loss) and circuits.py (circuits, composition); common.py holds what they share. Each tool
loads a model (--checkpoint | --hf | --preset), runs one function from gptlab.interp and writes
its files (PNG, HTML, JSON) into --out (default ./inspect_out/TOOL).
"""

from __future__ import annotations

from gptlab.cli.common import add_model_source_args
from gptlab.cli.inspect import (
    attention,
    attribution,
    circuits,
    induction,
    patching,
    predictions,
)
from gptlab.cli.inspect.common import DEFAULT_OUT_ROOT, refusing_a_file_as_out


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="look inside a model: attention maps, logit lens, attribution, ablation, patching",
        description="Look inside a model: each TOOL prints tables and writes pictures and data files.",
    )
    tools = parser.add_subparsers(dest="tool", metavar="TOOL")
    tools.required = True
    for name, add_arguments, main in TOOLS:
        help_text = main.__doc__.rstrip(".")
        tool = tools.add_parser(name, help=help_text, description=main.__doc__)
        add_model_source_args(tool)
        tool.add_argument(
            "--out", metavar="DIR", help=f"where files go (default: {DEFAULT_OUT_ROOT}/{name})"
        )
        add_arguments(tool)
        tool.set_defaults(func=refusing_a_file_as_out(main))


# Every tool, family by family: (name, add its arguments, its main).
TOOLS = [
    *attention.TOOLS,
    *predictions.TOOLS,
    *attribution.TOOLS,
    *patching.TOOLS,
    *induction.TOOLS,
    *circuits.TOOLS,
]
