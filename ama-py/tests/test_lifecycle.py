"""Holds, retention, sweeps, verify and export from Python."""

from __future__ import annotations

import mailbox
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

import ama
from conftest import mail


def test_retention_holds_sweep_verify(archive: ama.Archive, acme: ama.Tenant) -> None:
    old = acme.ingest(mail("old", date="Mon, 02 Jan 2012 10:00:00 +0000")).id
    held = acme.ingest(mail("held", sender="carol@acme.test", date="Mon, 02 Jan 2012 10:00:00 +0000")).id
    acme.ingest(mail("new", date="Mon, 02 Jan 2023 10:00:00 +0000"))
    assert acme.set_retention("6y", year_end=True, rules=[("domain", "law.test", "10y")]) == 3
    assert acme.retain_until(old) == datetime(2019, 1, 1, tzinfo=timezone.utc)
    acme.place_hold("case-1", custodian="carol@acme.test", reason="lawsuit")
    with pytest.raises(ama.InvalidArgument):
        acme.place_hold("x", reason="r")
    deleted, kept = acme.sweep()
    assert deleted == [old] and kept == [held]
    with pytest.raises(ama.NotFound):
        acme.get(old)
    verified, tombs, problems = acme.verify()
    assert (verified, problems) == (2, [])
    assert tombs == [(old, "retention expired")]
    assert archive.verify()
    assert [h[0] for h in acme.holds()] == ["case-1"]
    acme.release_hold("case-1", reason="settled")
    assert acme.sweep()[0] == [held]


def test_export_zip_and_mbox_are_byte_identical(acme: ama.Tenant, tmp_path: Path) -> None:
    raws = {acme.ingest(mail(f"m{i}", body=f"From the start\nline {i}")).id: mail(f"m{i}", body=f"From the start\nline {i}") for i in range(3)}
    assert acme.export(tmp_path / "all.zip") == 3
    with zipfile.ZipFile(tmp_path / "all.zip") as z:
        emls = [n for n in z.namelist() if n.endswith(".eml")]
        assert sorted(z.read(n) for n in emls) == sorted(raws.values())
    assert acme.export(tmp_path / "one.mbox", query="subject:m1", format="mbox") == 1
    box = mailbox.mbox(str(tmp_path / "one.mbox"))
    assert len(box) == 1
    assert b"Subject: m1\r\n" in box.get_bytes(0)
    with pytest.raises(ama.Error):
        acme.export(tmp_path / "all.zip")  # never overwrites


def test_deletion_by_query_and_by_ids(acme: ama.Tenant) -> None:
    old = "Mon, 02 Jan 2012 10:00:00 +0000"
    a = acme.ingest(mail("spam one", date=old)).id
    b = acme.ingest(mail("spam two", sender="carol@acme.test", date=old)).id
    c = acme.ingest(mail("keep me", date=old)).id
    acme.set_retention("1y")
    acme.place_hold("case-2", custodian="carol@acme.test", reason="lawsuit")
    # Exactly one of ids= and query=; an empty query would delete everything.
    for bad in ({}, {"ids": [a], "query": "spam"}, {"query": " "}):
        with pytest.raises(ama.InvalidArgument):
            acme.request_deletion(reason="clean-up", **bad)  # type: ignore[arg-type]
    with pytest.raises(ama.QueryError):
        acme.request_deletion(reason="clean-up", query='subject:"open')
    r = acme.request_deletion(reason="clean-up", query="subject:spam")
    assert isinstance(r, ama.DeletionResult)
    assert r.status == "done" and r.request is None
    assert r.deleted == (a,)
    assert [k[0] for k in r.kept] == [b]  # held
    with pytest.raises(ama.NotFound):
        acme.get(a)
    r = acme.request_deletion(reason="done with it", ids=[c])
    assert r.deleted == (c,)
    # Four-eyes: only recorded.
    d = acme.ingest(mail("later", date=old)).id
    acme.set_retention("1y", four_eyes=True)
    r = acme.request_deletion(reason="later", query="subject:later")
    assert r.status == "pending" and r.request and r.deleted == ()
    assert acme.get(d).id == d


def test_export_of_a_legal_hold(archive: ama.Archive, acme: ama.Tenant, tmp_path: Path) -> None:
    held = acme.ingest(mail("held", sender="carol@acme.test")).id
    acme.ingest(mail("free"))
    acme.place_hold("case-3", custodian="carol@acme.test", reason="lawsuit")
    assert acme.export(tmp_path / "hold.mbox", hold="case-3", format="mbox") == 1
    box = mailbox.mbox(str(tmp_path / "hold.mbox"))
    assert [m["Subject"] for m in box] == ["held"]
    assert held
    with pytest.raises(ama.InvalidArgument):
        acme.export(tmp_path / "x.zip", hold="case-3", query="held")
    with pytest.raises(ama.InvalidArgument, match="no legal hold"):
        acme.export(tmp_path / "y.zip", hold="no-such-hold")
    # An end user may not export a hold.
    bob = archive.tenant("acme", as_end_user="bob@acme.test")
    with pytest.raises(ama.AccessDenied):
        bob.export(tmp_path / "z.zip", hold="case-3")
