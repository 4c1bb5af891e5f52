"""The sandbox reads limits, scopes and parameters from Klaviyo's spec file."""

from __future__ import annotations

from sandbox.spec import known_scopes, load_spec_document, operations, parse_spec


def test_every_spec_operation_is_loaded() -> None:
    document = load_spec_document()
    declared = {
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method in {"get", "post", "delete"}
    }
    assert set(operations()) == declared


def test_rate_limits_and_scopes_come_from_the_spec() -> None:
    ops = operations()
    assert (ops["bulk_import_profiles"].burst, ops["bulk_import_profiles"].steady) == (10, 150)
    assert ops["bulk_import_profiles"].scopes == {"lists:write", "profiles:write"}
    assert (ops["get_accounts"].burst, ops["get_accounts"].steady) == (1, 15)
    assert (ops["get_list"].burst, ops["get_list"].steady) == (75, 750)
    assert ops["get_errors_for_bulk_import_profiles_job"].scopes == {"profiles:read"}


def test_changing_the_spec_changes_the_limits() -> None:
    document = load_spec_document()
    document["paths"]["/api/accounts"]["get"]["x-klaviyo-ratelimit"] = {
        "burst": "7/s",
        "steady": "70/m",
    }
    op = parse_spec(document)["get_accounts"]
    assert (op.burst, op.steady) == (7, 70)


def test_additional_field_limits_are_parsed_from_descriptions() -> None:
    (extra,) = operations()["get_list"].extra_limits
    assert (extra.param, extra.value, extra.burst, extra.steady) == (
        "additional-fields[list]",
        "profile_count",
        1,
        15,
    )


def test_query_parameters_and_page_sizes() -> None:
    ops = operations()
    assert ops["get_lists"].page_size_bounds() == (10, 10)
    assert ops["get_profiles"].page_size_bounds() == (20, 100)
    include = ops["get_bulk_import_profiles_job"].query["include"]
    assert include.kind == "array"
    assert include.enum == frozenset({"lists"})


def test_filter_fields_are_parsed() -> None:
    fields = operations()["get_profiles"].filter_fields
    assert fields["email"] == {"any", "equals"}
    assert fields["created"] == {"greater-than", "less-than"}


def test_paths_match_with_or_without_trailing_slash() -> None:
    op = operations()["get_bulk_import_profiles_job"]
    for path in ("/api/profile-bulk-import-jobs/01ABC", "/api/profile-bulk-import-jobs/01ABC/"):
        match = op.pattern.match(path)
        assert match is not None
        assert match.group("job_id") == "01ABC"
    assert op.pattern.match("/api/profile-bulk-import-jobs/01ABC/lists") is None


def test_known_scopes() -> None:
    assert known_scopes() == {
        "accounts:read",
        "lists:read",
        "lists:write",
        "profiles:read",
        "profiles:write",
    }
