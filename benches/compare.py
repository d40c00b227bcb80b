#!/usr/bin/env python3
"""Side-by-side benchmark: ama vs notmuch vs mu on one corpus, one machine, one run.

Driven by benches/compare.sh (which installs the peers and builds the release
`ama`); see benches/README.md ("Side by side with notmuch and mu"). Measures
import throughput, search latency as a fresh process per query (count-only and
first page of 50), space on disk and peak RSS, and writes a Markdown section
between `<!-- compare:begin -->` and `<!-- compare:end -->` in
docs/PERFORMANCE.md (nothing else in that file is touched).

Every process runs under `/usr/bin/time -f '%U %S %M'` (CPU times and peak
RSS); the wall time is measured here around it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"
TENANT = "enron"

# name, ama, notmuch, mu. Each query in each tool's own syntax, meaning the
# same thing as closely as the tools allow (differences are in the doc).
QUERIES = [
    ("common word", "energy", "energy", "energy"),
    ("rare word", "kazakhstan", "kazakhstan", "kazakhstan"),
    (
        "sender",
        "from:jeff.dasovich@enron.com",
        "from:jeff.dasovich@enron.com",
        "from:jeff.dasovich@enron.com",
    ),
    ("phrase", '"natural gas"', '"natural gas"', '"natural gas"'),
    (
        "date range",
        "after:2001-10-01 before:2001-11-01",
        "date:2001-10-01..2001-10-31",
        "date:20011001..20011031",
    ),
    (
        "combined",
        "subject:meeting -has:attachment after:2001-01-01 before:2002-01-01",
        "subject:meeting and not tag:attachment and date:2001-01-01..2001-12-31",
        "subject:meeting and not flag:attach and date:20010101..20011231",
    ),
]
TOOLS = ["ama", "notmuch", "mu"]


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Proc:
    """One finished child: wall seconds, user/sys CPU, peak RSS (KiB), output.

    The command runs under `/usr/bin/time -f '%U %S %M'`: a child forked from
    this Python process would carry Python's own resident pages into its
    ru_maxrss (about 17 MiB before exec), while `time` is a small C program.
    The wall time is taken here, around `time` itself, so it includes one
    extra fork + exec of `time` (about a millisecond), the same for every tool.
    """

    def __init__(self, argv, env=None, check=True, ok_codes=(0,)):
        # Output goes to unlinked temporary files, not pipes: the child never
        # blocks on a full pipe.
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
                tempfile.NamedTemporaryFile("r") as ft:
            t0 = time.perf_counter()
            p = subprocess.run(
                ["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", ft.name, *map(str, argv)],
                stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env,
            )
            self.wall = time.perf_counter() - t0
            fo.seek(0)
            fe.seek(0)
            self.out = fo.read().decode("utf-8", "replace")
            self.err = fe.read().decode("utf-8", "replace")
            u, s_, m = ft.read().split()[-3:]
        self.code = p.returncode
        self.user, self.sys, self.maxrss_kib = float(u), float(s_), int(m)
        if check and self.code not in ok_codes:
            raise SystemExit(
                f"command failed ({self.code}): {' '.join(map(str, argv))}\n{self.err[-2000:]}"
            )


def median(xs):
    return statistics.median(xs)


def p99(xs):
    """Nearest-rank 99th percentile (the maximum with fewer than 100 samples)."""
    s = sorted(xs)
    k = max(1, -(-99 * len(s) // 100))  # ceil(0.99 n)
    return s[k - 1]


def du(path: Path, apparent: bool) -> int:
    args = ["du", "-s", "-B1"] + (["--apparent-size"] if apparent else []) + [str(path)]
    return int(subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()[0])


def sizes(path: Path) -> tuple[int, int]:
    return du(path, True), du(path, False)


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def machine() -> dict:
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1])
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "mem_gib": mem / 1024 / 1024,
        "cpu": cpu,
        "load": Path("/proc/loadavg").read_text().split()[:3],
    }


def version(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True)
        return (r.stdout or r.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def build_maildir(corpus: Path, maildir: Path) -> tuple[int, int]:
    """Copies every mail file of the corpus into maildir/cur (SOURCES.tsv is not mail)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    n = total = 0
    for root, dirs, files in os.walk(corpus):
        dirs.sort()
        for f in sorted(files):
            src = Path(root) / f
            if src.parent == corpus and f == "SOURCES.tsv":
                continue
            n += 1
            # Maildir name: <time>.<unique>.<host>:2,<flags>
            dst = maildir / "cur" / f"1700000000.M{n:06d}P0.compare:2,"
            shutil.copyfile(src, dst)
            total += dst.stat().st_size
    return n, total


