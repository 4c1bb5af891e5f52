"""The web console as a person uses it: in a real headless browser, to a real run.

Playwright drives Debian's chromium (``/usr/bin/chromium``, never a downloaded
browser) against ``klaviyo-export serve`` run as a subprocess on a free port,
a real redis-server, two real Celery workers and the sandbox
(``tests.support.pipeline``). Users and tokens are made with the CLI, as an
admin would; everything else is clicks and typing: sign in, add a connection
and an export, run it and watch it move, read the counts, download the
rejected rows; a contributor who cannot see an admin-only connection; token
sign-in, a wrong password, a form without its CSRF field; the sign-in form by
keyboard alone. No page the browser showed, and not the CSV, holds the API key.

``KX_SCREENSHOTS=1`` also writes a PNG of each page (1366x800) to
``docs/screenshots/`` for the README; CI leaves them as they are.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from core.reports import REPORT_COLUMNS
from demo.sample import FAIL_EMAIL_PATTERN, SampleMakeup, write_sample
from tests.support.pipeline import LIST_ID, Pipeline, pipeline
from tests.support.services import free_port, missing_service, redis_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # this machine's closed network refuses them
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1366, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORDS = {"ada": "correct horse battery staple", "cole": "contributor pass phrase 42"}
FINAL_TEXT = {"succeeded", "partially succeeded", "failed", "cancelled", "rejected"}
WAIT_MS = 120_000

# Records, in the tab's sessionStorage (it outlives the reload at the end of a
# run), what the run page shows each time its status, progress or counts change.
LIVE_LOG = """
addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("run");
  if (!root) { return; }
  const key = "kx-live:" + root.dataset.run;
  const seen = () => [document.getElementById("run-status").textContent.trim(),
    String(document.getElementById("run-progress").value),
    root.querySelector("[data-count=imported]").textContent.trim()];
  const add = (loaded) => {
    const log = JSON.parse(sessionStorage.getItem(key) || "[]");
    const now = seen();
    const last = log.length ? JSON.stringify(log[log.length - 1].seen) : "";
    if (loaded || JSON.stringify(now) !== last) { log.push({loaded: loaded, seen: now}); }
    sessionStorage.setItem(key, JSON.stringify(log));
  };
  add(true);
  new MutationObserver(() => add(false)).observe(root,
    {subtree: true, childList: true, characterData: true, attributes: true});
});
"""


@dataclass
class World:
    kx: Pipeline
    base_url: str
    browser: Browser
    segment: Path
    makeup: SampleMakeup
    token: str
    pages: list[str] = field(default_factory=list)  # the HTML of every page shown
    urls: list[str] = field(default_factory=list)  # every page the browser went to
    shared_connection: str = ""  # "Admins and contributors", added in scenario 1
    rejected_csv: str | None = None

    def tab(self) -> BrowserContext:
        """A new browser profile (no cookies) at the laptop size."""
        context = self.browser.new_context(
            base_url=self.base_url, viewport=VIEWPORT, accept_downloads=True
        )
        context.set_default_timeout(30_000)
        context.add_init_script(LIVE_LOG)
        context.on("page", self._follow)
        return context

    def _follow(self, page: Page) -> None:
        page.on("framenavigated", lambda frame: self._went(page, frame.url, frame.parent_frame))

    def _went(self, page: Page, url: str, parent: object) -> None:
        if parent is None and url.startswith(self.base_url):
            self.urls.append(url)

    def look(self, page: Page, shot: str = "") -> Page:
        """Keep the page's HTML, and its screenshot when KX_SCREENSHOTS=1."""
        page.wait_for_load_state()
        self.pages.append(page.content())
        if shot and os.environ.get("KX_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{shot}.png"))
        return page


@contextmanager
def serving(env: dict[str, str], workdir: Path) -> Iterator[str]:
    """``klaviyo-export serve --port FREE``, as an admin starts it; stopped with SIGTERM."""
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "frontdoors.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /healthz:\n{log.read_text()}")
            time.sleep(0.1)
        yield base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not CHROMIUM.is_file():
        missing_service(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        )
    tmp = tmp_path_factory.mktemp("console")
    segments = tmp / "segments"
    segments.mkdir()
    segment = segments / "customers.csv.gz"
    makeup = write_sample(segment, 20_000, seed=17)
    # Small batches and a slower sandbox job, so that a person can watch the run move.
    env = {"KLAVIYO_EXPORT_SOURCE_ROOTS": str(segments), "KLAVIYO_EXPORT_BATCH_PROFILES": "2500"}
    options: dict[str, Any] = {"fail_email": FAIL_EMAIL_PATTERN, "job_profiles_per_second": 8000}
    with (
        redis_server() as url,
        pipeline(url, tmp, env=env, **options) as kx,
        serving(kx.env, tmp) as base_url,
        sync_playwright() as playwright,
    ):
        for user, role in (("ada", "admin"), ("cole", "contributor")):
            password = PASSWORDS[user] + "\n"
            kx.cli(
                "user", "add", user, "--role", role, "--password-stdin", stdin=password, check=True
            )
        made = kx.cli(
            "token", "add", "--name", "ada-laptop", "--role", "admin", "--user", "ada", check=True
        )
        token = made.stdout.strip()  # the secret alone on stdout, shown this once
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield World(kx, base_url, browser, segment, makeup, token)
        finally:
            browser.close()


