"""The tools of a Responses request as Chat function tools: valid, unique names, and the map that restores them.

Chat servers take only function tools, named ``^[a-zA-Z0-9_-]{1,64}$`` (docs/responses-bridge.md
§1): namespaced, custom (freeform) and local_shell tools become functions, and the tool map
(``ToolNamer.tools``) lets the state machine turn the upstream's calls back into the tool
kinds the client declared.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

from bridge.events import ToolMap, ToolTarget
from bridge.values import str_of

NAME_LIMIT = 64
INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
DEFAULT_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The raw freeform text input."}},
    "required": ["input"],
}
SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments."},
        "workdir": {"type": "string", "description": "Working directory to run the command in."},
        "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds."},
    },
    "required": ["command"],
}
TOOL_CHOICE_WORDS = ("auto", "none", "required")
APPLY_PATCH = """Create, change, move or delete files. Put the whole patch in the string `input`.

A patch starts with the line `*** Begin Patch` and ends with the line `*** End Patch`. In between, one \
section per file, paths relative to the working directory:
- `*** Add File: PATH`, then every line of the new file, each starting with `+`;
- `*** Delete File: PATH`;
- `*** Update File: PATH` (then `*** Move to: NEW_PATH` to rename it), then one or more hunks. A hunk starts \
with `@@`, optionally followed by a line that locates it (such as a function's first line); then its lines: \
a space and the line for an unchanged line, `-` and the line for a line to remove, `+` and the line for a line \
to add. Give three unchanged lines before and after each change, copied exactly, so the place is found.

Example, adding one file and changing another:
*** Begin Patch
*** Add File: notes/todo.txt
+write the tests
*** Update File: src/app.py
@@ def main():
     args = parse_args()
-    run(args)
+    run(args, verbose=True)
     return 0
*** End Patch"""


class ToolNamer:
    """Give every declared tool a valid, unique Chat function name, first come first served."""

    def __init__(self) -> None:
        self.tools: ToolMap = {}
        self.by_target: dict[ToolTarget, str] = {}

    def add(self, target: ToolTarget) -> str:
        if target in self.by_target:
            return self.by_target[target]
        base = _valid_name(_flat_name(target))
        name, n = base, 1
        while name in self.tools:
            # Deterministic: the n-th tool that lands on a taken name gets suffix _n.
            n += 1
            suffix = f"_{n}"
            name = base[: NAME_LIMIT - len(suffix)] + suffix
        self.tools[name] = target
        self.by_target[target] = name
        return name

    def name_for(self, target: ToolTarget) -> str:
        """Return the Chat name of a tool seen in history, declared or not."""
        return self.by_target.get(target) or _valid_name(_flat_name(target))


def _flat_name(target: ToolTarget) -> str:
    return f"{target.namespace}__{target.name}" if target.namespace else target.name


def _valid_name(raw: str) -> str:
    """Return `raw` made to match ^[a-zA-Z0-9_-]{1,64}$, keeping distinct long names distinct."""
    name = INVALID_NAME_CHARS.sub("_", raw) or "_"
    if len(name) > NAME_LIMIT:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: NAME_LIMIT - 9]}_{digest}"
    return name


def chat_tools(raw: dict[str, Any], namer: ToolNamer, namespace: str | None = None) -> list[dict[str, Any]]:
    """Return the Chat function tools for one Responses (or Chat-shaped) tool; [] if hosted."""
    kind = raw.get("type")
    if kind == "function":
        spec = raw["function"] if isinstance(raw.get("function"), dict) else raw
        if not str_of(spec, "name"):
            return []
        name = namer.add(ToolTarget("function", spec["name"], namespace))
        return [_function(name, str_of(spec, "description"), spec.get("parameters"), strict=spec.get("strict") is True)]
    if kind == "namespace" and str_of(raw, "name") and isinstance(raw.get("tools"), list):
        subtools = [sub for sub in raw["tools"] if isinstance(sub, dict) and sub.get("type") in ("function", "custom")]
        return [tool for sub in subtools for tool in chat_tools(sub, namer, raw["name"])]
    if kind == "custom" and str_of(raw, "name"):
        name = namer.add(ToolTarget("custom", raw["name"], namespace))
        return [_function(name, _custom_description(raw), CUSTOM_PARAMETERS)]
    if kind == "local_shell":
        name = namer.add(ToolTarget("local_shell", "local_shell"))
        return [_function(name, "Run a shell command on the user's machine and return its output.", SHELL_PARAMETERS)]
    # Hosted tools (web_search, file_search, mcp, ...) run at OpenAI; a Chat server has none.
    return []


def _function(name: str, description: str, parameters: Any, *, strict: bool = False) -> dict[str, Any]:
    # `strict: true` goes on when the client asked for it (openai-agents and pydantic-ai do):
    # servers that enforce schemas honour it, the rest ignore it. `false` is the default, unsaid.
    function: dict[str, Any] = {"name": name, "description": description} if description else {"name": name}
    function["parameters"] = parameters if isinstance(parameters, dict) and parameters else dict(DEFAULT_PARAMETERS)
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom_description(raw: dict[str, Any]) -> str:
    """Describe a freeform tool so a model that only knows JSON functions can call it.

    Codex's ``apply_patch`` gets a description of our own with an example patch: its own says
    not to wrap the patch in JSON, the opposite of what a function call must do, and its lark
    grammar is more than a small model follows.
    """
    if raw.get("name") == "apply_patch":
        return APPLY_PATCH
    parts = [str_of(raw, "description")] if str_of(raw, "description") else []
    parts.append("Pass the raw freeform text for this tool as the string `input`; it is not JSON.")
    fmt = raw.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and str_of(fmt, "definition"):
        parts.append(f"`input` must match this {str_of(fmt, 'syntax')} grammar:\n{fmt['definition']}")
    return "\n\n".join(parts)


def tool_choice(choice: Any, namer: ToolNamer) -> str | dict[str, Any] | None:
    """Return the Chat `tool_choice` for a Responses one, or None to leave it out."""
    if choice is None:
        return None
    if isinstance(choice, str):
        return choice if choice in TOOL_CHOICE_WORDS else "auto"
    if not isinstance(choice, dict):
        return "auto"
    kind = choice.get("type")
    name = choice["function"].get("name") if isinstance(choice.get("function"), dict) else choice.get("name")
    target: ToolTarget | None = None
    if kind in ("function", "custom") and isinstance(name, str):
        target = ToolTarget(kind, name)
    elif kind == "local_shell":
        target = ToolTarget("local_shell", "local_shell")
    if target is not None and target in namer.by_target:
        return {"type": "function", "function": {"name": namer.by_target[target]}}
    mode = choice.get("mode")
    if kind == "allowed_tools" and isinstance(mode, str) and mode in ("auto", "required"):
        # Chat has no "only these tools"; the mode is the closest it can say.
        return mode
    # Hosted tools, MCP and names we do not know: let the model choose.
    return "auto"
