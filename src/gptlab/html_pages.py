"""Data inside the self-contained HTML pages gptlab writes (inspect attention, explore --export).

A page carries its data as JSON inside a <script> element. The HTML parser reads that element's
text before JavaScript does, and it reacts to markup there: "</script" ends the element, and
"<!--" followed by "<script" puts the parser into a state where the real "</script>" no longer
ends it, so the rest of the page is swallowed and it renders blank. A prompt, a model's name or
a training sample may hold any of these. script_json escapes every "<", ">" and "&" as \\u003c,
\\u003e, \\u0026 (the same characters to JavaScript, invisible to the HTML parser), and U+2028 /
U+2029, which older JavaScript parsers read as line ends inside a string.
"""

from __future__ import annotations

import json

_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: object, **dumps_options) -> str:
    """`value` as JSON that is safe to place inside <script>...</script> as a JavaScript value."""
    return json.dumps(value, ensure_ascii=False, **dumps_options).translate(_SCRIPT_ESCAPES)


def inline_script(source: str) -> str:
    """Our own JavaScript for a <script> element: the only sequence it must not hold is an end
    tag, and "<\\/script" is the same string to JavaScript (code never holds "<!--")."""
    return source.replace("</script", "<\\/script")
