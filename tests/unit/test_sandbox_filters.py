"""Klaviyo filter expressions."""

from __future__ import annotations

import pytest

from sandbox.filters import Condition, FilterError, check_conditions, parse_filter, string_values


def test_equals_with_double_and_single_quotes() -> None:
    assert parse_filter('equals(email,"a@x.com")') == [Condition("equals", "email", ("a@x.com",))]
    assert parse_filter("equals(email,'a@x.com')") == [Condition("equals", "email", ("a@x.com",))]


def test_any_with_a_list_and_spaces() -> None:
    (condition,) = parse_filter(' any( email , ["a@x.com", "b@y.com"] ) ')
    assert condition == Condition("any", "email", ("a@x.com", "b@y.com"))


def test_escapes_inside_strings() -> None:
    (condition,) = parse_filter(r'equals(name,"say \"hi\", ok")')
    assert condition.values == ('say "hi", ok',)


def test_and_and_top_level_commas_combine() -> None:
    conditions = parse_filter('and(equals(email,"a@x.com"),any(id,["1"])),equals(status,queued)')
    assert [c.field for c in conditions] == ["email", "id", "status"]
    assert conditions[2].values == ("queued",)


def test_bare_values() -> None:
    (condition,) = parse_filter("any(x,[1,2.5,true,null,2026-01-01T00:00:00Z])")
    assert condition.values == (1, 2.5, True, None, "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "equals(email",
        'equals(email,"a"',
        'equals(email,"a") extra',
        'any(email,"a")',
        'equals(email,["a"])',
        'or(equals(email,"a"),equals(email,"b"))',
        'not(equals(email,"a"))',
        'equals(email,"unterminated)',
        "any(email,[[1]])",
    ],
)
def test_invalid_filters(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


def test_check_conditions_against_spec_and_implementation() -> None:
    allowed = {"email": {"any", "equals"}, "created": {"greater-than"}}
    implemented = {"email"}
    check_conditions(parse_filter('equals(email,"a")'), allowed, implemented)
    with pytest.raises(FilterError, match="not a valid filter field"):
        check_conditions(parse_filter('equals(name,"a")'), allowed, implemented)
    with pytest.raises(FilterError, match="not a valid operator"):
        check_conditions(parse_filter('greater-than(email,"a")'), allowed, implemented)
    with pytest.raises(FilterError, match="does not implement"):
        check_conditions(parse_filter('greater-than(created,"a")'), allowed, implemented)
    with pytest.raises(FilterError, match="must be strings"):
        check_conditions(parse_filter("equals(email,1)"), allowed, implemented)


def test_string_values_intersect_conditions_on_one_field() -> None:
    conditions = parse_filter('any(email,["a","b","c"]),any(email,["b","c","d"])')
    assert string_values(conditions, "email") == {"b", "c"}
    assert string_values(conditions, "id") is None