class Bench:
    def __init__(self, a):
        self.a = a
        self.ama = str(Path(a.ama).resolve())
        self.work = Path(a.work)
        self.maildir = self.work / "maildir"
        self.key = self.work / "master.key"
        self.env = dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8")
        self.env.pop("AMA_PASSPHRASE", None)
        self.env.pop("AMA_DATA", None)

    # ----- per tool: create, import, search argv -------------------------

    def ama_argv(self, data: Path, *rest):
        return [self.ama, "--data", str(data), "--key-file", str(self.key), *rest]

    def nm_env(self, d: Path):
        return dict(self.env, NOTMUCH_CONFIG=str(d / "config"))

    def prepare(self, tool: str, d: Path):
        """Untimed setup: an empty archive / notmuch config / mu database."""
        if tool == "ama":
            Proc(self.ama_argv(d / "data", "init"), self.env)
            Proc(self.ama_argv(d / "data", "tenant", "add", TENANT), self.env)
        elif tool == "notmuch":
            d.mkdir(parents=True)
            (d / "db").mkdir()
            (d / "config").write_text(
                "[database]\n"
                f"path={d / 'db'}\n"
                f"mail_root={self.maildir}\n"
                "[new]\ntags=unread;inbox;\nignore=\n"
                "[search]\nexclude_tags=\n"
                "[maildir]\nsynchronize_flags=true\n"
                "[user]\nname=Bench\nprimary_email=bench@example.invalid\n"
            )
        else:
            Proc(
                ["mu", "init", f"--muhome={d}", f"--maildir={self.maildir}", "--quiet"],
                self.env,
            )

    def import_argv(self, tool: str, d: Path):
        if tool == "ama":
            return self.ama_argv(d / "data", "import", "--tenant", TENANT, str(self.maildir)), self.env
        if tool == "notmuch":
            return ["notmuch", "new", "--quiet"], self.nm_env(d)
        return ["mu", "index", f"--muhome={d}", "--quiet"], self.env

    def index_dirs(self, tool: str, d: Path) -> Path:
        return {"ama": d / "data", "notmuch": d / "db", "mu": d / "xapian"}[tool]

    def search_argv(self, tool: str, d: Path, q: str, variant: str):
        if tool == "ama":
            rest = ["--count"] if variant == "count" else ["--limit", "50"]
            return self.ama_argv(d / "data", "search", "--tenant", TENANT, *rest, "--", q), self.env
        if tool == "notmuch":
            sub = ["count"] if variant == "count" else ["search", "--limit=50"]
            return ["notmuch", *sub, q], self.nm_env(d)
        # mu has no count-only command: list the path field of every match
        # (one value per match, no header or body read) and count the lines.
        if variant == "count":
            return ["mu", "find", f"--muhome={d}", "--nocolor", "--fields=l", q], self.env
        return [
            "mu", "find", f"--muhome={d}", "--nocolor", "--maxnum=50",
            "--sortfield=date", "--reverse", q,
        ], self.env

    def matches(self, tool: str, variant: str, p: Proc) -> int:
        """Matches (count variant) or lines shown (page variant)."""
        if tool == "mu" and p.code != 0:
            return 0  # mu exits non-zero with "no matches for search expression"
        lines = [line for line in p.out.splitlines() if line.strip()]
        if variant == "count":
            return int(lines[0]) if tool != "mu" else len(lines)
        return len(lines)

    # ----- the run ---------------------------------------------------------

    def run(self):
        a = self.a
        res = {"machine": machine(), "started": dt.datetime.now(dt.timezone.utc)}
        log(f"load average at start {res['machine']['load']}")
        res["versions"] = {
            "ama": version([self.ama, "--version"]),
            "notmuch": version(["notmuch", "--version"]),
            "mu": version(["mu", "--version"]),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
        }
        self.key.write_bytes(os.urandom(32))
        log(f"building the Maildir in {self.maildir}")
        res["files"], res["bytes"] = build_maildir(Path(a.corpus), self.maildir)
        res["maildir_size"] = sizes(self.maildir)
        log(f"{res['files']} files, {res['bytes']} bytes")

        # Imports: rounds interleaved (ama, notmuch, mu) so load drifts hit all.
        res["imports"] = {t: [] for t in TOOLS}
        last = {}
        for r in range(1, a.imports + 1):
            for tool in TOOLS:
                d = self.work / f"{tool}-{r}"
                self.prepare(tool, d)
                argv, env = self.import_argv(tool, d)
                load = Path("/proc/loadavg").read_text().split()[0]
                p = Proc(argv, env)
                res["imports"][tool].append(
                    {"wall": p.wall, "user": p.user, "sys": p.sys, "rss": p.maxrss_kib, "load": load,
                     "out": (p.out + p.err).strip()[-300:]}
                )
                log(f"import {tool} round {r}: {p.wall:.1f} s, {p.maxrss_kib} KiB, load {load}")
                if r < a.imports:
                    shutil.rmtree(d)
                else:
                    last[tool] = d
        res["space"] = {t: sizes(self.index_dirs(t, last[t])) for t in TOOLS}
        ama_data = last["ama"] / "data"
        res["ama_parts"] = {
            part + ("/" if (ama_data / part).is_dir() else ""): sizes(ama_data / part)
            for part in sorted(os.listdir(ama_data))
        }
        nm_total = Proc(["notmuch", "count", "*"], self.nm_env(last["notmuch"])).out.strip()
        mu_total = len(Proc(["mu", "find", f"--muhome={last['mu']}", "--fields=l", ""], self.env,
                            ok_codes=(0, 1, 2, 4)).out.splitlines())
        ama_total = Proc(self.ama_argv(ama_data, "search", "--tenant", TENANT, "--count"), self.env).out.strip()
        res["indexed"] = {"ama": ama_total, "notmuch": nm_total, "mu": mu_total}

        # Searches: a warm-up round (discarded), then a.runs rounds; in each round
        # every query, tool and variant once, interleaved.
        res["search"] = {}
        for r in range(a.runs + 1):
            for name, *qs in QUERIES:
                for tool, q in zip(TOOLS, qs):
                    for variant in ("count", "page"):
                        argv, env = self.search_argv(tool, last[tool], q, variant)
                        p = Proc(argv, env, ok_codes=(0, 1, 2, 4) if tool == "mu" else (0,))
                        m = self.matches(tool, variant, p)
                        slot = res["search"].setdefault((name, tool, variant),
                                                        {"lat": [], "rss": [], "matches": m, "q": q})
                        if r > 0:
                            slot["lat"].append(p.wall)
                            slot["rss"].append(p.maxrss_kib)
                        if variant == "page" and tool == "ama":
                            tot = re.search(r"of (\d+) messages", p.err)
                            slot["total"] = int(tot.group(1)) if tot else None
            if r == 0:
                log("search warm-up done")
        log(f"search: {a.runs} rounds done")

        # One cold run per query and tool (count variant), page cache dropped first.
        res["cold"] = {}
        if a.cold:
            for name, *qs in QUERIES:
                for tool, q in zip(TOOLS, qs):
                    if not drop_caches():
                        res["cold"] = None
                        break
                    argv, env = self.search_argv(tool, last[tool], q, "count")
                    p = Proc(argv, env, ok_codes=(0, 1, 2, 4) if tool == "mu" else (0,))
                    res["cold"][(name, tool)] = p.wall
                if res["cold"] is None:
                    break

        res["profile"] = None
        if a.profile and shutil.which("strace") and shutil.which("perf"):
            res["profile"] = self.profile(ama_data)
        res["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
        res["finished"] = dt.datetime.now(dt.timezone.utc)
        return res

    def profile(self, ama_data: Path) -> dict:
        """Where a fresh `ama search --count` spends its time (common word)."""
        q = QUERIES[0][1]
        base = self.ama_argv(ama_data, "search", "--tenant", TENANT, "--count", "--", q)
        out = {}
        # Phases, each a fresh process, median of 20: exec + clap (--version),
        # unlock + open the archive and tenant with a query that fails after
        # opening (an unknown tenant costs the open but no index), the whole search.
        phases = {
            "exec only (`ama --version`)": [self.ama, "--version"],
            "open archive, unknown tenant (`ama search --tenant nobody x`)":
                self.ama_argv(ama_data, "search", "--tenant", "nobody", "--count", "x"),
            "whole `ama search --count energy`": base,
        }
        for label, argv in phases.items():
            lat = [Proc(argv, self.env, check=False).wall for _ in range(21)][1:]
            out[label] = median(lat)
        # strace -c -w: wall time per system call over one run (after warm-up).
        s = Proc(["strace", "-f", "-c", "-w", "-o", str(self.work / "strace.txt"), *base],
                 self.env, check=False)
        out["strace_total_wall"] = s.wall
        out["strace"] = (self.work / "strace.txt").read_text() if (self.work / "strace.txt").exists() else ""
        # Per-call durations of the sync calls and opens/reads, with timestamps.
        Proc(["strace", "-f", "-tt", "-T", "-e", "trace=fsync,fdatasync,sync_file_range,openat,execve,exit_group",
              "-o", str(self.work / "strace-T.txt"), *base], self.env, check=False)
        out["strace_T"] = (self.work / "strace-T.txt").read_text() if (self.work / "strace-T.txt").exists() else ""
        p = Proc(["perf", "stat", "-x,", "-e", "task-clock,context-switches,page-faults", *base],
                 self.env, check=False)
        out["perf"] = p.err
        return out


# ----- Markdown ------------------------------------------------------------


def f_int(x) -> str:
    return f"{x:,.0f}"


def f_ms(s: float) -> str:
    ms = s * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def mib(kib) -> str:
    return f"{kib / 1024:.0f} MiB"


def render(res: dict, a) -> str:
    m = res["machine"]
    files, nbytes = res["files"], res["bytes"]
    L = []
    L.append(BEGIN)
    L.append("## Side by side: ama, notmuch, mu (issue 10)")
    L.append("")
    L.append("Regenerate (installs `notmuch` and `maildir-utils` with apt if missing, builds the")
    L.append("release `ama`, runs everything below and rewrites only this section):")
    L.append("")
    L.append("```sh")
    L.append(f"benches/compare.sh   # = {a.imports} import rounds, {a.runs} search rounds"
             + (", cold runs" if a.cold else ""))
    L.append("```")
    L.append("")
    L.append(
        f"Run {res['started']:%Y-%m-%d %H:%M} UTC ({(res['finished'] - res['started']).total_seconds() / 60:.0f} min), "
        f"commit `{res['versions']['commit']}`, {res['versions']['ama']}, {res['versions']['notmuch']}, "
        f"mu {res['versions']['mu'].split('version')[-1].strip()} (Debian 12 packages, Xapian 1.4). "
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['mem_gib']:.1f} GiB RAM; "
        f"load average at start {' / '.join(m['load'])} (1/5/15 min), at the end "
        f"{' / '.join(res['load_end'])} — other engineers' builds and tests share the 2 cores and the disk."
    )
    L.append("")
    L.append(
        f"Input: `{a.corpus_label}` without `SOURCES.tsv` (not mail): {files:,} files, {nbytes:,} bytes, "
        "copied once into a Maildir (`cur/`, untimed) that all three tools read. "
        "Page cache warm unless marked cold; `TZ=UTC`."
    )
    L.append("")

    # Import
    L.append("### Import")
    L.append("")
    L.append(
        "`ama import` (release, fsync on, encrypted blobs/catalog/index, 32-byte `--key-file` so no KDF) "
        "into a fresh archive made by `ama init` + `ama tenant add` (untimed); `notmuch new` into a "
        "fresh database (default tags, flag sync); `mu index` after `mu init` (untimed). "
        f"{a.imports} rounds, interleaved ama → notmuch → mu; medians. "
        "Throughput counts every file (messages/s) and its bytes (MB = 10^6 bytes). "
        "\"vs ama\" = the tool's messages/s ÷ ama's."
    )
    L.append("")
    L.append("| tool | wall (median) | runs | messages/s | MB/s | vs ama | user CPU | system CPU | peak RSS (max) |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    imp = {}
    for tool in TOOLS:
        runs = res["imports"][tool]
        w = median([r["wall"] for r in runs])
        imp[tool] = {"wall": w, "mps": files / w, "mbs": nbytes / 1e6 / w,
                     "rss": max(r["rss"] for r in runs)}
    for tool in TOOLS:
        runs = res["imports"][tool]
        i = imp[tool]
        walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
        L.append(
            f"| {tool} | {i['wall']:.1f} s | {walls} s | "
            f"{f_int(i['mps'])} | {i['mbs']:.1f} | {i['mps'] / imp['ama']['mps']:.2f}× | "
            f"{median([r['user'] for r in runs]):.1f} s | {median([r['sys'] for r in runs]):.1f} s | "
            f"{mib(i['rss'])} |"
        )
    L.append("")
    L.append("Load average (1 min) when each import started: " + "; ".join(
        f"{t} {', '.join(r['load'] for r in res['imports'][t])}" for t in TOOLS) + ".")
    L.append("")
    L.append(f"Messages indexed (last round): ama {res['indexed']['ama']} (distinct; the rest are "
             f"byte-identical duplicates), notmuch {res['indexed']['notmuch']} (`notmuch count '*'`), "
             f"mu {res['indexed']['mu']} (`mu find ''` lines).")
    L.append("")

    # Search
    L.append("### Search")
    L.append("")
    L.append(
        f"Each measurement is a fresh process (fork + exec + open + query + print + exit), timed by "
        f"the harness around `/usr/bin/time` (which adds one fork + exec, about 1 ms, to every tool alike); {a.runs} rounds after one warm-up round, every round runs "
        "every query × tool × variant once, interleaved. p99 is nearest-rank: with "
        f"{a.runs} runs it is the slowest. Count-only: `ama search --count`, `notmuch count`, and for mu "
        "(no count command) `mu find --fields=l` (one path per match; the harness counts the lines) — "
        "so mu's count grows with the number of matches. First page: `ama search --limit 50` "
        "(newest first; date, sender, subject, id), `notmuch search --limit=50` (newest first; "
        "**threads**, the default summary output), `mu find --maxnum=50 --sortfield=date --reverse`."
    )
    L.append("")
    L.append("| query | tool | syntax | matches | count: median | count: p99 | page: median | page: p99 | ama ÷ tool (count / page medians) |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    S = res["search"]
    for name, *qs in QUERIES:
        for tool in TOOLS:
            c, p = S[(name, tool, "count")], S[(name, tool, "page")]
            if tool == "ama":
                ratio = "–"
            else:
                ac, ap = S[(name, "ama", "count")], S[(name, "ama", "page")]
                ratio = f"{median(ac['lat']) / median(c['lat']):.2f} / {median(ap['lat']) / median(p['lat']):.2f}"
            q = c["q"].replace("|", "\\|")
            L.append(
                f"| {name if tool == 'ama' else ''} | {tool} | `{q}` | {f_int(c['matches'])} | "
                f"{f_ms(median(c['lat']))} | {f_ms(p99(c['lat']))} | {f_ms(median(p['lat']))} | "
                f"{f_ms(p99(p['lat']))} | {ratio} |"
            )
    L.append("")
    rss = {t: [x for (n, tt, v), s in S.items() if tt == t for x in s["rss"]] for t in TOOLS}
    L.append("Peak RSS of the search processes (median / max over all queries, variants and runs): "
             + "; ".join(f"{t} {mib(median(rss[t]))} / {mib(max(rss[t]))}" for t in TOOLS) + ".")
    if res["cold"]:
        L.append("")
        L.append("Cold (page cache dropped with `echo 3 > /proc/sys/vm/drop_caches` before each), one run, count-only:")
        L.append("")
        L.append("| query | " + " | ".join(TOOLS) + " |")
        L.append("|---|" + "---:|" * len(TOOLS))
        for name, *_ in QUERIES:
            L.append(f"| {name} | " + " | ".join(f_ms(res["cold"][(name, t)]) for t in TOOLS) + " |")
    L.append("")

    # Space
    L.append("### Space")
    L.append("")
    L.append("`du -s -B1 --apparent-size` (apparent) and `du -s -B1` (allocated), the last import round. "
             "notmuch and mu need the Maildir besides their index; ama keeps the mail itself "
             "(its data directory is the whole archive; the input can be deleted).")
    L.append("")
    L.append("| what | apparent | allocated | apparent ÷ raw |")
    L.append("|---|---:|---:|---:|")
    raw = nbytes
    L.append(f"| raw corpus (the {files:,} files' bytes) | {raw:,} | – | 1.00× |")
    md_a, md_d = res["maildir_size"]
    L.append(f"| Maildir (what notmuch and mu read) | {md_a:,} | {md_d:,} | {md_a / raw:.2f}× |")
    for part, (pa, pd) in res["ama_parts"].items():
        L.append(f"| ama `{part}` | {pa:,} | {pd:,} | {pa / raw:.2f}× |")
    ama_a, ama_d = res["space"]["ama"]
    L.append(f"| **ama data directory** | **{ama_a:,}** | **{ama_d:,}** | **{ama_a / raw:.2f}×** |")
    for t in ("notmuch", "mu"):
        ia, idk = res["space"][t]
        L.append(f"| {t} index | {ia:,} | {idk:,} | {ia / raw:.2f}× |")
        L.append(f"| **{t} index + Maildir** | **{ia + md_a:,}** | **{idk + md_d:,}** | **{(ia + md_a) / raw:.2f}×** |")
    L.append("")

    # Targets
    fastest = max(("notmuch", "mu"), key=lambda t: imp[t]["mps"])
    L.append("### Against the targets (issue 10, vs the faster peer in this run)")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    r_imp = imp["ama"]["mps"] / imp[fastest]["mps"]
    L.append(f"| import ≥ 5× the faster peer's messages/s | ama {f_int(imp['ama']['mps'])}/s vs {fastest} "
             f"{f_int(imp[fastest]['mps'])}/s = **{r_imp:.2f}×** | {'yes' if r_imp >= 5 else 'no'} |")
    for variant in ("count", "page"):
        for name, *_ in QUERIES:
            a_ = median(S[(name, "ama", variant)]["lat"])
            peers = {t: median(S[(name, t, variant)]["lat"]) for t in ("notmuch", "mu")}
            ft = min(peers, key=peers.get)
            r = a_ / peers[ft]
            L.append(f"| search median ≤ 1/5 of the faster peer: {name}, {variant} | ama {f_ms(a_)} vs {ft} "
                     f"{f_ms(peers[ft])} = **{r:.2f}×** | {'yes' if r <= 0.2 else 'no'} |")
    L.append(f"| stored size ≤ 0.6× raw | ama {ama_a:,} B = **{ama_a / raw:.2f}×** apparent, "
             f"{ama_d / raw:.2f}× allocated | {'yes' if ama_a / raw <= 0.6 else 'no'} |")
    lo = min(imp["notmuch"]["rss"], imp["mu"]["rss"])
    L.append(f"| import peak RSS below both peers | ama {mib(imp['ama']['rss'])} vs notmuch "
             f"{mib(imp['notmuch']['rss'])}, mu {mib(imp['mu']['rss'])} = **{imp['ama']['rss'] / lo:.2f}×** "
             f"the lower | {'yes' if imp['ama']['rss'] < lo else 'no'} |")
    lo_s = min(max(rss["notmuch"]), max(rss["mu"]))
    L.append(f"| search peak RSS below both peers (max) | ama {mib(max(rss['ama']))} vs notmuch "
             f"{mib(max(rss['notmuch']))}, mu {mib(max(rss['mu']))} | {'yes' if max(rss['ama']) < lo_s else 'no'} |")
    L.append("")

    if res["profile"]:
        pr = res["profile"]
        L.append("### Where a fresh `ama search` spends its time")
        L.append("")
        L.append("Medians of 20 fresh processes each:")
        L.append("")
        L.append("| phase | median |")
        L.append("|---|---:|")
        for k, v in pr.items():
            if isinstance(v, float) and not k.startswith("strace"):
                L.append(f"| {k} | {f_ms(v)} |")
        L.append("")
        L.append("`strace -f -c -w` of one `ama search --count energy` (wall time per system call, top rows):")
        L.append("")
        L.append("```")
        rows = [ln for ln in pr["strace"].splitlines() if ln.strip()]
        L.extend(rows[:14])
        L.append("```")
        L.append("")
        sync = [ln for ln in pr["strace_T"].splitlines() if re.search(r"\b(fsync|fdatasync|sync_file_range)\(", ln)]
        L.append(f"`strace -T`: {len(sync)} fsync/fdatasync calls in one search, durations: "
                 + ", ".join(re.findall(r"<([\d.]+)>", " ".join(sync))) + " s.")
        L.append("")
        L.append("`perf stat` (CSV: value, unit, event, …):")
        L.append("")
        L.append("```")
        L.extend(ln for ln in pr["perf"].splitlines() if ln.strip() and not ln.startswith("#"))
        L.append("```")
        L.append("")
    L.append(END)
    return "\n".join(L) + "\n"


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        text = pre + section.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--corpus-label", default=None, help="how the corpus is named in the doc")
    ap.add_argument("--ama", default="target/release/ama")
    ap.add_argument("--imports", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--work", default=None, help="scratch directory (default: a new one in /tmp, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-cold", dest="cold", action="store_false")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--doc", default="docs/PERFORMANCE.md")
    ap.add_argument("--json", default=None, help="also dump the raw results here")
    a = ap.parse_args()
    a.corpus_label = a.corpus_label or a.corpus
    made = a.work is None
    a.work = a.work or tempfile.mkdtemp(prefix="ama-compare-", dir="/tmp")
    Path(a.work).mkdir(parents=True, exist_ok=True)
    try:
        res = Bench(a).run()
    finally:
        if made and not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(
            {k: v for k, v in res.items() if k not in ("search", "cold")}
            | {"search": {"|".join(k): v for k, v in res["search"].items()}},
            default=str, indent=1))
    section = render(res, a)
    write_section(Path(a.doc), section)
    print(section)


if __name__ == "__main__":
    main()
