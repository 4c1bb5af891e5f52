"""The ``filter`` query parameter: Klaviyo's small expression language.

Klaviyo's filtering guide documents expressions such as
``equals(email,"sarah.mason@klaviyo-demo.com")`` and
``any(email,["a@x.com","b@y.com"])``; several conditions are combined with
``and(...)`` or by separating them with commas at the top level. Strings may
be double- or single-quoted (the spec's own examples use ``'example'``) with
backslash escapes; values may also be numbers, ``true``/``false``/``null`` or
bare ISO dates.

Which field and operator is allowed comes from the spec (see
:mod:`sandbox.spec`); which ones the sandbox actually evaluates is decided by
the route. A field the spec allows but the sandbox does not evaluate (for
example ``created`` comparisons) is refused with a 400 that says so, rather
than silently ignored, so a test never passes on an unapplied filter.
``or`` and ``not`` are refused the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

Value = str | int | float | bool | None

_BARE = re.compile(r"[A-Za-z0-9_.:+\-]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class FilterError(ValueError):
    """The filter text is not valid; the message is safe to show the client."""


@dataclass(frozen=True)
class Condition:
    """``operator(field, value)``; ``values`` holds one item unless it was a list."""

    operator: str
    field: str
    values: tuple[Value, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> FilterError:
        return FilterError(f"Invalid filter provided: {what} at position {self.pos}.")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def name(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == quote:
                return "".join(out)
            else:
                out.append(char)
        raise self.fail("unterminated string")

    def value(self) -> Value | list[Value]:
        char = self.peek()
        if char in {'"', "'"}:
            return self.string()
        if char == "[":
            self.pos += 1
            items: list[Value] = []
            if self.peek() == "]":
                self.pos += 1
                return items
            while True:
                item = self.value()
                if isinstance(item, list):
                    raise self.fail("nested list")
                items.append(item)
                if self.peek() == "]":
                    self.pos += 1
                    return items
                self.expect(",")
        match = _BARE.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a value")
        self.pos = match.end()
        return _bare_value(match.group())

    def terms(self) -> list[Condition]:
        found = self.term()
        while self.peek() == ",":
            self.pos += 1
            found.extend(self.term())
        return found

    def term(self) -> list[Condition]:
        operator = self.name()
        self.expect("(")
        if operator == "and":
            found = self.terms()
            self.expect(")")
            return found
        if operator in {"or", "not"}:
            raise FilterError(f"The sandbox does not implement the '{operator}' operator.")
        field = self.name()
        self.expect(",")
        value = self.value()
        self.expect(")")
        values = tuple(value) if isinstance(value, list) else (value,)
        if operator == "any" and not isinstance(value, list):
            raise FilterError(f"'any' on '{field}' needs a list of values.")
        if operator != "any" and isinstance(value, list):
            raise FilterError(f"'{operator}' on '{field}' needs a single value.")
        return [Condition(operator, field, values)]


def _bare_value(text: str) -> Value:
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered == "null":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_filter(text: str) -> list[Condition]:
    """All conditions of ``text`` (implicitly and-ed); :class:`FilterError` if invalid."""
    parser = _Parser(text)
    if not parser.peek():
        raise FilterError("Invalid filter provided: the filter is empty.")
    conditions = parser.terms()
    if parser.peek():
        raise parser.fail("unexpected text")
    return conditions


def check_conditions(
    conditions: list[Condition],
    allowed: Mapping[str, Collection[str]],
    implemented: Collection[str],
) -> None:
    """Refuse fields or operators the spec does not allow or the sandbox cannot apply."""
    for condition in conditions:
        operators = allowed.get(condition.field)
        if operators is None:
            raise FilterError(f"'{condition.field}' is not a valid filter field for this resource.")
        if condition.operator not in operators:
            raise FilterError(
                f"'{condition.operator}' is not a valid operator for '{condition.field}'."
            )
        if condition.field not in implemented:
            raise FilterError(f"The sandbox does not implement filtering on '{condition.field}'.")
        if not all(isinstance(value, str) for value in condition.values):
            raise FilterError(f"Values for '{condition.field}' must be strings.")


def string_values(conditions: list[Condition], field: str) -> set[str] | None:
    """The values ``field`` may take given every condition on it, or None if unconstrained.

    Several conditions on one field intersect, as ``and`` demands.
    """
    result: set[str] | None = None
    for condition in conditions:
        if condition.field == field:
            values = {str(value) for value in condition.values}
            result = values if result is None else result & values
    return result
