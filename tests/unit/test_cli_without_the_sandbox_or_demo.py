"""Where the sandbox and demo packages are not installed (the production image),
the command line still works, and ``sandbox``, ``demo`` and ``sample`` say in
one line what is missing (exit 2) instead of a traceback.

A package is made absent as an interpreter without it sees it: its entry in
``sys.modules`` is None, so importing it raises ModuleNotFoundError. The
subprocess cases hide it before anything of the project is imported, as in
the image, so that a module-level import anywhere on the CLI's path shows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from frontdoors.cli.main import main
from frontdoors.cli.optional import needs

_HIDE = "import sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(',')))"
_RUN = "from frontdoors.cli.main import main; sys.exit(main(sys.argv[2:]))"


def cli_without(packages: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``klaviyo-export ARGS`` in a fresh interpreter that lacks ``packages``."""
    return subprocess.run(
        [sys.executable, "-c", f"{_HIDE}; {_RUN}", packages, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    for name in [n for n in sys.modules if n.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def one_line_naming(stderr: str, package: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert line.startswith("klaviyo-export: error: "), line
    assert f"{package!r} package, which is not installed here" in line
    assert "Traceback" not in stderr
    return line


@pytest.mark.parametrize(
    "args",
    [
        ["sandbox"],
        ["sandbox", "--port", "8025", "--api-key", "pk_made_up", "--list", "DeMo01:Demo"],
        ["sandbox", "--help"],
    ],
    ids=["bare", "with-its-flags", "help"],
)
def test_the_sandbox_command_names_the_missing_package(args: list[str]) -> None:
    proc = cli_without("sandbox,demo", *args)
    assert proc.returncode == 2, proc.stderr
    one_line_naming(proc.stderr, "sandbox")
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("hidden", "args", "package"),
    [
        ("sandbox,demo", ["demo", "--profiles", "10"], "demo"),
        ("sandbox", ["demo"], "sandbox"),  # the demo is there, its sandbox is not
        ("sandbox,demo", ["sample", "/nonexistent/segment.csv"], "demo"),
    ],
    ids=["demo", "demo-without-sandbox", "sample"],
)
def test_the_demo_commands_name_the_missing_package(
    hidden: str, args: list[str], package: str
) -> None:
    proc = cli_without(hidden, *args)
    assert proc.returncode == 2, proc.stderr
    one_line_naming(proc.stderr, package)


def test_json_gets_the_refusal_as_one_object() -> None:
    proc = cli_without("sandbox,demo", "sandbox", "--json", "--port", "1")
    assert proc.returncode == 2
    one_line_naming(proc.stderr, "sandbox")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["exit_code"] == 2
    assert answer["error"]["type"] == "configuration"


def test_every_other_command_is_there_without_them() -> None:
    proc = cli_without("sandbox,demo", "--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "status", "listen", "connection", "export", "sandbox", "demo"):
        assert command in proc.stdout
    proc = cli_without("sandbox,demo", "secret-key")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_in_process_a_hidden_sandbox_gives_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "sandbox")
    hide(monkeypatch, "demo")
    assert main(["sandbox", "--port", "8025"]) == 2
    one_line_naming(capsys.readouterr().err, "sandbox")
    assert main(["demo"]) == 2
    one_line_naming(capsys.readouterr().err, "demo")


def test_another_missing_module_is_a_fault_not_a_refusal() -> None:
    with pytest.raises(ModuleNotFoundError), needs("demo"):
        import no_such_module_here  # type: ignore[import-not-found]  # noqa: F401
