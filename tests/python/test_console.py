"""The security team's console in a real browser: Debian's headless Chromium,
driven by Selenium, trusting the stack's local CA through an NSS database (no
certificate errors ignored).

One stack (`entraflow up`, console included) runs the demo, so the console has a
real run to show: a person with the "Audit Log Reader" role signs in on the
authority's own page, sees the run with its principals by name, opens the
denial and sees the resource and the missing role, sees the charts and the
chain integrity with the signer's key id; a person without the role is refused
with a page naming it; and every page view, allowed or refused, is on the audit
log's `entraflow/console` chain. Every page is saved as a PNG in
target/reports/console/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from conftest import BIN, REPO, Server, parse_env_file

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CERTUTIL = shutil.which("certutil")
REPORTS = REPO / "target" / "reports" / "console"

if not (CHROMIUM and CHROMEDRIVER and CERTUTIL):
    if os.environ.get("ENTRAFLOW_REQUIRE_BROWSER"):
        raise RuntimeError("chromium, chromedriver and certutil are required (scripts/test.sh installs them)")
    pytest.skip("no chromium/chromedriver/certutil (scripts/test.sh installs Debian's)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

AUDITOR = ("alice.auditor@entraflow.local", "Alice Auditor", "Audit-Evidence-1")
OUTSIDER = ("bob.builder@entraflow.local", "Bob Builder", "Builder-Nope-2")
ON_CALL = ("carol.oncall@entraflow.local", "Carol On-Call", "Group-Member-3")


class Stack:
    """`entraflow up` (authority, gate, console) on a fresh data directory."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir
        self.server = Server(data_dir, ["up", "--authority-port", "0", "--imds-port", "0", "--gate-port", "0",
                                        "--console-port", "0"], "gate.env")
        self.env = parse_env_file(data_dir / "env")
        self.console = self.env["ENTRAFLOW_CONSOLE_URL"]
        assert parse_env_file(data_dir / "console.env")["ENTRAFLOW_CONSOLE_URL"] == self.console

    def cli(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run([BIN, "--data-dir", str(self.dir), *args], capture_output=True, text=True,
                             input=input, timeout=120)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return out.stdout

    def user(self, upn: str, name: str, password: str) -> str:
        return json.loads(self.cli("ad", "user", "create", "--upn", upn, "--display-name", name,
                                   "--password-stdin", "-o", "json", input=password + "\n"))["id"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("console")
    s = Stack(data)
    try:
        yield s
    finally:
        s.server.stop()


@pytest.fixture(scope="module")
def demo_run(stack) -> str:
    """The demo, against the running stack (it reuses it): real traffic, a real denial."""
    env = {**os.environ, "VIRTUAL_ENV": str(REPO / ".venv")}
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "ENTRAFLOW_SQL_BACKEND"):
        env.pop(name, None)
    out = subprocess.run([BIN, "--data-dir", str(stack.dir), "demo", "--epochs", "1", "--shards", "2",
                          "--limit", "200", "--python", sys.executable],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    assert "reusing the authority and gate" in out.stdout
    return re.search(r"done: run (\S+) trained", out.stdout).group(1)


@pytest.fixture(scope="module")
def people(stack):
    """An auditor holding "Audit Log Reader" at the audit log's scope, and someone without it."""
    auditor = stack.user(*AUDITOR)
    outsider = stack.user(*OUTSIDER)
    scope = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/entraflow-local"
             "/providers/Entraflow.Audit/auditLogs/default")
    stack.cli("role", "assignment", "create", "--assignee", AUDITOR[0], "--role", "Audit Log Reader",
              "--scope", scope)
    return {"auditor": auditor, "outsider": outsider, "scope": scope}


def nss_db(home: Path, ca: Path) -> None:
    """Chromium on Linux trusts what $HOME/.pki/nssdb trusts: the local CA, as a CA for servers."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run([CERTUTIL, "-d", f"sql:{db}", "-N", "--empty-password"], check=True)
    subprocess.run([CERTUTIL, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "entraflow local CA", "-i", str(ca)],
                   check=True)


def browser(tmp: Path, ca: Path) -> webdriver.Chrome:
    home = tmp / "home"
    nss_db(home, ca)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    # The DevTools network log: which URLs the browser was sent through (redirects included).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "HOME": str(home)})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


def shoot(driver, name: str) -> Path:
    """A full-page PNG of what the browser shows."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 800)")
    driver.set_window_size(1400, min(height + 40, 6000))
    path = REPORTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path