def sign_in(world: World, page: Page, user: str, shot: str = "") -> Page:
    page.goto("/signin")
    world.look(page, shot)
    page.get_by_label("User name", exact=True).fill(user)
    page.get_by_label("Password", exact=True).fill(PASSWORDS[user])
    page.locator("#signin-submit").click()
    expect(page.locator("#signed-in-as")).to_contain_text(user)
    return world.look(page)


def add_connection(world: World, page: Page, name: str, who: str, shot: str = "") -> str:
    """Add a connection through the form; its id, from the page it lands on."""
    page.goto("/connections")
    page.get_by_label("Display name", exact=True).fill(name)
    page.get_by_label(who, exact=True).check()
    page.get_by_label("API key", exact=True).fill(world.kx.api_key)
    page.locator("#connection-consent").check()
    if shot:
        page.locator("#connection-form").scroll_into_view_if_needed()
        world.look(page, shot)
    page.get_by_role("button", name="Verify with Klaviyo and save").click()
    page.wait_for_url(re.compile(r"/connections/c_\w+"))
    expect(page.locator("#notice")).to_contain_text("Klaviyo accepted the key")
    world.look(page, "connection" if shot else "")
    found = re.search(r"/connections/(c_\w+)", page.url)
    assert found, page.url
    return found.group(1)


def test_an_admin_adds_a_connection_and_an_export_runs_it_and_sees_every_row(
    world: World,
) -> None:
    makeup = world.makeup
    page = sign_in(world, world.tab().new_page(), "ada", shot="signin")

    # Without the consent the form comes back, with one sentence and no key written back.
    page.goto("/connections")
    page.get_by_label("Display name", exact=True).fill("Shop")
    page.get_by_label("API key", exact=True).fill(world.kx.api_key)
    page.get_by_role("button", name="Verify with Klaviyo and save").click()
    expect(page.locator("#form-problem")).to_contain_text("Consent")
    expect(page.get_by_label("API key", exact=True)).to_have_value("")
    world.look(page)

    world.shared_connection = add_connection(
        world, page, "Shop", "Admins and contributors", shot="connection-add"
    )
    assert page.locator("dt:text-is('Last verified') + dd").inner_text().strip() != "-"
    page.goto("/connections")
    expect(page.locator("#connections-table")).to_contain_text("Shop")
    world.look(page, "connections")

    page.goto("/exports/new")
    page.get_by_label("Connection", exact=True).select_option(world.shared_connection)
    page.get_by_label("List ID", exact=True).fill(LIST_ID)
    page.get_by_label("Email field", exact=True).fill("email")
    page.get_by_label("Name", exact=True).fill("Newsletter")
    page.get_by_label("Properties", exact=True).fill("first_name")
    page.get_by_label("Bound segment", exact=True).fill(str(world.segment))
    page.evaluate("window.scrollTo(0, 0)")  # the screenshot shows the form's top
    world.look(page, "export-add")
    page.get_by_role("button", name="Save the export").click()
    page.wait_for_url(re.compile(r"/exports/e_\w+"))
    expect(page.locator("#notice")).to_contain_text("Saving does not run it")
    expect(page.locator("#export-state")).to_have_text("enabled")
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    world.look(page, "export")

    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r"/runs/r_\w+"))
    run_id = page.locator("#run").get_attribute("data-run")
    expect(page.locator("#run-status")).not_to_have_text("pending", timeout=WAIT_MS)
    world.look(page, "run-running")  # running, unless it was quicker than a look
    expect(page.locator('#run[data-final="true"]')).to_be_attached(timeout=WAIT_MS)
    world.look(page, "run-finished")

    log = json.loads(page.evaluate(f"sessionStorage.getItem('kx-live:{run_id}')"))
    moved = [entry["seen"] for entry in log if not entry["loaded"]]
    assert moved, f"the run page never changed without a reload: {log}"
    assert moved[-1][0] in FINAL_TEXT, f"the live page did not show the end: {log}"
    expect(page.locator("#run-status")).to_have_text("partially succeeded")
    for name, value in makeup.expected_counts().items():
        expect(page.locator(f'#run-counts [data-count="{name}"]')).to_have_text(f"{value:,}")

    with page.expect_download() as download:
        page.locator("#run-rejected-csv").click()
    world.rejected_csv = Path(download.value.path()).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(world.rejected_csv))
    rows = list(reader)
    assert reader.fieldnames == list(REPORT_COLUMNS)
    assert len(rows) == makeup.rejected + makeup.klaviyo_fails
    assert sum(r["stage"] == "klaviyo" for r in rows) == makeup.klaviyo_fails

    assert sorted(world.kx.list_emails(LIST_ID)) == sorted(makeup.imported_emails)
    for path, shot in (("/", "dashboard"), ("/exports", "exports"), ("/runs", "runs")):
        page.goto(path)
        world.look(page, shot)
    page.goto("/audit")
    expect(page.locator("#audit-table")).to_contain_text("ada")
    world.look(page, "audit")
    page.context.close()


