"""Logins, scoped sessions, user management and the audit log from Python."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import ama
from conftest import mail

PW = "tulip-orbit-canyon-42"


@pytest.fixture
def populated(acme: ama.Tenant) -> ama.Tenant:
    acme.ingest(mail("for bob", to="bob@acme.test"))
    acme.ingest(mail("for carol", to="carol@acme.test"))
    acme.add_user("bob", roles=["end-user"], addresses=["bob@acme.test"], password=PW)
    acme.add_user("root", roles=["admin"], password=PW)
    acme.add_user("audrey", roles=["auditor"], password=PW)
    return acme


def test_scoped_session_sees_only_its_mail(archive: ama.Archive, populated: ama.Tenant) -> None:
    with archive.login("acme", "bob", PW, source="192.0.2.4") as s:
        assert s.user == "bob" and s.roles == ("end-user",)
        assert s.expires_at > datetime.now(timezone.utc)
        subjects = [h.subject for h in s.tenant.search("")]
        assert subjects == ["for bob"]
        other = next(h for h in populated.search("subject:carol"))
        with pytest.raises(ama.NotFound):
            s.tenant.get(other.id)
        token_view = s.tenant
    # logged out at the end of the block: the view stops working
    with pytest.raises(ama.Unauthenticated):
        token_view.count()


def test_admin_without_auditor_reads_no_mail(archive: ama.Archive, populated: ama.Tenant) -> None:
    s = archive.login("acme", "root", PW)
    with pytest.raises(ama.AccessDenied):
        s.tenant.count()
    with pytest.raises(ama.AccessDenied):
        s.tenant.audit()


def test_refusals_are_typed(archive: ama.Archive, populated: ama.Tenant) -> None:
    with pytest.raises(ama.Unauthenticated) as wrong:
        archive.login("acme", "bob", "not-the-password")
    with pytest.raises(ama.Unauthenticated) as unknown:
        archive.login("acme", "nobody", "not-the-password")
    assert str(wrong.value) == str(unknown.value)
    with pytest.raises(ama.WeakPassword, match="at least 12"):
        populated.add_user("x", roles=["auditor"], password="short")
    with pytest.raises(ama.IdentityError):
        populated.add_user("bob", roles=["auditor"])
    with pytest.raises(ama.InvalidArgument):
        populated.add_user("y", roles=["superuser"])
    populated.disable_user("bob")
    with pytest.raises(ama.Unauthenticated):
        archive.login("acme", "bob", PW)
    assert isinstance(ama.LockedOut("x", 3), ama.Unauthenticated)


def test_lockout_after_failures(archive: ama.Archive, populated: ama.Tenant) -> None:
    for _ in range(5):
        with pytest.raises(ama.Unauthenticated):
            archive.login("acme", "audrey", "wrong-wrong-wrong")
    with pytest.raises(ama.LockedOut) as e:
        archive.login("acme", "audrey", PW)
    assert e.value.retry_after is not None and 0 < e.value.retry_after <= 30


def test_users_and_audit(archive: ama.Archive, populated: ama.Tenant) -> None:
    populated.grant_role("bob", "auditor")
    users = {u.id: u for u in populated.users()}
    assert users["bob"].roles == ("end-user", "auditor")
    assert users["bob"].addresses == ("bob@acme.test",)
    assert not users["root"].last_login
    auditor = archive.login("acme", "audrey", PW)
    auditor.tenant.count("for")
    log = populated.audit()
    assert log[0].action == "tenant-create"
    search = [e for e in log if e.action == "search" and e.user == "audrey"]
    assert len(search) == 1 and search[0].frontend == "python"
    logins = populated.audit(action="login")
    assert [e.user for e in logins] == ["audrey"]
    assert populated.audit(since=datetime.now(timezone.utc) + timedelta(days=1)) == []
    with pytest.raises(ama.InvalidArgument):
        populated.audit(action="nonsense")
    report = auditor.tenant.verify_audit()
    assert report.intact and report.entries == len(populated.audit()) - 1
    assert len(report.head_hash) == 64
