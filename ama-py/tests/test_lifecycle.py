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
