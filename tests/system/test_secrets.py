"""Secrets never leak: a real ``up`` is given keys and session tokens, refuses them in every way
it can, and no log line nor problem+json body carries key material; a key file others can read
stops ``up`` at start."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.system.test_up_and_demo import Up, base_env, calculator_up, cli, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.timeout(180)]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    with calculator_up(tmp_path, DS_LOG_LEVEL="DEBUG") as running:
        yield running


def secret_part(credential: str) -> str:
    """What must never be shown: all of a configured key, the random tail of the others."""
    if credential.startswith("dst_"):
        return credential.rsplit("_", 1)[1] if credential.count("_") >= 2 else credential
    return credential[16:] if credential.startswith("dsk_") else credential


class Recorder:
    """An HTTP client of ``up`` that keeps every problem body it is answered."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.problems: list[str] = []
        self.tokens: list[str] = []

    def call(self, credential: str | None, method: str, path: str, **kwargs: Any) -> Any:
        headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            self.problems.append(response.text)
        return response


def test_no_log_line_or_problem_carries_a_key_or_token(up: Up, tmp_path: Path) -> None:
    admin = (tmp_path / ".ds" / "api-keys").read_text().strip()
    env = {**up.env, "DS_API_URL": up.url, "DS_API_KEY": admin}
    keys: dict[str, str] = {}
    for name, role in (("ops", "operator"), ("bot", "sender"), ("ci", "reader")):
        made = cli("keys", "create", name, "--role", role, cwd=up.cwd, env=env)
        assert made.returncode == 0, made.stderr
        keys[name] = made.stdout.split()[-1]
        assert keys[name].startswith("dsk_")
    listed = cli("keys", "list", cwd=up.cwd, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row.split()[:2] for row in listed.stdout.splitlines()[1:]] == [
        ["bot", "sender"],
        ["ci", "reader"],
        ["ops", "operator"],
    ]
    assert not any(secret_part(k) in listed.stdout for k in keys.values())

    with httpx.Client(base_url=up.url, timeout=30) as http:
        web = Recorder(http)
        drive_and_refuse(web, admin, keys)
    assert up.stop() == 0
    log = up.output()
    assert log.count(admin) == 1, "the generated key is shown once, when it is made"
    assert "Generated an API key" in log.split(admin)[0]
    assert log.count("api.auth: forbidden") == 6
    assert log.count("api.auth: unauthenticated") == 6
    for credential in [*keys.values(), *web.tokens]:
        assert secret_part(credential) not in log
        for body in web.problems:
            assert secret_part(credential) not in body
    for body in web.problems:
        assert admin not in body
    for credential in keys.values():  # nor their digests, even at DEBUG
        assert hashlib.sha256(credential.encode()).hexdigest() not in log
    assert "logging set up for api" in log, "the control plane logged at DEBUG"


def drive_and_refuse(web: Recorder, admin: str, keys: dict[str, str]) -> None:
    opened = [
        web.call(keys["bot"], "POST", "/v1/sessions", json={"contract": "Calculator"}).json()
        for _ in range(2)
    ]
    (sid, token), (other, other_token) = ((s["id"], s["session_token"]) for s in opened)
    admins = web.call(admin, "POST", "/v1/sessions", json={"contract": "Calculator"}).json()
    clear = {"operation": "clear", "args": {}}
    assert web.call(token, "POST", f"/v1/sessions/{sid}/messages", json=clear).status_code == 202
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refusals = [
        (keys["ci"], "POST", "/v1/sessions", {"json": {"contract": "Calculator"}}, 403),
        (keys["ops"], "POST", f"/v1/sessions/{sid}/messages", {"json": clear}, 403),
        (keys["bot"], "POST", f"/v1/sessions/{admins['id']}/messages", {"json": clear}, 403),
        (keys["bot"], "GET", "/v1/keys", {}, 403),
        (token, "POST", f"/v1/sessions/{other}/messages", {"json": clear}, 403),
        (token, "GET", "/v1/sessions", {}, 403),
        (forged, "GET", f"/v1/sessions/{sid}", {}, 401),
        (keys["bot"][:-3] + "xyz", "GET", "/v1/contracts", {}, 401),
        ("no-such-key", "GET", "/v1/contracts", {}, 401),
        (None, "GET", "/v1/contracts", {}, 401),
        (token, "POST", f"/v1/sessions/{sid}/messages", {"json": {"operation": 7}}, 422),
        (token, "POST", f"/v1/sessions/{sid}/messages", {"content": b"{bad"}, 422),
        (admin, "GET", "/v1/sessions/no-such-session", {}, 404),
    ]
    for credential, method, path, kwargs, status in refusals:
        response = web.call(credential, method, path, **kwargs)
        assert response.status_code == status, (path, response.text)
    web.call(other_token, "POST", f"/v1/sessions/{other}/terminate")
    assert web.call(other_token, "GET", f"/v1/sessions/{other}").status_code == 401
    assert web.call(admin, "DELETE", "/v1/keys/ci").status_code == 204
    assert web.call(keys["ci"], "GET", "/v1/sessions").status_code == 401
    assert len(web.problems) == len(refusals) + 2
    web.tokens += [token, other_token, forged]


@pytest.mark.parametrize(("mode", "who"), [(0o640, "its group"), (0o604, "other users")])
def test_up_refuses_a_key_file_others_can_read(tmp_path: Path, mode: int, who: str) -> None:
    path = tmp_path / ".ds" / "api-keys"
    path.parent.mkdir()
    path.write_text("a-key-others-could-read\n")
    os.chmod(path, mode)
    try:
        started = subprocess.run(
            [sys.executable, "-m", "durable_sessions", "up", "--port", str(free_port())],
            cwd=tmp_path,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"up started on a key file of mode {mode:04o}")
    assert started.returncode == 1, started.stdout + started.stderr
    assert f"has mode 0{mode:o}: {who} can read or change it" in started.stderr
    assert "chmod 600" in started.stderr
    assert "a-key-others-could-read" not in started.stdout + started.stderr
