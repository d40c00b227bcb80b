"""A first session with `import ama`: create an archive, add a tenant, archive
the example mail, search it as the operator and as an end user, read a message
back byte-exact and hand it to the standard library's e-mail parser.

Run it from the repository root (after `./ama-py/run-tests.sh` or
`pip install ./ama-py`):

    python examples/python/quickstart.py
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

import ama

MAIL = Path(__file__).resolve().parents[1] / "mail"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # fast_kdf: cheap key derivation, for a demo only. A real archive is
        # opened with ama.Archive.open(path, passphrase=...) or key_file=....
        with ama.Archive.create(
            Path(tmp) / "archive", passphrase="a long demo passphrase", fast_kdf=True
        ) as archive:
            acme = archive.create_tenant("acme", name="ACME Corp", domains=["acme.example"])

            summary = acme.import_path(MAIL)
            print(f"imported {summary.imported}, refused {summary.refused}")

            # One more, with its SMTP envelope: a Bcc recipient is only there.
            raw = (MAIL / "01-welcome.eml").read_bytes().replace(b"Welcome", b"Welcome again", 1)
            receipt = acme.ingest(
                raw,
                mail_from="it@acme.example",
                rcpt_to=["auditor@acme.example"],
                received_at=datetime.now(timezone.utc),
            )
            print(f"archived {receipt.id} (sha256 {receipt.sha256[:12]}…)")

            results = acme.search("has:attachment OR subject:welcome", limit=10)
            print(f"{results.total} messages match:")
            for hit in results:
                sender = ", ".join(str(m) for m in hit.from_)
                print(f"  {hit.date:%Y-%m-%d %H:%M} {sender:40.40} {hit.subject}")

            message = acme.get(receipt.id)
            assert message.raw == raw  # exactly what was archived
            parsed = message.as_email()
            print("Subject via email:", parsed["Subject"])
            print("Body:", message.text.strip().splitlines()[0])

            # The same tenant as the auditor sees it only through his own mail.
            auditor = archive.tenant("acme", as_end_user="auditor@acme.example")
            print("auditor@acme.example sees", auditor.count(), "message(s)")

            try:
                acme.search("from: alice")
            except ama.QueryError as e:
                print(f"bad query: {e} (position {e.position})")


if __name__ == "__main__":
    main()
