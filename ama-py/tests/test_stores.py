"""An archive the ``ama`` command created on configured blob stores
(``ama init --stores``: here two local replicas with a write quorum of 2)
opens from Python as it opens from the command line: the package reads
``DATA/stores.json`` instead of refusing the directory.

Needs the ``ama`` binary (``AMA_BIN``, default ``target/debug/ama``;
run-tests.sh builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import ama
from conftest import EXAMPLE_MAIL, PASSPHRASE, REPO

AMA_BIN = Path(os.environ.get("AMA_BIN", REPO / "target" / "debug" / "ama"))


def run(data: Path, *args: str) -> str:
    env = dict(os.environ, AMA_DATA=str(data), AMA_PASSPHRASE=PASSPHRASE, AMA_INSECURE_FAST_KDF="1")
    out = subprocess.run([str(AMA_BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_archive_on_replicated_stores_opens_from_python(tmp_path: Path) -> None:
    if not AMA_BIN.is_file():
        pytest.skip(f"SKIPPED: no ama binary at {AMA_BIN} (cargo build -p ama-cli, or set AMA_BIN)")
    data = tmp_path / "data"
    stores = tmp_path / "stores.json"
    stores.write_text(
        json.dumps(
            {
                "version": 1,
                "write_quorum": 2,
                "stores": [
                    {"name": "a", "type": "local", "path": str(tmp_path / "blobs-a")},
                    {"name": "b", "type": "local", "path": str(tmp_path / "blobs-b")},
                ],
            }
        )
    )
    run(data, "init", "--stores", str(stores))
    run(data, "tenant", "add", "acme")
    run(data, "import", "--tenant", "acme", str(EXAMPLE_MAIL))
    assert (data / "stores.json").is_file()
    with ama.Archive.open(data, passphrase=PASSPHRASE) as a:
        acme = a.tenant("acme")
        hits = list(acme.search(""))
        assert hits, "nothing found"
        for h in hits:
            raw = acme.get(h.id).raw
            assert raw
        # Both replicas hold every blob (written through the quorum).
        a_files = sorted(p.name for p in (tmp_path / "blobs-a").rglob("*") if p.is_file())
        b_files = sorted(p.name for p in (tmp_path / "blobs-b").rglob("*") if p.is_file())
        assert len(a_files) >= len(hits) and a_files == b_files
    # A wrong passphrase is still the documented error.
    with pytest.raises(ama.WrongPassphrase):
        ama.Archive.open(data, passphrase="not the passphrase")
