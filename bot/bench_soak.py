"""Soak test: hours of the support-day mix on PostgreSQL, with memory, descriptors, connections and latency per minute.

    python -m bot.bench_soak --rate 30 --customers 300 --duration 7200 --sample-seconds 60 --out reports/soak

A real PostgreSQL (bot/local_services.py) holds both databases (the tracker
store and the project's tables); the action server and one Rasa server run
as in `bot.bench_load` (demo mode, no per-address ingress limit), are warmed
up, and the long conversations' history is sent first. Then the support-day
mix (`bot.load_mix`) runs open loop for ``--duration`` seconds.

Every ``--sample-seconds`` a sampler thread records the resident memory and
open file descriptors of each process tree (Rasa server, action server,
PostgreSQL's processes together, and the load driver, which is not part of
the deployment and is not judged), PostgreSQL's client connections (all and
by database, from pg_stat_activity), and the messages *scheduled* in that
window: how many, answered, errors, refusals, p50/p95/p99 (latency from the
scheduled time, as in bench_load). A window's row is written once its last
message has had ``--timeout`` to answer, so samples.csv (rewritten whole and
atomically at every row) keeps every finished window if the run dies.

The verdict (`growth`): for each series, the Theil-Sen trend line through
every sample of the last hour, from its value at the hour's first sample to
its value at the last; more than 5 % growth fails (the medians of the first
and last 5 samples are shown beside it, not judged: a busy count such as
descriptors swings by a few from minute to minute). p95 latency is judged
by the same rule. PostgreSQL's memory is judged
as PSS (each shared page split among the processes that map it), not as
the sum of its processes' RSS, which counts a page of shared buffers once
for every backend that has touched it and so climbs towards backends x
shared_buffers for hours without PostgreSQL holding one byte more; the sum
is still sampled and shown. A run shorter than that
(a smoke run) uses the whole run as its "last hour" and says so. Ctrl-C,
SIGTERM or a server that exits stops the run; the servers and PostgreSQL
are always stopped, and the report is written from what was sampled:
OUT/samples.csv, OUT/soak.png (4 panels), OUT/soak.md, OUT/soak.json.

    python -m bot.bench_soak --rejudge OUT

writes soak.md, soak.png and soak.json again from OUT's samples.csv and
soak.json with this version's rules, without running anything (the report
says it was re-judged, and the run's own verdict stays in soak.json as
``first_verdict``).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from bot.bench_load import (bench_env, child_map, child_pids, customers_for, drive, free_port, outcome, plan,
                            prewarm, trained_models)
from core.files import write_text_atomically
from core.processes import sigterm_as_interrupt
from core.settings import PROJECT_ROOT

LIMIT_PCT = 5.0
TRACKER_DB, APP_DB = "soak_tracker", "soak_app"
TREES = ("rasa", "actions", "postgres", "driver")
COLUMNS = ["t_s", "wall", "scheduled", "answered", "errors", "refused", "p50_ms", "p95_ms", "p99_ms",
           *(f"rss_{t}_mb" for t in TREES), "pss_postgres_mb", *(f"fds_{t}" for t in TREES), "procs_postgres",
           "pg_conn_total", "pg_conn_tracker", "pg_conn_app"]
# (series, what it is, judged): the driver's own memory and descriptors are shown, never judged.
SERIES = [("rss_rasa_mb", "RSS, Rasa server tree (MB)", True), ("rss_actions_mb", "RSS, action server tree (MB)", True),
          ("rss_postgres_mb", "RSS, PostgreSQL processes summed (MB; a shared page once per process that touched it)", False),
          ("pss_postgres_mb", "PSS, PostgreSQL (MB; shared buffers counted once)", True),
          ("fds_rasa", "open fds, Rasa server tree", True), ("fds_actions", "open fds, action server tree", True),
          ("fds_postgres", "open fds, PostgreSQL processes", True),
          ("pg_conn_total", "PostgreSQL client connections", True), ("p95_ms", "p95 latency per window (ms)", True),
          ("p99_ms", "p99 latency per window (ms)", False),
          ("rss_driver_mb", "RSS, load driver (not the deployment)", False),
          ("fds_driver", "open fds, load driver (not the deployment)", False)]


# --------------------------------------------------------------------- readers (Linux /proc)
def _proc_field(path: str, key: str) -> Optional[int]:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _summed(values: Iterable[Optional[int]], scale: float = 1.0) -> Optional[float]:
    """Sum of the values that could be read (None when none could)."""
    got = [v for v in values if v is not None]
    return round(sum(got) * scale, 1) if got else None


def rss_mb(pids: Sequence[int]) -> Optional[float]:
    """Resident memory of these processes together, MB (VmRSS: shared pages count once per process)."""
    return _summed((_proc_field(f"/proc/{pid}/status", "VmRSS:") for pid in pids), 1 / 1024)


def pss_mb(pids: Sequence[int]) -> Optional[float]:
    """Proportional set size together, MB: shared pages (PostgreSQL's shared buffers) split between their users."""
    return _summed((_proc_field(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids), 1 / 1024)


def fd_count(pids: Sequence[int]) -> Optional[int]:
    """Open file descriptors of these processes together (/proc/PID/fd)."""
    counts = []
    for pid in pids:
        try:
            counts.append(len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            pass
    return sum(counts) if counts else None


def process_trees(roots: Dict[str, int]) -> Dict[str, List[int]]:
    """name -> the root's pid and all its descendants, from one listing of the processes."""
    children = child_map()
    trees = {}
    for name, root in roots.items():
        trees[name] = child_pids(root, children)
    return trees


def pg_query(pg, sql: str) -> List[tuple]:
    """Rows of `sql` on a fresh connection to the `postgres` database, closed afterwards."""
    import psycopg2

    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres",
                            connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def pg_connections(pg) -> Dict[str, Optional[int]]:
    """Client connections now, all and per database (the sampler's own one left out; None when PostgreSQL refuses)."""
    try:
        by_db = dict(pg_query(pg, "SELECT datname, count(*) FROM pg_stat_activity WHERE datname IS NOT NULL "
                                  "AND backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY datname"))
    except Exception as exc:  # e.g. too many clients already: itself a finding, the row shows a gap
        print(f"==> soak: PostgreSQL did not answer the sampler: {exc}", file=sys.stderr, flush=True)
        return {"pg_conn_total": None, "pg_conn_tracker": None, "pg_conn_app": None}
    return {"pg_conn_total": sum(by_db.values()), "pg_conn_tracker": by_db.get(TRACKER_DB, 0),
            "pg_conn_app": by_db.get(APP_DB, 0)}


def postmaster_pid(pg) -> int:
    return int((Path(pg.folder) / "data" / "postmaster.pid").read_text().split()[0])


# --------------------------------------------------------------------- samples
class Windows:
    """The results of the messages scheduled in each window, and the run's running totals (fed by drive's on_result)."""

    def __init__(self, seconds: float, planned_at: Iterable[float]):
        self.seconds = seconds
        self.scheduled = Counter(int(at // seconds) for at in planned_at)
        self.latencies: Dict[int, List[float]] = defaultdict(list)
        self.counts: Dict[int, Counter] = defaultdict(Counter)
        self.all = array("d")
        self.totals: Counter = Counter()
        self.error_kinds: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, result) -> None:
        kind = outcome(result)
        k = int(result.at // self.seconds)
        with self.lock:
            self.latencies[k].append(result.latency_ms)
            self.counts[k][kind] += 1
            self.all.append(result.latency_ms)
            self.totals[kind] += 1
            if kind == "errors":
                self.error_kinds[result.error] += 1

    def take(self, k: int) -> Dict[str, Any]:
        """Window `k`'s row (counts and percentiles), forgetting its latencies."""
        with self.lock:
            lat, counts = self.latencies.pop(k, []), self.counts.pop(k, Counter())
        row = {"scheduled": self.scheduled.get(k, 0), **{key: counts[key] for key in ("answered", "errors", "refused")}}
        row.update({f"p{q}_ms": round(float(np.percentile(lat, q)), 1) if lat else None for q in (50, 95, 99)})
        return row

    def summary(self) -> Dict[str, Any]:
        with self.lock:
            lat = np.frombuffer(self.all, dtype=float) if len(self.all) else np.array([0.0])
            return {"messages": len(self.all), **{k: self.totals[k] for k in ("answered", "errors", "refused")},
                    "error_kinds": dict(self.error_kinds),
                    **{f"p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)}}


class SampleWriter:
    """samples.csv, rewritten whole and atomically at every row: a crash leaves every row written so far."""

    def __init__(self, path: Path, columns: Sequence[str] = COLUMNS):
        self.path, self.columns, self.rows = Path(path), list(columns), []

    def add(self, row: Dict[str, Any]) -> None:
        self.rows.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in self.rows)
        write_text_atomically(self.path, text.getvalue())


def read_samples(path: Path) -> List[Dict[str, Any]]:
    """samples.csv back as dicts of numbers (None where a value was not sampled)."""
    def value(text: str) -> Any:
        try:
            return float(text) if text != "" else None
        except ValueError:
            return text
    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


class Sampler(threading.Thread):
    """Probes the processes every `seconds` from `t0` (monotonic); writes window k's row once its answers are in."""

    def __init__(self, windows: Windows, probe: Callable[[], Dict[str, Any]], writer: SampleWriter, t0: float,
                 grace: float, check: Callable[[], Optional[str]] = lambda: None):
        super().__init__(name="soak-sampler", daemon=True)
        self.windows, self.probe, self.writer, self.t0, self.grace, self.check = windows, probe, writer, t0, grace, check
        self.pending: Dict[int, Dict[str, Any]] = {}
        self.probed = 0
        self.stopping = threading.Event()
        self.failure: Optional[str] = None
        self.on_failure: Callable[[], None] = lambda: None

    def _probe(self, k: int) -> None:
        """Window k's resources now; a probe that fails leaves gaps in its row, never the latency."""
        t_s = round(time.monotonic() - self.t0)
        try:
            resources = self.probe()
        except Exception as exc:  # one failed probe must not end a soak of hours
            print(f"==> soak: sample {k} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            resources = {}
        self.pending[k] = {"t_s": t_s, "wall": time.strftime("%Y-%m-%dT%H:%M:%S"), **resources}
        self.probed = k

    def _write(self, upto: float) -> None:
        for k in sorted(self.pending):
            if k * self.windows.seconds + self.grace <= upto:
                self.writer.add({**self.pending.pop(k), **self.windows.take(k - 1)})

    def run(self) -> None:
        k = 1
        while not self.stopping.wait(max(0.0, self.t0 + k * self.windows.seconds - time.monotonic())):
            self._probe(k)
            try:
                self._write(time.monotonic() - self.t0)
            except OSError as exc:  # the rows are kept, and written whole with the next one
                print(f"==> soak: samples.csv not written: {exc}", file=sys.stderr, flush=True)
            self.failure = self.check()
            if self.failure:  # a server exited: the rest of the run would only measure refused connections
                self.on_failure()
                return
            k += 1

    def finish(self, windows_planned: int) -> None:
        """Stop probing; probe once more for the window in progress (if any was planned), write every row."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=120)
        if self.probed < windows_planned and not self.failure:
            self._probe(self.probed + 1)
        self._write(math.inf)


# --------------------------------------------------------------------- the verdict
def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def theil_sen(points: Sequence[tuple]) -> tuple:
    """(slope, intercept) of the Theil-Sen line through `points` (t, v): the median of the pairwise slopes, then
    the median of v - slope * t. Robust: up to 29 % of the points can be anywhere without moving it much."""
    slopes = [(v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points) for t2, v2 in points[i + 1:] if t2 != t1]
    slope = statistics.median(slopes) if slopes else 0.0
    return slope, statistics.median(v - slope * t for t, v in points)


def growth(samples: Sequence[Dict[str, Any]], series: str, window: int = 5, last_seconds: float = 3600,
           limit_pct: float = LIMIT_PCT) -> Dict[str, Any]:
    """Growth of `series` over the last `last_seconds` of the run: its Theil-Sen trend line over every sample in
    that window, from the line's value at the window's first sample to its value at the last.

    A leak is a trend. Comparing a few samples at each end instead (the
    medians of the first and last `window`, still given as ``first``,
    ``last`` and ``endpoint_pct``) judges a small, busy count such as a
    server's descriptors (21 to 30 all through a 2-hour run, with the
    connections in flight) by which minutes happened to be busy; the trend
    uses all of the hour's samples and is not moved by a few odd ones.

    The "last hour" ends at the last sample; when the run is shorter, it is
    the whole run (``short``). With fewer than 2 x `window` samples in it, the
    window shrinks to half of them so the two medians never share a sample.
    Samples without a value (no message in that window) are skipped.
    """
    rows = sorted(samples, key=lambda r: r["t_s"])
    if not rows:
        return {"series": series, "samples": 0, "passed": None, "short": True}
    begin = rows[-1]["t_s"] - last_seconds
    short = begin < rows[0]["t_s"]
    inside = [(r["t_s"], _number(r.get(series))) for r in rows if r["t_s"] >= begin]
    inside = [(t, v) for t, v in inside if v is not None]
    result: Dict[str, Any] = {"series": series, "samples": len(inside), "short": short, "last_seconds": last_seconds}
    if len(inside) < 2:
        return {**result, "passed": None}
    w = min(window, len(inside) // 2)
    first, last = statistics.median(v for _, v in inside[:w]), statistics.median(v for _, v in inside[-w:])
    slope, intercept = theil_sen(inside)
    start, end = intercept + slope * inside[0][0], intercept + slope * inside[-1][0]
    pct = _percent(start, end)
    return {**result, "window": w, "from_s": inside[0][0], "to_s": inside[-1][0], "first": first, "last": last,
            "endpoint_pct": _percent(first, last), "trend_from": start, "trend_to": end,
            "growth_pct": pct, "passed": pct <= limit_pct}


def _percent(before: float, after: float) -> float:
    return (after - before) / before * 100 if before > 0 else (0.0 if after <= before else math.inf)


def growth_table(samples: Sequence[Dict[str, Any]], window: int, last_seconds: float, limit_pct: float) -> List[Dict[str, Any]]:
    return [{**growth(samples, key, window, last_seconds, limit_pct), "what": what, "judged": judged}
            for key, what, judged in SERIES]


def plot(samples: Sequence[Dict[str, Any]], path: Path, last_seconds: float = 3600, title: str = "") -> Path:
    """The 4 panels (RSS, fds, PostgreSQL connections, p95/p99) as a PNG, written atomically; the last hour shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(samples, key=lambda r: r["t_s"])
    x = [r["t_s"] / 60 for r in rows]
    panels = [("resident memory, MB", [(f"rss_{t}_mb", t) for t in TREES] + [("pss_postgres_mb", "postgres (PSS)")]),
              ("open file descriptors", [(f"fds_{t}", t) for t in TREES]),
              ("PostgreSQL connections", [("pg_conn_total", "all"), ("pg_conn_tracker", "tracker"), ("pg_conn_app", "app")]),
              ("latency per window, ms", [("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")])]
    fig = Figure(figsize=(10, 12))
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    for ax, (label, lines) in zip(axes, panels):
        for key, name in lines:
            y = [_number(r.get(key)) for r in rows]
            ax.plot(x, [math.nan if v is None else v for v in y], marker=".", label=name,
                    linestyle="--" if "driver" in key or "pss" in key else "-")
        if x:
            ax.axvspan(max(x[0], x[-1] - last_seconds / 60), x[-1], color="grey", alpha=0.12)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("minutes into the run (shaded: the window judged)")
    fig.suptitle(title or "soak")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------- report
def report(args, samples: List[Dict[str, Any]], totals: Dict[str, Any], status: str, mix_text: str,
           extra: Dict[str, Any]) -> Dict[str, Any]:
    """Write soak.png, soak.md and soak.json into args.out; the JSON's content."""
    from core.encoder import cpu_description

    rows = growth_table(samples, args.window, args.last_seconds, args.limit_pct)
    judged = [r for r in rows if r["judged"]]
    passed = bool(samples) and status == "completed" and all(r["passed"] for r in judged)
    span = samples[-1]["t_s"] if samples else 0
    short = any(r["short"] for r in rows)
    fmt = lambda v: "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [
        f"# Soak: {args.rate:g} msg/s on PostgreSQL for {args.duration:.0f} s", "",
        f"CPU: {cpu_description()}; our serving precision: {args.precision}", "",
        f"Parameters: {args.customers} customers, {args.rate:g} msg/s offered open loop for {args.duration:.0f} s, "
        f"samples every {args.sample_seconds:g} s, timeout {args.timeout:g} s, seed {args.seed}, "
        f"{args.long_customers} conversations {args.long_turns} turns old at the start; model {extra.get('model')}; "
        f"PostgreSQL {extra.get('postgres_version', '?')} (tracker store and the project's tables).", "",
        f"Status: {status}; {len(samples)} samples over {span:.0f} s.", "", mix_text.strip(), "",
        "| messages | answered | errors | refused (503) | p50 ms | p95 ms | p99 ms | answered/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {totals['messages']} | {totals['answered']} | {totals['errors']}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(totals["error_kinds"].items())) + ")" if totals["error_kinds"] else "")
        + f" | {totals['refused']} | {totals['p50']:.0f} | {totals['p95']:.0f} | {totals['p99']:.0f} | "
          f"{totals['answered'] / max(span, 1e-9):.1f} |", "",
    ]
    conv = extra.get("conversation")
    if conv:
        lines += [f"Conversations: {conv['handoffs']} handoffs, clicks and ratings sent "
                  + ", ".join(f"{k} {v}" for k, v in sorted(conv["clicks_and_ratings"].items()))
                  + f"; {conv['unresolved_tokens']} planned clicks, ratings or queue exits sent as typed text instead "
                  "(the replies offered no such button, or the customer was not queued).", ""]
    lines += [
        f"Growth over the last {args.last_seconds / 3600:g} h: the Theil-Sen trend line through all of its samples, "
        f"from its value at the first sample to its value at the last; more than {args.limit_pct:g} % growth fails. "
        f"Beside it, not judged: the median of the first {args.window} samples against the median of the last "
        f"{args.window} (a busy count such as descriptors swings by a few either way from minute to minute). "
        "p95 latency is judged by the same rule as memory, descriptors and connections. The load driver is not part "
        "of the deployment: shown, not judged.",
    ]
    if short:
        lines += ["", f"**Short run**: {span:.0f} s sampled, less than the {args.last_seconds:.0f} s judged plus a "
                  "sample before it, so the whole run stands in for the last hour (with fewer than twice "
                  f"{args.window} samples, each median is of half of them); warm-up is inside it. Not a soak verdict."]
    lines += ["", "| series | from s | to s | samples | trend from | trend to | growth (trend) | median first | "
              "median last | ends' growth | verdict |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        verdict = ("no data" if r["passed"] is None else ("PASS" if r["passed"] else "FAIL") if r["judged"]
                   else "shown, not judged")
        pct = lambda key: "-" if r.get(key) is None else f"{r[key]:+.1f} %"  # noqa: E731
        span_of = "- | -" if r.get("from_s") is None else f"{r['from_s']:.0f} | {r['to_s']:.0f}"
        lines.append(f"| {r['what']} | {span_of} | {r['samples']} | {fmt(r.get('trend_from'))} | "
                     f"{fmt(r.get('trend_to'))} | {pct('growth_pct')} | {fmt(r.get('first'))} | {fmt(r.get('last'))} "
                     f"| {pct('endpoint_pct')} | {verdict} |")
    if extra.get("rejudged_at"):
        lines += ["", f"Re-judged on {extra['rejudged_at']} from the samples with `--rejudge` (the run's own verdict was "
                  f"{'PASS' if extra.get('first_verdict') else 'FAIL'}, by the rules of the version that ran it)."]
    lines += ["", f"Verdict: {'PASS' if passed else 'FAIL'}" + ("" if status == "completed" else f" (run {status})")
              + (" (short run)" if short else ""), "",
              "Files: samples.csv (one row per window), soak.png (RSS, fds, PostgreSQL connections, p95/p99), soak.json."]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    if samples:
        plot(samples, args.out / "soak.png", args.last_seconds,
             f"soak: {args.rate:g} msg/s, {args.customers} customers, PostgreSQL")
    write_text_atomically(args.out / "soak.md", text + "\n")
    data = {"status": status, "passed": passed, "short": short, "totals": totals, "growth": rows, "mix": mix_text,
            "parameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **extra}
    write_text_atomically(args.out / "soak.json", json.dumps(data, indent=2, default=str))
    print("\n" + text, flush=True)
    return data


# --------------------------------------------------------------------- the run
def soak(args, people: List[Any], windows: Windows, writer: SampleWriter, extra: Dict[str, Any]) -> Dict[str, Any]:
    """PostgreSQL, the servers, warm-up, prewarm, the sampled drive; everything stopped on the way out."""
    from bot.serve import Assistant
    from bot.local_services import postgres_server

    model, _ = trained_models(args, ["ours"], args.out)  # only stock Rasa's model would use the folder
    has_history = any(getattr(p, "history", None) for p in people)
    extra["model"] = str(model)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with postgres_server() as pg:
        env = bench_env(has_history, args.precision, ASSISTANT_TRACKER_URL=pg.create_database(TRACKER_DB),
                        ASSISTANT_DATABASE_URL=pg.create_database(APP_DB))
        env.pop("ASSISTANT_LOCK_STORE_URL", None)  # one server: Rasa's in-memory lock store
        servers = Assistant(model, env, free_port(), free_port(), logs, PROJECT_ROOT / "bot" / "credentials.yml", log_dir=logs)
        try:
            print("==> soak: starting the servers on PostgreSQL", flush=True)
            servers.start(timeout=600)
            url = f"{servers.url}/webhooks/rest/webhook"
            asyncio.run(drive(url, plan(10, 10, 3, seed=args.seed + 1000), args.timeout, {}))
            if has_history:
                extra["prewarm"] = asyncio.run(prewarm(url, people, args.timeout))
                print(f"==> soak: prewarm {extra['prewarm']}", flush=True)
            actions, rasa = servers.processes
            extra["postgres_version"] = pg_query(pg, "SHOW server_version")[0][0]
            roots = {"rasa": rasa.pid, "actions": actions.pid, "postgres": postmaster_pid(pg)}

            def probe() -> Dict[str, Any]:
                trees = {**process_trees(roots), "driver": [os.getpid()]}  # the driver alone, not its `ps`
                row = {f"rss_{t}_mb": rss_mb(trees[t]) for t in TREES}
                row.update({f"fds_{t}": fd_count(trees[t]) for t in TREES})
                row.update(pss_postgres_mb=pss_mb(trees["postgres"]), procs_postgres=len(trees["postgres"]))
                return {**row, **pg_connections(pg)}

            def check() -> Optional[str]:
                dead = [(n, p.returncode) for n, p in (("action server", actions), ("Rasa server", rasa)) if p.poll() is not None]
                return ", ".join(f"the {n} exited with code {c}" for n, c in dead) or None

            async def sampled() -> Dict[str, Any]:
                loop = asyncio.get_running_loop()
                task = asyncio.ensure_future(drive(url, people, args.timeout, {}, on_result=windows.add, keep_results=False))
                sampler = Sampler(windows, probe, writer, loop.time() + 1.0, args.timeout + 2, check)
                sampler.on_failure = lambda: loop.call_soon_threadsafe(task.cancel)
                extra["sampler"] = sampler
                sampler.start()
                print(f"==> soak: {sum(len(p.messages) for p in people)} messages at {args.rate:g}/s for "
                      f"{args.duration:.0f} s, sampled every {args.sample_seconds:g} s into {writer.path}", flush=True)
                try:
                    return await task
                except asyncio.CancelledError:
                    if sampler.failure:  # cancelled by the sampler: a server exited
                        raise RuntimeError(sampler.failure) from None
                    raise

            summary = asyncio.run(sampled())
            summary.pop("results", None)
            return summary
        finally:
            sampler = extra.get("sampler")
            if sampler is not None:
                sampler.finish(math.ceil(args.duration / args.sample_seconds))
                if sampler.failure:
                    extra["failure"] = sampler.failure
            servers.stop()


def rejudge(folder: Path) -> Dict[str, Any]:
    """soak.md, soak.png and soak.json of a finished run in `folder` again, by this version's rules; nothing is run."""
    import datetime

    folder = Path(folder)
    try:
        earlier = json.loads((folder / "soak.json").read_text(encoding="utf-8"))
        samples = read_samples(folder / "samples.csv")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot re-judge {folder}: {exc}") from exc
    args = argparse.Namespace(**earlier["parameters"])
    args.out = folder
    for key in ("duration", "rate", "sample_seconds", "timeout", "last_seconds", "limit_pct"):
        setattr(args, key, float(getattr(args, key)))
    known = {"status", "passed", "short", "totals", "growth", "parameters", "mix", "first_verdict", "rejudged_at"}
    extra = {k: v for k, v in earlier.items() if k not in known}
    extra["first_verdict"] = earlier.get("first_verdict", earlier.get("passed"))
    extra["rejudged_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mix_text = earlier.get("mix") or customers_for(args, args.rate)[1]
    return report(args, samples, earlier["totals"], earlier["status"], mix_text, extra)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=30.0, help="offered messages per second")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--duration", type=float, default=7200.0, help="seconds of scheduled sends")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a message counts as an error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--model", type=Path, help="Rasa model archive (default: newest in models/, built if none)")
    parser.add_argument("--long-customers", type=int, default=10)
    parser.add_argument("--long-turns", type=int, default=100)
    parser.add_argument("--last-seconds", type=float, default=3600.0, help="the window growth is judged over")
    parser.add_argument("--window", type=int, default=5, help="samples per median at each end of that window (shown beside the judged trend)")
    parser.add_argument("--limit-pct", type=float, default=LIMIT_PCT)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "soak")
    parser.add_argument("--rejudge", type=Path, metavar="OUT",
                        help="write the report of the finished run in OUT again by this version's rules; runs nothing")
    args = parser.parse_args(argv)
    if args.rejudge:
        return 0 if rejudge(args.rejudge)["passed"] else 1
    args.mix, args.burst_rate = "support-day", None  # what customers_for reads
    people, mix_text = customers_for(args, args.rate)
    args.out.mkdir(parents=True, exist_ok=True)
    windows = Windows(args.sample_seconds, (at for p in people for at in p.schedule))
    writer = SampleWriter(args.out / "samples.csv")
    extra: Dict[str, Any] = {}
    status, summary = "completed", {}
    try:
        with sigterm_as_interrupt():
            summary = soak(args, people, windows, writer, extra)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as exc:
        status = f"failed: {type(exc).__name__}: {exc}"
        import traceback

        traceback.print_exc()
    extra.pop("sampler", None)
    if extra.get("failure") and status == "completed":
        status = f"failed: {extra['failure']}"
    totals = windows.summary()
    extra["conversation"] = summary.get("conversation")
    data = report(args, writer.rows, totals, status, mix_text, extra)
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
