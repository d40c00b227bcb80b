"""The HTTP API from Python with ``requests``, against a real ``ama serve``
over TLS on loopback: log in, search, download a raw message and an export
job byte-identical, another tenant's message and job are 404, an invalid
or ended session token is 401.

The archive is made with the ``ama`` package, then served by the ``ama``
binary (``AMA_BIN``, default ``target/debug/ama``; run-tests.sh builds it).
TLS is verified against the self-signed localhost certificate the server
writes into its data directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

import ama
from conftest import PASSPHRASE, REPO, mail

requests = pytest.importorskip("requests")

AMA_BIN = Path(os.environ.get("AMA_BIN", REPO / "target" / "debug" / "ama"))
PASSWORD = "tulip-orbit-canyon-42"


class Server:
    def __init__(self, base: str, ca: Path, ids: Dict[str, str], raws: Dict[str, bytes]):
        self.base = base
        self.ca = str(ca)
        self.ids = ids
        self.raws = raws

    def url(self, path: str) -> str:
        return self.base + path

    def login(self, tenant: str, user: str) -> str:
        r = requests.post(
            self.url("/v1/login"),
            json={"tenant": tenant, "user": user, "password": PASSWORD},
            verify=self.ca,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        assert isinstance(token, str)
        return token

    def get(self, token: str, path: str, **kw: object) -> "requests.Response":
        return requests.get(
            self.url(path),
            headers={"Authorization": f"Bearer {token}"},
            verify=self.ca,
            timeout=30,
            **kw,
        )

    def post(self, token: str, path: str, **kw: object) -> "requests.Response":
        return requests.post(
            self.url(path),
            headers={"Authorization": f"Bearer {token}"},
            verify=self.ca,
            timeout=30,
            **kw,
        )


def _seed(data: Path) -> Tuple[Dict[str, str], Dict[str, bytes]]:
    ids: Dict[str, str] = {}
    raws: Dict[str, bytes] = {}
    with ama.Archive.create(data, passphrase=PASSPHRASE, fast_kdf=True) as a:
        acme = a.create_tenant("acme", domains=["acme.test"])
        globex = a.create_tenant("globex", domains=["globex.test"])
        acme.add_user("aud", roles=["auditor"], password=PASSWORD)
        acme.add_user("eve", roles=["end-user"], addresses=["eve@acme.test"], password=PASSWORD)
        globex.add_user("gus", roles=["auditor"], password=PASSWORD)
        for name, tenant, raw in [
            ("quarterly", acme, mail("Quarterly numbers", to="eve@acme.test", body="Q1 up.\r\nFrom the top")),
            ("private", acme, mail("Private matter", sender="bob@acme.test", to="carol@acme.test")),
            ("globex", globex, mail("Globex plans", sender="gina@globex.test", to="gus@globex.test")),
        ]:
            ids[name] = tenant.ingest(raw).id
            raws[name] = raw
    return ids, raws


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not AMA_BIN.is_file():
        pytest.skip(f"SKIPPED: no ama binary at {AMA_BIN} (cargo build -p ama-cli, or set AMA_BIN)")
    data = tmp_path_factory.mktemp("http") / "data"
    ids, raws = _seed(data)
    log = data.parent / "serve.log"
    env = dict(os.environ, AMA_PASSPHRASE=PASSPHRASE, AMA_DATA=str(data))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(AMA_BIN), "serve", "--http", "127.0.0.1:0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            m = re.search(r"HTTPS API and search page on 127\.0\.0\.1:(\d+)", log.read_text())
            if m:
                port = int(m.group(1))
            elif proc.poll() is not None:
                pytest.fail(f"ama serve exited: {log.read_text()}")
            else:
                time.sleep(0.1)
        if port is None:
            pytest.fail(f"ama serve did not start: {log.read_text()}")
        yield Server(f"https://localhost:{port}", data / "smtp-selfsigned.pem", ids, raws)
    finally:
        _stop(proc)


def test_login_search_and_raw_download_byte_identical(server: Server) -> None:
    aud = server.login("acme", "aud")
    r = server.get(aud, "/v1/tenants/acme/search", params={"q": 'subject:"Quarterly numbers"'})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 1
    assert body["hits"][0]["id"] == server.ids["quarterly"]
    assert body["hits"][0]["subject"] == "Quarterly numbers"
    r = server.get(aud, f"/v1/tenants/acme/messages/{server.ids['quarterly']}/raw")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "message/rfc822"
    assert r.content == server.raws["quarterly"]
    # An end user sees only her own mail.
    eve = server.login("acme", "eve")
    hits = server.get(eve, "/v1/tenants/acme/search", params={"q": ""}).json()["hits"]
    assert [h["id"] for h in hits] == [server.ids["quarterly"]]
    r = server.get(eve, f"/v1/tenants/acme/messages/{server.ids['private']}/raw")
    assert r.status_code == 404


def test_export_job_download_matches_the_direct_export(server: Server) -> None:
    aud = server.login("acme", "aud")
    direct = server.get(aud, "/v1/tenants/acme/export", params={"format": "mbox"})
    assert direct.status_code == 200
    r = server.post(aud, "/v1/tenants/acme/exports", params={"format": "mbox"})
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    for _ in range(200):
        job = server.get(aud, location).json()
        if job["status"] != "running":
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    assert job["exported"] == 2
    # Another tenant's auditor: the job does not exist for him.
    gus = server.login("globex", "gus")
    assert server.get(gus, location).status_code == 404
    assert server.get(gus, job["download"]).status_code == 404
    got = server.get(aud, job["download"], stream=True)
    assert got.status_code == 200
    data = b"".join(got.iter_content(65536))
    assert data == direct.content
    assert b"Subject: Quarterly numbers\r\n" in data and b"\n>From the top" in data  # mboxrd
    # Downloaded: gone.
    assert server.get(aud, location).status_code == 404


def test_other_tenants_are_not_found(server: Server) -> None:
    gus = server.login("globex", "gus")
    for path in [
        f"/v1/tenants/acme/messages/{server.ids['quarterly']}",
        f"/v1/tenants/acme/messages/{server.ids['quarterly']}/raw",
        "/v1/tenants/acme/search?q=",
        "/v1/tenants/acme/export",
    ]:
        r = server.get(gus, path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["type"] == "https://ama.invalid/problems/not-found"
    # Its own tenant's message, yes.
    r = server.get(gus, f"/v1/tenants/globex/messages/{server.ids['globex']}/raw")
    assert r.content == server.raws["globex"]


def test_invalid_and_ended_tokens_are_401(server: Server) -> None:
    path = f"/v1/tenants/acme/messages/{server.ids['quarterly']}/raw"
    for token in ["not-a-token", "0" * 64, ""]:
        r = server.get(token, path)
        assert r.status_code == 401, token
        assert r.json()["type"] == "https://ama.invalid/problems/unauthenticated"
    r = requests.get(server.url(path), verify=server.ca, timeout=30)
    assert r.status_code == 401
    # A session that ended (logged out) is refused like an expired one.
    aud = server.login("acme", "aud")
    assert server.get(aud, path).status_code == 200
    assert server.post(aud, "/v1/logout").status_code in (200, 204)
    assert server.get(aud, path).status_code == 401


def test_tls_is_verified(server: Server) -> None:
    # A client that does not trust the server's certificate refuses it.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url("/healthz"), timeout=30)
    assert requests.get(server.url("/healthz"), verify=server.ca, timeout=30).text == "ok\n"
