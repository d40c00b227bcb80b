"""Every example in examples/python runs on a small archive and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import ama
from conftest import EXAMPLE_MAIL, PASSPHRASE, REPO

EXAMPLES = REPO / "examples" / "python"


def run(script: str, *args: str) -> str:
    env = dict(os.environ, AMA_PASSPHRASE=PASSPHRASE)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_examples(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ama.Archive.create(data, passphrase=PASSPHRASE, fast_kdf=True) as a:
        a.create_tenant("acme", domains=["acme.example"])
    out = run("bulk_import.py", "--data", str(data), "--tenant", "acme", str(EXAMPLE_MAIL))
    assert "imported" in out and "refused 0" in out
    with ama.Archive.open(data, passphrase=PASSPHRASE) as a:
        hits = list(a.tenant("acme").search(""))
        sender = hits[0].from_[0].address
        year = hits[0].date.year
        expected = a.tenant("acme").count(f"from:{sender} after:{year}-01-01 before:{year + 1}-01-01")
    report = run("domain_report.py", "--data", str(data), "--tenant", "acme")
    rows = report.strip().splitlines()
    assert rows[0] == "domain,messages"
    assert sum(int(r.rsplit(",", 1)[1]) for r in rows[1:]) == len(hits)
    zpath = tmp_path / "custodian.zip"
    run(
        "custodian_export.py", "--data", str(data), "--tenant", "acme",
        "--custodian", sender, "--year", str(year), "--out", str(zpath),
    )
    with zipfile.ZipFile(zpath) as z:
        assert len([n for n in z.namelist() if n.endswith(".eml")]) == expected > 0
    out = run(
        "hold_by_query.py", "--data", str(data), "--tenant", "acme",
        "--name", "case-1", "--query", f"from:{sender}", "--reason", "test",
    )
    assert "hold case-1 placed" in out
    with ama.Archive.open(data, passphrase=PASSPHRASE) as a:
        assert [h[0] for h in a.tenant("acme").holds()] == ["case-1"]
