"""The principal seam: the operator sees everything, an end-user view only its mail."""

from __future__ import annotations

import pytest

import ama

from conftest import mail


def test_scoped_session_sees_only_its_mail(archive: ama.Archive, acme: ama.Tenant) -> None:
    to_alice = acme.ingest(mail("for alice", sender="bob@acme.test", to="alice@acme.test"))
    from_alice = acme.ingest(mail("from alice", sender="alice@acme.test", to="bob@acme.test"))
    # Alice is only a Bcc (envelope) recipient of this one; Dave is another Bcc.
    bcc = acme.ingest(mail("board", sender="ceo@acme.test", to="board@acme.test"),
                      rcpt_to=["alice@acme.test", "dave@acme.test"])
    other = acme.ingest(mail("not alice", sender="bob@acme.test", to="carol@acme.test"))

    alice = archive.tenant("acme", as_end_user=["Alice@ACME.test"])
    assert isinstance(alice, ama.TenantView) and not isinstance(alice, ama.Tenant)
    assert alice.end_user == ("Alice@ACME.test",)
    seen = {h.id for h in alice.search()}
    assert seen == {to_alice.id, from_alice.id, bcc.id}
    assert alice.count() == 3 and acme.count() == 4
    assert alice.count("subject:alice") == 2
    # Alice sees her own envelope recipient, never Dave's.
    assert alice.get(bcc.id).envelope_recipients == ("alice@acme.test",)
    assert acme.get(bcc.id).envelope_recipients == ("alice@acme.test", "dave@acme.test")
    # Someone else's mail does not exist for her.
    with pytest.raises(ama.NotFound):
        alice.get(other.id)
    with pytest.raises(ama.NotFound):
        alice.get_hit(other.id)
    # The view is read-only: no ingest or import.
    assert not hasattr(alice, "ingest") and not hasattr(alice, "import_path")

    carol = archive.tenant("acme", as_end_user="carol@acme.test")
    assert [h.id for h in carol.search()] == [other.id]
    assert "end user" in repr(carol) and "operator" in repr(acme)


def test_scope_is_per_tenant(archive: ama.Archive, acme: ama.Tenant) -> None:
    other = archive.create_tenant("other")
    r = other.ingest(mail("elsewhere", sender="alice@acme.test"))
    assert acme.count() == 0
    with pytest.raises(ama.NotFound):
        acme.get(r.id)
    assert archive.tenant("other", as_end_user="alice@acme.test").count() == 1