def test_a_contributor_does_not_see_an_admin_only_connection(world: World) -> None:
    admin = sign_in(world, world.tab().new_page(), "ada")
    if not world.shared_connection:  # this test alone: scenario 1 did not add it
        world.shared_connection = add_connection(world, admin, "Shop", "Admins and contributors")
    hidden = add_connection(world, admin, "Finance", "Admins only")
    admin.context.close()

    page = sign_in(world, world.tab().new_page(), "cole")
    page.goto("/connections")
    table = page.locator("#connections-table")
    expect(table).to_contain_text(world.shared_connection)
    expect(table).not_to_contain_text(hidden)
    expect(table).not_to_contain_text("Finance")
    world.look(page)

    page.goto("/exports/new")
    options = page.locator("#export-connection option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert world.shared_connection in options
    assert hidden not in options
    world.look(page)

    answer = page.goto(f"/connections/{hidden}")
    assert answer is not None
    assert answer.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator("#error-message")).to_have_text(f"no connection '{hidden}'")
    expect(page.locator("body")).not_to_contain_text("Finance")
    world.look(page)
    page.context.close()


def test_token_sign_in_wrong_password_and_a_form_without_its_csrf_field(world: World) -> None:
    page = world.tab().new_page()
    page.goto("/signin")
    page.get_by_label("Token", exact=True).fill(world.token)
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page.locator("#signed-in-as")).to_contain_text("ada")
    world.look(page)

    page.goto("/connections")
    page.locator("#connection-form input[name=csrf]").evaluate("field => field.remove()")
    page.get_by_label("Display name", exact=True).fill("Forged")
    page.get_by_label("API key", exact=True).fill(world.kx.api_key)
    page.locator("#connection-consent").check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Verify with Klaviyo and save").click()
    assert posted.value.status == 403
    expect(page.locator("#error-message")).to_contain_text("Refused")
    world.look(page)
    page.goto("/connections")
    expect(page.locator("#connections-table")).not_to_contain_text("Forged")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#notice")).to_have_text("You are signed out.")
    page.context.close()

    page = world.tab().new_page()
    page.goto("/signin")
    page.get_by_label("User name", exact=True).fill("ada")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.locator("#signin-submit").click()
    expect(page.locator("#form-problem")).to_have_text("The user name or the password is wrong.")
    expect(page.locator("#signed-in-as")).to_have_count(0)
    world.look(page)
    assert [c["name"] for c in page.context.cookies()] == []
    page.goto("/")
    assert urlpath(page.url) == "/signin", "no session: the dashboard sends to sign in"
    page.context.close()


def test_the_sign_in_form_works_with_the_keyboard_alone(world: World) -> None:
    page = world.tab().new_page()
    page.goto("/signin")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "signin-user":
            break
    else:
        raise AssertionError("Tab never reached the User name field")
    page.keyboard.type("cole")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "signin-password"
    page.keyboard.type(PASSWORDS["cole"])
    page.keyboard.press("Enter")
    expect(page.locator("#signed-in-as")).to_contain_text("cole")
    assert urlpath(page.url) == "/"
    world.look(page)
    page.context.close()


def test_no_page_shown_and_no_download_holds_the_api_key(world: World) -> None:
    if world.rejected_csv is None:
        pytest.fail("needs the first scenario's run in the same session: run the whole module")
    key = world.kx.api_key
    assert world.pages, "no page was kept"
    assert [i for i, html in enumerate(world.pages) if key in html] == []
    assert key not in world.rejected_csv
    # Every page the browser went to, fetched again as the admin (the pages not kept too).
    context = world.tab()
    sign_in(world, context.new_page(), "ada")
    assert len(set(world.urls)) >= 10, world.urls
    for url in sorted(set(world.urls)):
        if "/signout" not in url:
            answer = context.request.get(url)
            assert key not in answer.text(), f"{urlpath(url)} shows the API key"
    context.close()


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]
