"""Shared fixtures: a fresh archive per test (cheap argon2 parameters), the
example mail of the repository, and the shared corpus when it is present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import ama

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_MAIL = REPO / "examples" / "mail"
CORPUS = Path(os.environ.get("AMA_CORPUS", REPO.parent / "shared" / "corpus"))
PASSPHRASE = "correct horse battery staple"

#: Figures measured by tests, printed at the end of the run.
MEASURED: Dict[str, str] = {}


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[ama.Archive]:
    with ama.Archive.create(tmp_path / "data", passphrase=PASSPHRASE, fast_kdf=True) as a:
        yield a


@pytest.fixture
def acme(archive: ama.Archive) -> ama.Tenant:
    return archive.create_tenant("acme", name="ACME Corp", domains=["acme.test"])


def mail(
    subject: str,
    *,
    sender: str = "alice@acme.test",
    to: str = "bob@acme.test",
    body: str = "Hello.",
    date: str = "Mon, 01 Jan 2024 10:00:00 +0000",
    extra: str = "",
) -> bytes:
    """A small, valid message with CRLF line ends."""
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <{abs(hash((subject, sender, to, body, date)))}@acme.test>",
    ]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def example_files() -> List[Path]:
    return sorted(p for p in EXAMPLE_MAIL.glob("*.eml"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("ama measurements")
        for k, v in MEASURED.items():
            terminalreporter.write_line(f"{k}: {v}")
