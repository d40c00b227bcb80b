#!/usr/bin/env bash
# Python tenant.import_path vs `ama import` on enron-inbox, same dev-profile build, alternating.
set -euo pipefail
cd "$(dirname "$0")/.."
ENRON=${AMA_CORPUS:-../shared/corpus}/enron-inbox
for round in 1 2 3; do
  d=$(mktemp -d)
  AMA_DATA=$d/cli AMA_PASSPHRASE=pw-for-bench AMA_INSECURE_FAST_KDF=1 ./target/debug/ama init >/dev/null
  AMA_DATA=$d/cli AMA_PASSPHRASE=pw-for-bench AMA_INSECURE_FAST_KDF=1 ./target/debug/ama tenant add enron >/dev/null
  s=$(date +%s.%N)
  AMA_DATA=$d/cli AMA_PASSPHRASE=pw-for-bench AMA_INSECURE_FAST_KDF=1 ./target/debug/ama import --tenant enron $ENRON >/dev/null 2>&1
  e=$(date +%s.%N)
  echo "round $round cli: $(echo "$e - $s" | bc) s"
  s=$(date +%s.%N)
  .venv-py/bin/python - "$d/py" "$ENRON" <<'PY'
import sys, ama
with ama.Archive.create(sys.argv[1], passphrase="pw-for-bench", fast_kdf=True) as a:
    t = a.create_tenant("enron")
    r = t.import_path(sys.argv[2])
    print("py imported", r.imported, "dups", r.duplicates, "refused", r.refused)
PY
  e=$(date +%s.%N)
  echo "round $round py: $(echo "$e - $s" | bc) s"
  rm -rf "$d"
done
