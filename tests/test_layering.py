"""The import graph shows the data flow: floors that only import downwards, and no cycles.

Every `import` in the package counts, including those inside functions (a cycle hidden in a
function-level import is still a cycle), read from the source with `ast`, so nothing is run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gptlab

PACKAGE = Path(gptlab.__file__).parent

# Top to bottom, as docs/architecture.md draws them. A module may import its own floor or lower.
FLOORS = [
    ("cli",),
    ("experiment", "finetune", "explore"),
    ("sae",),
    ("train", "bench"),
    ("inference",),
    ("eval", "interp", "checkpoints"),
    ("data", "model"),
    ("tokenizers",),
    (
        "errors",
        "fileio",
        "html_pages",
        "optional",
        "device",
        "overrides",
        "plotting",
        "tables",
        "rng",
        "presets",
        "samples",
    ),
]
FLOOR = {part: len(FLOORS) - i for i, parts in enumerate(FLOORS) for part in parts}
# The public face (`from gptlab import GPT, load_model, ...`) and `python -m gptlab` sit above it all.
ENTRY_POINTS = {"gptlab", "gptlab.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The gptlab modules `name` imports (a `from pkg import submodule` counts as the submodule)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gptlab")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gptlab"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def floor_of(name: str) -> int:
    part = name.split(".")[1]
    return FLOOR[part]


def test_every_module_has_a_floor():
    unplaced = sorted(n for n in MODULES if n not in ENTRY_POINTS and n.split(".")[1] not in FLOOR)
    assert not unplaced, f"add these to FLOORS (and docs/architecture.md): {unplaced}"


def test_nothing_in_the_library_imports_the_cli():
    offenders = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        if not name.startswith("gptlab.cli") and name not in ENTRY_POINTS
        for target in targets
        if target.startswith("gptlab.cli")
    )
    assert not offenders, offenders


def test_imports_only_run_downwards():
    upward = sorted(
        f"{name} (floor {floor_of(name)}) -> {target} (floor {floor_of(target)})"
        for name, targets in GRAPH.items()
        if name not in ENTRY_POINTS
        for target in targets
        if target not in ENTRY_POINTS and floor_of(target) > floor_of(name)
    )
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle():
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    graph = {
        name: {
            t
            for t in targets
            if not (MODULES[name].name == "__init__.py" and t.startswith(name + "."))
        }
        for name, targets in GRAPH.items()
    }
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_checks_can_fail():
    # The cycle finder and the floor table on hand-made graphs: a check that cannot fail proves nothing.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert (
        floor_of("gptlab.cli.train") > floor_of("gptlab.train.trainer") > floor_of("gptlab.errors")
    )
    assert len(GRAPH) > 80 and sum(map(len, GRAPH.values())) > 100
