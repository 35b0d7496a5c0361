"""The whole log of a real `fhirsrv serve` (demo region, JSON lines) after a representative run
of requests holds no personal data: no e-mail address, person's name or phone number of the
demo directory or of the requests, and none of the secrets used (tokens, a client secret).

The requests search by name, e-mail and phone, write resources carrying names and e-mails
with a token, apply to the directory with a referent's contact details, fail (400, 401, 404,
a failed login, a forged token) and read the metrics with their token.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.tcp_faults import free_port
from tests.workflow.test_forms import complete_body

PROJECT = Path(__file__).resolve().parents[2]
DEMO = PROJECT / "seed" / "demo"
# The first start loads the demo region (about 10 s on a quiet machine): a safety limit only.
START_WITHIN_SECONDS = 900
METRICS_TOKEN = "metrics-scraper-token-7c1e0a9b55d2"
CLIENT_NAME = "Yann Le Bras"  # a client named after a person: its name must not be logged
NEW_PERSON = {"family": "Quéméner", "given": ["Gwenaëlle"], "email": "gwenaelle.quemener@exemple.bzh"}
FORGED_TOKEN = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJmb3JnZWQifQ.c2lnbmF0dXJl"


@dataclass
class Personal:
    emails: set[str]
    names: set[str]
    phones: set[str]


def demo_personal_data() -> Personal:
    """Every e-mail, phone and HumanName part (family, given) of the demo resources."""
    found = Personal(set(), set(), set())
    for path in sorted(DEMO.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            _collect(json.loads(line), found)
    assert len(found.emails) > 700 and len(found.names) > 50 and len(found.phones) > 500
    return found


def _collect(res: Any, found: Personal) -> None:
    if isinstance(res, list):
        for item in res:
            _collect(item, found)
        return
    if not isinstance(res, dict):
        return
    if res.get("system") in ("email", "phone") and isinstance(res.get("value"), str):
        (found.emails if res["system"] == "email" else found.phones).add(res["value"])
    if "family" in res or "given" in res:
        found.names.update(n for n in [res.get("family"), *(res.get("given") or [])] if n)
    for value in res.values():
        _collect(value, found)


@dataclass
class Answer:
    status: int
    body: Any


class Server:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None,
        content_type: str = "application/fhir+json", headers: dict[str, str] | None = None,
    ) -> Answer:  # fmt: skip
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return Answer(response.status, _decoded(response.read()))
        except urllib.error.HTTPError as error:
            return Answer(error.code, _decoded(error.read()))

    def token(self, client_id: str, secret: str) -> Answer:
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        return self.call(
            "POST", "/fhir/token", b"grant_type=client_credentials",
            content_type="application/x-www-form-urlencoded", headers={"Authorization": f"Basic {basic}"},
        )  # fmt: skip


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str], Path]]:
    """`fhirsrv serve` on a fresh SQLite database with the demo region, a regional admin's
    credentials, and the file its log goes to."""
    database = f"sqlite:///{tmp_path / 'directory.sqlite3'}"
    env = {
        "PATH": "/usr/bin:/bin",
        "FHIRSRV_DATA_DIR": str(tmp_path),
        "FHIRSRV_LOG_FORMAT": "json",
        "FHIRSRV_METRICS_TOKEN": METRICS_TOKEN,
    }
    added = subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "clients", "add", CLIENT_NAME, "--role", "regional-admin",
         "--scopes", "system/*.cruds", "--database", database],
        env=env, capture_output=True, text=True, timeout=600, check=True, cwd=PROJECT,
    )  # fmt: skip
    credentials = json.loads(added.stdout)
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(port), "--database", database],
            env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=PROJECT,
        )  # fmt: skip
        try:
            server = Server(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + START_WITHIN_SECONDS
            while True:
                try:
                    if server.call("GET", "/readyz").status == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the server did not start:\n" + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            yield server, credentials, log_path
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_the_log_of_a_representative_run_holds_no_personal_data(served):
    server, credentials, log_path = served
    personal = demo_personal_data()
    role = json.loads((DEMO / "06-PractitionerRole.ndjson").read_text(encoding="utf-8").splitlines()[0])
    practitioner = json.loads((DEMO / "04-Practitioner.ndjson").read_text(encoding="utf-8").splitlines()[0])
    family, given = practitioner["name"][0]["family"], practitioner["name"][0]["given"][0]
    email = next(t["value"] for t in role["telecom"] if t["system"] == "email")
    phone = sorted(personal.phones)[0]

    denied = server.token(credentials["client_id"], "not-the-secret")  # a failed login
    assert denied.status == 401
    assert server.token("anne.legoff@vivre-apres.fr", "guess").status == 401  # an e-mail as client id
    token = server.token(credentials["client_id"], credentials["client_secret"]).body["access_token"]

    expected = [  # (method, path, body, token, status)
        ("GET", f"/fhir/Practitioner?name={family}", None, None, 200),
        ("GET", f"/fhir/Practitioner?family={family}&given={given}", None, token, 200),
        ("GET", f"/fhir/PractitionerRole?email={email}", None, None, 200),
        ("GET", f"/fhir/Practitioner?phone={phone.replace(' ', '%20')}", None, token, 200),
        ("POST", "/fhir/Practitioner/_search", f"name={family}&email={email}".encode(), token, 200),
        ("GET", f"/fhir/Practitioner/{practitioner['id']}", None, token, 200),
        ("GET", f"/fhir/PractitionerRole/{role['id']}/_history", None, None, 200),
        ("GET", f"/fhir/Practitioner?family:bogus={family}", None, None, 400),
        ("GET", f"/fhir/Practitioner?{family.replace(' ', '')}=1", None, None, 400),
        ("GET", "/fhir/Practitioner/no-such-person", None, None, 404),
        ("POST", "/fhir/Practitioner", _person(NEW_PERSON), None, 401),
        ("POST", "/fhir/Practitioner", _person(NEW_PERSON), token, 201),
        ("POST", "/fhir/Practitioner", _person(NEW_PERSON) | {"active": "yes"}, token, 400),
        ("PUT", f"/fhir/Practitioner/{practitioner['id']}",
         _person(NEW_PERSON) | {"id": practitioner["id"]}, token, 200),
        ("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Practitioner"}, "resource": _person(NEW_PERSON)}]}, token, 200),
        ("POST", "/fhir/Organization/$apply", complete_body(), None, 201),
        ("GET", "/fhir/Organization", None, FORGED_TOKEN, 401),
    ]  # fmt: skip
    for method, path, body, bearer, status in expected:
        content = "application/x-www-form-urlencoded" if isinstance(body, bytes) else "application/fhir+json"
        answer = server.call(method, path, body, token=bearer, content_type=content)
        assert answer.status == status, (method, path, answer.body)
    patch = [{"op": "replace", "path": "/telecom/0/value", "value": NEW_PERSON["email"]}]
    patched = server.call(
        "PATCH", f"/fhir/PractitionerRole/{role['id']}", patch, token=token, content_type="application/json-patch+json"
    )
    assert patched.status == 200, patched.body
    said_email = server.call("GET", "/fhir/metadata", headers={"X-Request-ID": f"from-{email}"})
    assert said_email.status == 200
    metrics = server.call("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status == 200 and "fhirsrv_http_requests_total" in metrics.body

    log = log_path.read_text(encoding="utf-8")  # each request's line is written before its answer
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("logger") == "fhirsrv.request"]
    # The log is there, complete: one line per request above (token calls included).
    assert len(requests) >= len(expected) + 6, log[-3000:]
    seen = {(line["interaction"], line["status"]) for line in requests}
    for pair in (("token", 401), ("search-type", 200), ("create", 201), ("update", 200), ("transaction", 200),
                 ("operation", 201), ("patch", 200), ("read", 404), ("search-type", 400), ("metrics", 200)):  # fmt: skip
        assert pair in seen, (pair, sorted(seen))
    assert any(line.get("params") == ["name", "email"] for line in requests)

    applicant = complete_body()["parameter"]
    referent = {p["name"]: p.get("valueString") for p in applicant[1]["part"]}
    structure = {p["name"]: p.get("valueString") for p in applicant[0]["part"]}
    emails = personal.emails | {NEW_PERSON["email"], referent["email"], structure["email"]}
    names = personal.names | {NEW_PERSON["family"], *NEW_PERSON["given"], referent["family"], referent["given"],
                              *CLIENT_NAME.split(" ", 1)}  # fmt: skip
    phones = personal.phones | {referent["phone"], structure["phone"]}
    secrets = {token, credentials["client_secret"], METRICS_TOKEN, FORGED_TOKEN, "not-the-secret"}
    found = [e for e in emails if e in log] + [p for p in phones if p in log] + [s for s in secrets if s in log]
    found += [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", log)]
    assert not found, f"personal data or secrets in the log: {sorted(found)[:20]}"
    assert "@" not in log, "an address-like text in the log"


def _person(person: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "name": [{"family": person["family"], "given": person["given"]}],
        "telecom": [{"system": "email", "value": person["email"]}],
    }

