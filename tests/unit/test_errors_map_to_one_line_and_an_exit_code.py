"""Every error a user can meet is one line on stderr and the exit code the
README documents, from one table (``frontdoors.cli.output.ANSWERS``); with
``--json`` also one JSON object. Run in-process: the command's actor lookup
raises the error, as any command could.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import redis
from kombu.exceptions import OperationalError

from core import errors
from core.actors import Actor
from frontdoors.cli import output
from frontdoors.cli.main import main
from frontdoors.cli.output import ANSWERS, Exit, answer_for
from klaviyo_client import AuthenticationError, RetriableError

README = Path(__file__).resolve().parents[2] / "README.md"
REFUSED = int(Exit.ERROR)


def _raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def from_env(cls: type[Actor], env: object = None) -> Actor:
        raise exc

    monkeypatch.setattr(Actor, "from_env", classmethod(from_env))
    monkeypatch.delenv("KLAVIYO_EXPORT_LOG_LEVEL", raising=False)


CASES = [
    (errors.ConfigurationError("KLAVIYO_X is unset"), REFUSED, "configuration", {}),
    (errors.SecretError("cannot decrypt"), REFUSED, "refused", {}),
    (errors.NotFound("no export 'e_x'"), REFUSED, "not_found", {}),
    (errors.InvalidInput("bad"), REFUSED, "invalid_input", {}),
    (errors.InvalidRequest({"export_id": ["Missing."]}), REFUSED, "invalid_input", {}),
    (errors.Forbidden("bob may not"), REFUSED, "forbidden", {}),
    (errors.SourceError("s.csv row 3: bad"), REFUSED, "source_error", {}),
    (errors.Refused("no_source", "no source"), REFUSED, "refused", {}),
    (errors.ExportError("plain"), REFUSED, "refused", {}),
    (errors.ExportBusy("busy", "r_1"), 6, "skipped", {"run_in_progress": "r_1"}),
    (errors.Unavailable("Redis lost the run"), 5, "unavailable", {}),
    (AuthenticationError("bad key", status=401), REFUSED, "klaviyo_refused", {}),
    (RetriableError("502", status=502), 5, "klaviyo_unavailable", {}),
    (OperationalError("refused"), 5, "broker_unavailable", {}),
    (redis.ResponseError("NOAUTH"), 5, "redis_refused", {}),
    (redis.ConnectionError("refused"), 5, "redis_unavailable", {}),
    (redis.TimeoutError("slow"), 5, "redis_unavailable", {}),
]


@pytest.mark.parametrize(("exc", "code", "kind", "detail"), CASES, ids=lambda c: repr(c)[:40])
def test_each_error_is_one_line_an_exit_code_and_a_json_object(
    exc: BaseException,
    code: int,
    kind: str,
    detail: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _raising(monkeypatch, exc)

    assert main(["secret-key", "--json"]) == code

    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("klaviyo-export: error: ")
    document = json.loads(captured.out)
    assert document["exit_code"] == code
    assert document["error"]["type"] == kind
    assert document["error"]["message"] == line.removeprefix("klaviyo-export: error: ")
    assert {k: document["error"][k] for k in detail} == detail


def test_redis_errors_name_where_it_is_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@db.internal:6380/3")
    for exc, said in (
        (redis.ConnectionError("x"), "cannot reach Redis at redis://db.internal:6380/3: "),
        (redis.ResponseError("x"), "Redis at redis://db.internal:6380/3 refused the command: "),
    ):
        _raising(monkeypatch, exc)
        assert main(["secret-key"]) == 5
        err = capsys.readouterr().err
        assert said in err
        assert "hunter2" not in err


@pytest.mark.parametrize(
    ("field", "flag"),
    [("email_field", "--email-field"), ("segment_format", "--format"),
     ("connection_id", "--connection"), ("max_profiles", "--max-profiles")],
)  # fmt: skip
def test_an_invalid_field_is_named_as_its_flag(
    field: str, flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raising(monkeypatch, errors.InvalidInput("must not be empty", field=field))

    assert main(["secret-key"]) == REFUSED

    assert capsys.readouterr().err == f"klaviyo-export: error: {flag}: must not be empty\n"


def test_an_input_error_without_a_field_keeps_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raising(monkeypatch, errors.InvalidInput("--timeout goes with --watch"))

    assert main(["secret-key"]) == REFUSED

    assert capsys.readouterr().err == "klaviyo-export: error: --timeout goes with --watch\n"


def test_a_bug_is_one_line_naming_where(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KLAVIYO_EXPORT_DEBUG", raising=False)
    _raising(monkeypatch, RuntimeError("secret detail"))

    assert main(["secret-key", "--json"]) == 70

    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert re.fullmatch(
        r"klaviyo-export: error: internal error: RuntimeError at "
        r"test_errors_map_to_one_line_and_an_exit_code\.py:\d+ \(a bug; KLAVIYO_EXPORT_DEBUG=1 "
        r"shows the traceback\)",
        line,
    )
    assert "secret detail" not in captured.err + captured.out
    assert json.loads(captured.out)["error"]["type"] == "internal_error"


def test_with_debug_a_bug_also_shows_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLAVIYO_EXPORT_DEBUG", "1")
    _raising(monkeypatch, RuntimeError("boom"))

    assert main(["secret-key"]) == 70

    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_and_a_closed_pipe_end_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raising(monkeypatch, KeyboardInterrupt())
    assert main(["secret-key", "--json"]) == 130
    assert capsys.readouterr() == ("", "")

    redirected: list[int] = []
    monkeypatch.setattr(output.os, "dup2", lambda _fd, to: redirected.append(to))
    monkeypatch.setattr(output.sys.stdout, "fileno", lambda: 1, raising=False)
    _raising(monkeypatch, BrokenPipeError())
    assert main(["secret-key", "--json"]) == 141
    assert capsys.readouterr() == ("", "")
    assert redirected == [1]  # stdout pointed at devnull: the final flush stays quiet


def test_every_export_error_of_the_tree_has_its_own_entry() -> None:
    tree = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ExportError) and cls.__module__ == errors.__name__
    ]
    assert len(tree) >= 10  # the scan found the tree
    assert [cls.__name__ for cls in tree if cls not in ANSWERS] == []
    assert all(cls.__name__ in inspect.getdoc(errors) for cls in tree)  # the docstring's tree


def test_a_subclass_takes_its_nearest_entry_and_anything_else_is_internal() -> None:
    class Odd(errors.NotFound):
        pass

    assert answer_for(Odd("x")).kind == "not_found"
    assert answer_for(ValueError("x")).code == Exit.INTERNAL
    assert answer_for(errors.RetryLater(1.0, "later")).code == Exit.INTERNAL  # no user sees it


def test_the_readme_documents_every_exit_code_the_table_uses() -> None:
    text = README.read_text()
    table = text[text.index("| Exit | Meaning |") :].split("\n\n", 1)[0]
    documented = {
        int(code)
        for row in table.splitlines()[2:]
        for code in re.findall(r"\d+", row.split("|")[1])
    }
    assert documented == {int(code) for code in Exit}
    assert {int(a.code) for a in ANSWERS.values()} <= documented
    meanings = {
        int(row.split("|")[1].strip()): row.split("|")[2]
        for row in table.splitlines()[2:]
        if row.split("|")[1].strip().isdigit()
    }
    assert "refused" in meanings[2]
    assert "could not be reached" in meanings[5]
    assert "skipped" in meanings[6]
    assert "internal error" in meanings[70]
