"""The README's step-by-step section works as written, top to bottom.

The block between the ``walkthrough`` markers runs in bash, unchanged, in a
fresh folder that has the project's ``.venv`` (as after ``make setup``):
real workers, beat, the sandbox on its documented port, 50,000 rows.
Only REDIS_URL is given, as the block allows, so that it uses a private Redis.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.services import missing_service

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(
    r"<!-- walkthrough:start -->\s*```sh\n(?P<script>.*?)```\s*<!-- walkthrough:end -->", re.S
)


def _walkthrough() -> str:
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "README.md has no walkthrough block"
    return found.group("script")


def test_the_readme_step_by_step_runs_as_written(redis_url: str, tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "klaviyo-export").exists():
        missing_service(f"no klaviyo-export in {venv}: run the tests from the project's .venv")
    (tmp_path / ".venv").symlink_to(venv)
    script = "set -euo pipefail\n" + _walkthrough()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO", "CELERY"))}
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**env, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the block left behind
    assert proc.returncode == 0, out
    assert ": succeeded" in out
    assert re.search(r"rows read\s+50,000", out)
    assert re.search(r"unchanged\s+4[0-9],[0-9]{3}\s+\(not sent\)", out), out
    assert re.search(r"missing\s+0\s", out)
    logs = (tmp_path / "worker.log").read_text()
    assert "succeeded" in logs
    assert "@example.com" not in logs  # no email in the logs
