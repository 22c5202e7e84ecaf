"""Hook points: named places in the forward pass where an activation can be read or replaced.

A HookPoint is deliberately not an nn.Module: when no function is attached, passing through one
is a single Python call that returns its input, so models pay (almost) nothing for having them.
Interpretability tools attach functions by name with `model.hooks({...})` or read activations with
`model.run_with_cache(...)`; the table of names and shapes is in docs/hooks.md.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gptlab.errors import GptlabError

# fn(activation, hook_name) -> a replacement tensor, or None to leave the activation unchanged.
HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]
# fn(gradient, hook_name) -> a replacement gradient, or None: called during backward() with the
# gradient of whatever is being differentiated with respect to the activation at that point.
BackwardHookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint:
    __slots__ = ("name", "fns")

    def __init__(self) -> None:
        self.name = ""  # filled in by name_hook_points once the model is assembled
        self.fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self.fns)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fns:
            return x
        for fn in self.fns:
            out = fn(x, self.name)
            if out is not None:
                x = out
        return x


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    """Give every HookPoint attribute of every submodule its dotted name; return them in order."""
    points: dict[str, HookPoint] = {}
    for module_name, module in root.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, HookPoint):
                value.name = f"{module_name}.{attr}" if module_name else attr
                points[value.name] = value
    return points


def select_hook_points(points: dict[str, HookPoint], patterns: Iterable[str]) -> list[HookPoint]:
    """Hook points matching names or shell-style patterns ('blocks.*.hook_resid_post')."""
    chosen: list[HookPoint] = []
    for pattern in patterns:
        matched = [p for name, p in points.items() if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            close = difflib.get_close_matches(pattern, list(points), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise GptlabError(
                f"no hook point matches {pattern!r}; {hint}names look like "
                "'blocks.0.hook_resid_post' (see docs/hooks.md for the full table)"
            )
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


@contextmanager
def attached(points: dict[str, HookPoint], fns: dict[str, HookFn]) -> Iterator[None]:
    """Attach functions to hook points (by name or pattern) for the duration of a with-block."""
    added: list[tuple[HookPoint, HookFn]] = []
    try:
        for pattern, fn in fns.items():
            for point in select_hook_points(points, [pattern]):
                point.fns.append(fn)
                added.append((point, fn))
        yield
    finally:
        for point, fn in added:
            point.fns.remove(fn)


def gradient_taps(
    fns: dict[str, BackwardHookFn], points: dict[str, HookPoint]
) -> dict[str, HookFn]:
    """Forward hook functions that make backward() call fns[pattern](grad, name) at each point.

    Each tapped activation x is passed on as x + 0 where the 0 is a fresh leaf that requires
    grad, so the point is part of the autograd graph even in a model whose parameters are frozen
    (as the inspect tools keep them), and the gradient reaching it is exactly d(out)/d(x) with
    everything downstream of x, the other tapped points included, left in the graph.
    """
    taps: dict[str, HookFn] = {}
    for pattern, fn in fns.items():
        for point in select_hook_points(points, [pattern]):

            def tap(x: torch.Tensor, name: str, fn=fn) -> torch.Tensor:
                x = x + torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
                x.register_hook(lambda grad: fn(grad, name))
                return x

            taps[point.name] = tap
    return taps