def sign_in(driver, console: str, upn: str, password: str, page: str = "/runs") -> None:
    driver.get(console + page)
    # Not signed in: the console sends the browser to the authority's sign-in page.
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.NAME, "username")))
    assert not driver.current_url.startswith(console), driver.current_url
    assert "code_challenge_method=S256" in driver.current_url and "nonce=" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(upn)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.startswith(console))


def requested_urls(driver) -> list[str]:
    """Every URL the browser requested since the last call, redirects included."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def chart_state(driver, canvas_id: str) -> dict:
    """What Chart.js drew on a canvas: its legend, its axes and their ticks."""
    return driver.execute_script(
        """
        const c = Chart.getChart(document.getElementById(arguments[0]));
        if (!c) { return null; }
        return {
          legend: c.legendItems ? c.legendItems.map(i => i.text) : c.data.datasets.map(d => d.label),
          xTicks: c.scales.x.ticks.length, yTicks: c.scales.y.ticks.length,
          xTitle: c.options.scales.x.title.text, yTitle: c.options.scales.y.title.text,
          colours: c.data.datasets.map(d => d.backgroundColor),
        };
        """,
        canvas_id,
    )


def console_records(stack) -> list[dict]:
    out = stack.cli("audit", "query", "--log", "entraflow/console", "-o", "json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_an_auditor_sees_the_run_its_denial_charts_and_integrity(stack, demo_run, people, tmp_path):
    driver = browser(tmp_path, stack.dir / "ca.pem")
    try:
        sign_in(driver, stack.console, AUDITOR[0], AUDITOR[2])
        assert driver.current_url == stack.console + "/runs"
        cookies = {c["name"]: c for c in driver.get_cookies()}
        session = cookies["__Host-entraflow-console"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax", session
        assert "eyJ" not in session["value"], "the cookie holds a random id, never a token"
        assert AUDITOR[1] in driver.find_element(By.CSS_SELECTOR, ".who").text
        runs = driver.find_element(By.ID, "runs").text
        assert demo_run in runs and "project-a-trainer" in runs, runs
        shoot(driver, "01-runs")

        driver.find_element(By.LINK_TEXT, demo_run).click()
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "run-id")))
        principals = driver.find_element(By.ID, "principals").text
        for name in ("project-a-trainer", "project-b-trainer", "platform-data-stager"):
            assert name in principals, principals
        # Each principal also by its object id, as the directory knows it.
        trainer_oid = json.loads(stack.cli("ad", "sp", "list", "-o", "json"))
        trainer_oid = next(sp["id"] for sp in trainer_oid if sp["displayName"] == "project-a-trainer")
        assert trainer_oid in principals
        accesses = driver.find_element(By.ID, "accesses").text
        assert "project-a/digits/train-" in accesses and "models/" in accesses, accesses
        for canvas in ("run-counts", "run-bytes"):
            state = chart_state(driver, canvas)
            assert state and state["xTicks"] > 0 and state["yTicks"] > 0, state
        counts = chart_state(driver, "run-counts")
        assert {"reads (allowed)", "writes and deletes (allowed)", "denied"} <= set(counts["legend"]), counts
        assert len(set(counts["colours"])) == len(counts["colours"]), "read, write and deny must differ"
        tokens = driver.find_element(By.ID, "tokens").text
        assert "token.issued" in tokens and "project-a-trainer" in tokens, tokens
        assert "entraflow audit lineage az://" in driver.find_element(By.ID, "lineage").text
        shoot(driver, "02-run")

        denials = driver.find_element(By.ID, "denials")
        row = denials.find_element(By.CSS_SELECTOR, "tr.deny")
        assert "project-b-trainer" in row.text and "Storage Blob Data Reader" in row.text, row.text
        row.find_element(By.LINK_TEXT, "open").click()
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "record")))
        resource = driver.find_element(By.ID, "resource").text
        assert "project-a/" in resource and "/containers/project-a" in resource, resource
        assert "Storage Blob Data Reader" in driver.find_element(By.ID, "event-missing-role").text
        record = driver.find_element(By.ID, "record").text
        assert "blobs/read" in record and "deny" in record, record
        shoot(driver, "03-denial")

        driver.get(f"{stack.console}/principals")
        assert "project-a-trainer" in driver.find_element(By.ID, "principal-list").text
        shoot(driver, "04-principals")
        driver.get(f"{stack.console}/principals/{trainer_oid}")
        assignments = driver.find_element(By.ID, "assignments").text
        assert "Storage Blob Data Reader" in assignments and "in effect" in assignments, assignments
        assert "role_assignment.create" in driver.find_element(By.ID, "changes").text
        shoot(driver, "05-principal")

        driver.get(f"{stack.console}/timeline?run={demo_run}")
        WebDriverWait(driver, 30).until(lambda d: chart_state(d, "timeline-counts"))
        timeline = chart_state(driver, "timeline-counts")
        assert {"reads (allowed)", "denied", "tokens issued"} <= set(timeline["legend"]), timeline
        assert timeline["xTicks"] > 1 and timeline["yTicks"] > 1 and "time (UTC)" in timeline["xTitle"]
        assert timeline["yTitle"] == "requests"
        assert chart_state(driver, "timeline-bytes")["yTitle"].startswith("bytes (")
        shoot(driver, "06-timeline")

        # The writers sign a checkpoint every minute; the demo was quicker. Sign the
        # chains' heads now, as the security team would before an export.
        for chain in ("entraflow/authority", "entraflow/gate", "entraflow/console"):
            stack.cli("audit", "checkpoint", "--log", chain)
        driver.get(f"{stack.console}/integrity")
        shoot(driver, "07-integrity")
        status = driver.find_element(By.ID, "integrity-status").text
        chains = driver.find_element(By.ID, "chains").text
        assert status.startswith("Verified"), (status, chains)
        key = (stack.dir / "audit-key.pub").read_text().strip()
        name, key_id, _ = key.split("+", 2)
        assert f"{name}+{key_id}" in chains, chains
        for chain in ("entraflow/gate", "entraflow/authority", "entraflow/admin", "entraflow/console"):
            row = driver.find_element(By.XPATH, f"//table[@id='chains']//tr[td/code[text()='{chain}']]")
            assert "verified" in row.text and f"{name}+{key_id}" in row.text, row.text
        assert "FAILED" not in chains

        requested_urls(driver)
        driver.find_element(By.CSS_SELECTOR, ".who button").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/signed-out"))
        shoot(driver, "08-signed-out")
        # Signed out at the authority too (RP-initiated logout), which sent the browser back.
        authority = stack.env["AZURE_AUTHORITY_HOST"].rstrip("/")
        logout = [u for u in requested_urls(driver) if u.startswith(f"{authority}/") and "/oauth2/v2.0/logout?" in u]
        assert logout, "sign-out must pass through the authority's end_session_endpoint"
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(logout[0]).query))
        assert query["post_logout_redirect_uri"] == f"{stack.console}/signed-out", query
        assert query["client_id"], query
        driver.get(f"{stack.console}/runs")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.NAME, "username")))
        assert not driver.current_url.startswith(stack.console), "signed out means signed out"
    finally:
        driver.quit()

    views = [r for r in console_records(stack)
             if r["event_type"] == "console.view" and r.get("principal", {}).get("oid") == people["auditor"]]
    pages = [r["detail"] for r in views]
    for page in ("GET /runs", f"GET /runs/{demo_run}", "GET /event?log=", "GET /principals",
                 f"GET /principals/{trainer_oid}", f"GET /timeline?run={demo_run}", "GET /integrity"):
        assert any(p.startswith(page) for p in pages), (page, pages)
    assert all(r["decision"] == "allow" and r["role_name"] == "Audit Log Reader" for r in views)
    assert all(r["resource"] == people["scope"] and r["principal"]["name"] == AUDITOR[1] for r in views)


def test_a_person_without_the_role_is_refused_and_the_refusal_is_recorded(stack, people, tmp_path):
    driver = browser(tmp_path, stack.dir / "ca.pem")
    try:
        sign_in(driver, stack.console, OUTSIDER[0], OUTSIDER[2], page="/integrity")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "denied")))
        assert "You do not have access" in driver.find_element(By.TAG_NAME, "h1").text
        assert driver.find_element(By.ID, "missing-role").text == "Audit Log Reader"
        assert people["scope"] in driver.find_element(By.ID, "missing-scope").text
        assert OUTSIDER[1] in driver.find_element(By.ID, "denied").text
        assert "chains" not in driver.page_source and "integrity-status" not in driver.page_source
        shoot(driver, "09-forbidden")
    finally:
        driver.quit()
    refused = [r for r in console_records(stack) if r.get("principal", {}).get("oid") == people["outsider"]]
    assert any(r["event_type"] == "console.signin" for r in refused), "the sign-in itself is recorded"
    denied = [r for r in refused if r["event_type"] == "authz.denied"]
    assert denied and all(r["decision"] == "deny" and r["status"] == 403 for r in denied), refused
    assert any(r["detail"].startswith("GET /integrity") and "Audit Log Reader" in r["detail"] for r in denied)


def test_the_role_held_by_a_group_reaches_its_nested_members(stack, people, tmp_path):
    """The security team holds the role as a group; Carol is in it through a nested group."""
    carol = stack.user(*ON_CALL)
    team = json.loads(stack.cli("ad", "group", "create", "--display-name", "security-team", "-o", "json"))
    oncall = json.loads(stack.cli("ad", "group", "create", "--display-name", "security-oncall", "-o", "json"))
    stack.cli("ad", "group", "member", "add", "--group", "security-team", "--member-id", oncall["id"])
    stack.cli("ad", "group", "member", "add", "--group", "security-oncall", "--member-id", carol)
    grant = json.loads(stack.cli("role", "assignment", "create", "--assignee", team["id"],
                                 "--role", "Audit Log Reader", "--scope", people["scope"], "-o", "json"))
    assert grant["principalId"] == team["id"] and grant["principalType"] == "Group", grant
    driver = browser(tmp_path, stack.dir / "ca.pem")
    try:
        sign_in(driver, stack.console, ON_CALL[0], ON_CALL[2], page="/integrity")
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "integrity-status")))
        assert ON_CALL[1] in driver.find_element(By.CSS_SELECTOR, ".who").text
        shoot(driver, "10-group-member")
    finally:
        driver.quit()
    views = [r for r in console_records(stack)
             if r["event_type"] == "console.view" and r.get("principal", {}).get("oid") == carol]
    assert views and all(r["decision"] == "allow" for r in views), views
    assert all(r["assignment_id"].lower().endswith(grant["name"].lower()) for r in views), (grant, views)


def test_a_forged_callback_is_refused_and_recorded(stack):
    """A callback that no sign-in of this browser started (login CSRF, replayed codes) is refused."""
    import requests

    session = requests.Session()
    r = session.get(f"{stack.console}/auth/callback", params={"code": "x", "state": "y"},
                    verify=str(stack.dir / "ca.pem"), allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "does not belong to a sign-in started in this browser" in r.text
    assert "__Host-entraflow-console=" not in r.headers.get("set-cookie", ""), "no session for a forged answer"
    assert any(rec["event_type"] == "console.signin.refused" for rec in console_records(stack))
    # Security headers on every page.
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
