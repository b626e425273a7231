"""Read PowerShell scripts through tree-sitter's PowerShell grammar (no PowerShell here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

PARSER = Parser(Language(tree_sitter_powershell.language()))


def parse(source: bytes) -> Node:
    return PARSER.parse(source).root_node


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def syntax_errors(root: Node) -> list[str]:
    """Each ERROR or MISSING node, as 'line N: text'."""
    return [
        f"line {node.start_point[0] + 1}: {node.text.decode(errors='replace')[:60]!r}"
        for node in walk(root)
        if node.is_error or node.is_missing
    ]


def text(node: Node) -> str:
    return node.text.decode("utf-8")


@dataclass
class Command:
    """One command invocation: its name and its elements (parameters and arguments)."""

    name: str
    elements: list[str]
    node: Node

    def value(self, parameter: str) -> str | None:
        """The argument after ``-parameter``; '' for a switch; None when absent."""
        lowered = [e.lower() for e in self.elements]
        key = parameter.lower()
        if key not in lowered:
            return None
        index = lowered.index(key)
        if index + 1 < len(self.elements) and not self.elements[index + 1].startswith("-"):
            return self.elements[index + 1]
        return ""


def commands(root: Node, name: str | None = None) -> list[Command]:
    found = []
    for node in walk(root):
        if node.type != "command":
            continue
        name_node = node.child_by_field_name("command_name") or node.children[0]
        elements_node = next((c for c in node.children if c.type == "command_elements"), None)
        elements = (
            [text(c) for c in elements_node.children if c.type != "command_argument_sep"]
            if elements_node
            else []
        )
        command = Command(text(name_node), elements, node)
        if name is None or command.name.lower() == name.lower():
            found.append(command)
    return found


def parameters(root: Node) -> dict[str, list[str]]:
    """The script's param() block: name -> its attributes' text."""
    block = next(node for node in walk(root) if node.type == "param_block")
    found = {}
    for node in walk(block):
        if node.type == "script_parameter":
            variable = next(c for c in node.children if c.type == "variable")
            attributes = [text(a) for a in walk(node) if a.type == "attribute"]
            found[text(variable).lstrip("$")] = attributes
    return found


def assignments(root: Node) -> list[tuple[str, str, str]]:
    """Every assignment as (target, operator, value), in source order."""
    found = []
    for node in walk(root):
        if node.type == "assignment_expression":
            target, operator, *value = node.children
            found.append((text(target), text(operator), " ".join(text(v) for v in value)))
    return found


def enclosing(node: Node, kind: str) -> Node | None:
    parent = node.parent
    while parent is not None and parent.type != kind:
        parent = parent.parent
    return parent


def statements_of(block: Node) -> list[Node]:
    """The statements directly in a statement_list (or a script's top level)."""
    statement_list = next((c for c in walk(block) if c.type == "statement_list"), None)
    return list(statement_list.named_children) if statement_list else []


def single_quoted(literal: str) -> str:
    match = re.fullmatch(r"'((?:[^']|'')*)'", literal)
    assert match, f"not a single-quoted string: {literal}"
    return match[1].replace("''", "'")


def additive_operands(node: Node) -> list[str]:
    """The operands of the first chain of '+' in ``node`` (left to right), as source text."""
    chain = next(n for n in walk(node) if n.type == "additive_expression")

    def flatten(expression: Node) -> list[str]:
        if expression.type != "additive_expression":
            return [text(expression)]
        if expression.child_count == 1:
            return [text(expression.children[0])]
        left, operator, right = expression.children
        assert text(operator) == "+", text(expression)
        return [*flatten(left), text(right)]

    return flatten(chain)


def register_task_argument(source: bytes, bat: str, bat_args: list[str]) -> str:
    """Evaluate register_task.ps1's New-ScheduledTaskAction -Argument for these values."""
    action = commands(parse(source), "New-ScheduledTaskAction")[0]
    pieces = []
    for operand in additive_operands(action.node):
        if operand == "$bat":
            pieces.append(bat)
        elif operand == "($batArgs -join ' ')":
            pieces.append(" ".join(bat_args))
        else:
            pieces.append(single_quoted(operand))
    return "".join(pieces)
