"""Several servers on one machine: 1, 2, 4 Rasa replicas behind nginx, PostgreSQL, Redis, action servers.

    python -m bot.bench_replicas --replicas 1,2,4 --action-servers 2 --rates 30,50,70 \\
        --customers 300 --duration 60 --precision auto --model models/<ours>.tar.gz --out reports/replicas

For each replica count this starts the topology of docs/deployment.md for
real (bot/local_services.py): a fresh PostgreSQL (tracker store and project
database), a fresh Redis (lock store), the action servers, the Rasa replicas
(`bot.serve.Assistant`) and nginx with deploy/nginx.conf in front of the
replicas. Then it drives the support-day mix (`bot.load_mix`, the long
conversations sent first by `bench_load.prewarm`) open loop through nginx at
each rate, in ascending order, on the same servers, with a pause of
``--drain`` seconds between rates; everything is stopped before the next
replica count starts, on an error and on Ctrl-C or SIGTERM.

Action servers: each Rasa replica is given its own action endpoint, replica
i calling action server ((i - 1) mod M) + 1, through the endpoints.yml of its
group (`spread`); no proxy sits between them, so no extra hop costs CPU on
the measured machine. Fewer replicas than ``--action-servers`` get one
action server each: the baseline row is one Rasa server and one action
server, on the same PostgreSQL, Redis and nginx.

Per replica count and rate: latency from each message's scheduled send time
(p50/p95/p99), errors, refusals (503), CPU milliseconds per message offered
by component (from /proc: the Rasa replicas, the action servers, PostgreSQL
with its backends, nginx, Redis, and the load driver itself, which shares the
machine), how busy the machine's cores were (/proc/stat), the resident
memory of each replica and action server after the run, and the load
average. The report (``OUT/replicas.md`` and ``OUT/replicas.json``, rewritten
after each replica count) ends with the sizing arithmetic (`sizing`).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from bot.bench_load import bench_env, child_map, child_pids
from core.processes import project_env, sigterm_as_interrupt
from core.settings import PROJECT_ROOT

SLO_P95_MS = 100.0  # the latency a rate must keep to count as served
SERVER_PARTS = ("rasa", "actions", "postgres", "nginx", "redis")  # what "all" adds up (the driver is apart)
PART_NAMES = {"rasa": "Rasa replicas", "actions": "action servers", "postgres": "PostgreSQL", "nginx": "nginx",
              "redis": "Redis", "driver": "load driver"}
LOCK_DB = 1  # Redis database of the lock store, as in the scale-out test


# --------------------------------------------------------------------------- arguments
def counts(text: str) -> List[int]:
    """'1,2,4' -> [1, 2, 4]: distinct positive whole numbers, ascending."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from exc
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def rates(text: str) -> List[float]:
    """'50,30' -> [30.0, 50.0]: distinct positive rates, ascending (the order they run in)."""
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"expected positive rates, got {text!r}")
    return values


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=counts, default=[1, 2, 4], help="comma list of Rasa replica counts")
    parser.add_argument("--action-servers", type=positive_int, default=2,
                        help="action servers (fewer replicas than this get one action server each)")
    parser.add_argument("--rates", type=rates, default=[30.0, 50.0, 70.0], help="comma list of offered msg/s")
    parser.add_argument("--customers", type=positive_int, default=300)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of scheduled sends per rate")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a message counts as an error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-customers", type=int, default=10,
                        help="customers whose conversation is --long-turns messages old when a rate starts")
    parser.add_argument("--long-turns", type=int, default=100)
    parser.add_argument("--drain", type=float, default=10.0, help="seconds of pause between two rates")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="serving precision of our models (fp32: as on a CPU without bfloat16)")
    parser.add_argument("--model", type=Path, help="Rasa model archive (default: the newest in models/, built if none)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "replicas")
    parser.add_argument("--size-for", type=float, default=100.0,
                        help="msg/s of the worked example in the sizing paragraph")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds for the servers to come up")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.timeout <= 0 or args.drain < 0:
        parser.error("--duration and --timeout must be positive, --drain not negative")
    # bench_load.customers_for reads these: the support-day mix, no bursts.
    args.mix, args.burst_rate = "support-day", None
    return args


def spread(replicas: int, action_servers: int) -> List[List[int]]:
    """Replica numbers (1-based) of each action server's group: replica i calls action server ((i-1) mod M) + 1.

    M is `action_servers`, but never more than `replicas` (an action server
    without a replica would only cost memory).
    """
    groups = min(replicas, action_servers)
    return [[i for i in range(1, replicas + 1) if (i - 1) % groups == g] for g in range(groups)]


# ------------------------------------------------------------------------ measuring
def tree_cpu_seconds(root: int, children: Optional[Dict[int, List[int]]] = None) -> float:
    """CPU seconds of `root`'s process tree so far, the children it has reaped included.

    Each live process counts its own user+system time plus that of the
    children it waited for (cutime, cstime), so PostgreSQL backends that
    ended during the run are still counted, and nothing twice.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in child_pids(root, children):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def tree_rss_mb(root: int, children: Optional[Dict[int, List[int]]] = None) -> float:
    """Resident memory of `root`'s process tree, MB (VmRSS, so shared pages count in each process)."""
    kb = 0
    for pid in child_pids(root, children):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return kb / 1024


def machine_jiffies() -> Tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot (/proc/stat; idle and iowait are not busy)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return values[0] + values[1] + values[2] + sum(values[5:8]), sum(values)


def cpu_snapshot(roots: Dict[str, List[int]]) -> Dict[str, float]:
    """CPU seconds so far of each part's process trees, and of this process (the load driver)."""
    children = child_map()
    snapshot = {part: sum(tree_cpu_seconds(pid, children) for pid in pids) for part, pids in roots.items()}
    snapshot["driver"] = time.process_time()
    return snapshot


def cpu_ms_per_message(before: Dict[str, float], after: Dict[str, float], messages: int) -> Dict[str, float]:
    """CPU milliseconds per message offered, per part; "all" is the servers' sum (not the driver)."""
    per = {part: 1000 * (after[part] - before[part]) / max(1, messages) for part in after}
    per["all"] = sum(per.get(part, 0.0) for part in SERVER_PARTS)
    return per


def busy_share(before: Tuple[int, int], after: Tuple[int, int]) -> float:
    """Fraction of all the machine's core time that was busy between two `machine_jiffies`."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


# --------------------------------------------------------------------------- the stack
@dataclasses.dataclass
class Stack:
    """A running replica count: the Assistant of each action server's group, nginx, PostgreSQL, Redis."""

    replicas: int
    groups: List[Any]  # bot.serve.Assistant: processes[0] its action server, the rest its Rasa replicas
    url: str  # nginx's REST webhook
    roots: Dict[str, List[int]]  # part -> root pids, for CPU and memory

    @property
    def action_servers(self) -> int:
        return len(self.groups)

    def memory(self) -> Dict[str, List[float]]:
        """MB resident now: each Rasa replica, each action server (in replica / action-server order)."""
        children = child_map()
        return {"rasa": [round(tree_rss_mb(pid, children), 1) for pid in self.roots["rasa"]],
                "actions": [round(tree_rss_mb(pid, children), 1) for pid in self.roots["actions"]]}


def server_env(args, tracker_url: str, database_url: str, lock_url: str) -> Dict[str, str]:
    """The environment of every server: bench_load.run_system's, with the shared stores of test_scaleout."""
    return bench_env(
        # The long conversations' history is sent before each rate's clock starts (prewarm).
        args.long_customers > 0 and args.long_turns > 0,
        args.precision,
        ASSISTANT_TRACKER_URL=tracker_url,
        ASSISTANT_DATABASE_URL=database_url,
        ASSISTANT_LOCK_STORE_URL=lock_url,
        ASSISTANT_LOCK_STORE_KEY_PREFIX="bench",
        # One secret for every action server and replica (Assistant would otherwise make one per group).
        ACTION_SERVER_SECRET=secrets.token_urlsafe(32),
    )


def _log_tails(folder: Path, chars: int = 3000) -> str:
    return "".join(f"--- {log} (tail) ---\n{log.read_text(errors='replace')[-chars:]}\n"
                   for log in sorted(folder.rglob("*.log")))


def start_stack(stack: contextlib.ExitStack, model: Path, replicas: int, args, workdir: Path) -> Stack:
    """PostgreSQL, Redis, the action servers with their replicas, nginx; each stopped when `stack` closes."""
    from bot.bench_load import free_port
    from bot.serve import Assistant
    from bot.local_services import nginx_proxy, postgres_server, redis_server

    pg = stack.enter_context(postgres_server())
    redis = stack.enter_context(redis_server())
    env = server_env(args, pg.create_database("rasa_tracker"), pg.create_database("northwind"), redis.url(LOCK_DB))
    plan = spread(replicas, args.action_servers)
    ports = {number: free_port() for number in range(1, replicas + 1)}
    groups = []
    for g, numbers in enumerate(plan, start=1):
        folder = workdir / f"actions-{g}"  # its own endpoints.yml: its replicas call its action server
        folder.mkdir(parents=True, exist_ok=True)
        group = Assistant(model, dict(env), ports[numbers[0]], free_port(), folder, PROJECT_ROOT / "bot" / "credentials.yml",
                          log_dir=folder, extra_rasa_ports=[ports[n] for n in numbers[1:]])
        stack.callback(group.stop)  # before start: a failed start stops what it had started
        groups.append(group)
    began = time.monotonic()
    for g, group in enumerate(groups, start=1):  # one group at a time: two cores load two replicas at most anyway
        print(f"==> {replicas} replicas: starting action server {g} and replicas {plan[g - 1]}", flush=True)
        try:
            group.start(timeout=args.start_timeout)
        except RuntimeError:
            sys.stderr.write(_log_tails(workdir))
            raise
    nginx = stack.enter_context(nginx_proxy([f"127.0.0.1:{ports[n]}" for n in range(1, replicas + 1)]))
    print(f"==> {replicas} replicas and {len(groups)} action servers up in {time.monotonic() - began:.0f} s; "
          f"nginx at {nginx.url}", flush=True)
    rasa_by_port = {port: process for group in groups for port, process in zip(group.rasa_ports, group.processes[1:])}
    roots = {
        "rasa": [rasa_by_port[ports[n]].pid for n in range(1, replicas + 1)],
        "actions": [group.processes[0].pid for group in groups],
        "postgres": [int((pg.folder / "data" / "postmaster.pid").read_text().split()[0])],
        "nginx": [int((nginx.folder / "nginx.pid").read_text().split()[0])],
        "redis": [int(redis.client().info("server")["process_id"])],
    }
    return Stack(replicas, groups, f"{nginx.url}/webhooks/rest/webhook", roots)


# ----------------------------------------------------------------------------- a run
def customers_at(args, rate: float) -> Tuple[List[Any], str]:
    """The support-day customers for `rate` (bench_load.customers_for), renamed so each rate has new conversations."""
    from bot.bench_load import customers_for

    return customers_for(args, rate, prefix=f"r{rate:g}")


def make_row(replicas: int, action_servers: int, rate: float, summary: Dict[str, Any], cpu_before: Dict[str, float],
             cpu_after: Dict[str, float], machine_before: Tuple[int, int], machine_after: Tuple[int, int],
             memory: Dict[str, List[float]], load_avg: float) -> Dict[str, Any]:
    """One table row from a run's summary (bench_load.drive) and the measurements around it."""
    row = {key: value for key, value in summary.items() if key not in ("results", "per_message", "timeline_p95")}
    row.update(
        replicas=replicas, action_servers=action_servers, rate=rate,
        cpu_ms=cpu_ms_per_message(cpu_before, cpu_after, summary["messages"]),
        machine_busy=busy_share(machine_before, machine_after),
        rss_rasa_mb=memory["rasa"], rss_actions_mb=memory["actions"], load_avg=load_avg,
    )
    return row


def run_rate(stack: Stack, args, rate: float) -> Dict[str, Any]:
    """Prewarm the long conversations, then drive `rate` through nginx and measure around it."""
    from bot.bench_load import drive, prewarm

    people, _ = customers_at(args, rate)
    if any(getattr(p, "history", None) for p in people):
        sent = asyncio.run(prewarm(stack.url, people, args.timeout))
        print(f"==> {stack.replicas} replicas, {rate:g} msg/s: {sent['messages']} messages of history in "
              f"{sent['seconds']:.0f} s ({sent['errors']} errors)", flush=True)
    print(f"==> {stack.replicas} replicas, {rate:g} msg/s: {sum(len(p.messages) for p in people)} messages from "
          f"{len(people)} customers for {args.duration:g} s", flush=True)
    cpu0, machine0 = cpu_snapshot(stack.roots), machine_jiffies()
    summary = asyncio.run(drive(stack.url, people, args.timeout, {}))
    cpu1, machine1 = cpu_snapshot(stack.roots), machine_jiffies()
    row = make_row(stack.replicas, stack.action_servers, rate, summary, cpu0, cpu1, machine0, machine1,
                   stack.memory(), os.getloadavg()[0])
    print(f"    answered {row['throughput']:.1f}/s, p95 {row['p95']:.0f} ms, errors {row['errors']}, "
          f"refused {row['refused']}, CPU {row['cpu_ms']['all']:.1f} ms/msg, machine {row['machine_busy']:.0%} busy",
          flush=True)
    return row


def run_replicas(model: Path, replicas: int, args, workdir: Path) -> List[Dict[str, Any]]:
    """One replica count: start everything once, warm it, every rate in ascending order, stop everything."""
    from bot.bench_load import drive, plan

    rows = []
    with contextlib.ExitStack() as stack:
        running = start_stack(stack, model, replicas, args, workdir / f"replicas-{replicas}")
        # Warm every replica (nginx deals round-robin): first-message costs stay out of the figures.
        asyncio.run(drive(running.url, plan(10, 10, 3 * replicas, seed=args.seed + 1000), args.timeout, {}))
        for number, rate in enumerate(args.rates):
            if number:
                time.sleep(args.drain)
            rows.append(run_rate(running, args, rate))
    return rows


# --------------------------------------------------------------------------- the report
def meets_slo(row: Dict[str, Any]) -> bool:
    """p95 under SLO_P95_MS, no errors and nothing refused (a refusal is quick, and would flatter the p95)."""
    return row["p95"] < SLO_P95_MS and row["errors"] == 0 and row.get("refused", 0) == 0


def best_rate(rows: Iterable[Dict[str, Any]], replicas: int) -> Optional[float]:
    """The highest offered rate that `replicas` replicas served within the SLO, or None."""
    good = [r["rate"] for r in rows if r["replicas"] == replicas and meets_slo(r)]
    return max(good) if good else None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def latency_table(rows: List[Dict[str, Any]]) -> str:
    lines = [
        "| Rasa replicas | action servers | offered msg/s | messages | answered/s | p50 ms | p95 ms | p99 ms | errors | "
        "refused (503) | machine CPU busy | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted((r.get("error_kinds") or {}).items()))
        lines.append(
            f"| {r['replicas']} | {r['action_servers']} | {r['rate']:g} | {r['messages']} | {r['throughput']:.1f} | "
            f"{r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['errors']}{' (' + kinds + ')' if kinds else ''} | "
            f"{r.get('refused', 0)} | {r['machine_busy']:.0%} | {r['load_avg']:.1f} |")
    return "\n".join(lines)


def cost_table(rows: List[Dict[str, Any]]) -> str:
    lines = [
        "| Rasa replicas | action servers | offered msg/s | CPU ms/msg all | Rasa replicas | action servers | PostgreSQL | "
        "nginx | Redis | load driver | RSS per Rasa replica, MB | RSS per action server, MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        c = r["cpu_ms"]
        lines.append(
            f"| {r['replicas']} | {r['action_servers']} | {r['rate']:g} | {c['all']:.1f} | {c['rasa']:.1f} | "
            f"{c['actions']:.1f} | {c['postgres']:.1f} | {c['nginx']:.1f} | {c['redis']:.1f} | {c['driver']:.1f} | "
            f"{' / '.join(f'{m:.0f}' for m in r['rss_rasa_mb'])} | {' / '.join(f'{m:.0f}' for m in r['rss_actions_mb'])} |")
    return "\n".join(lines)


def by_rate_table(rows: List[Dict[str, Any]]) -> str:
    """p95 (machine busy) for each rate across replica counts: where more replicas help, where the cores run out."""
    replica_counts = sorted({r["replicas"] for r in rows})
    lines = ["| offered msg/s | " + " | ".join(f"{n} replica{'s' if n > 1 else ''}" for n in replica_counts) + " |",
             "|---:|" + "---:|" * len(replica_counts)]
    for rate in sorted({r["rate"] for r in rows}):
        cells = []
        for n in replica_counts:
            row = next((r for r in rows if r["replicas"] == n and r["rate"] == rate), None)
            cells.append("-" if row is None else
                         f"{row['p95']:.0f} ms ({row['machine_busy']:.0%}){'' if meets_slo(row) else ' x'}")
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_lines(rows: List[Dict[str, Any]]) -> str:
    lines = []
    for n in sorted({r["replicas"] for r in rows}):
        best = best_rate(rows, n)
        tried = ", ".join(f"{r['rate']:g}" for r in rows if r["replicas"] == n)
        lines.append(f"Highest offered rate with p95 under {SLO_P95_MS:.0f} ms, no errors and nothing refused, {n} "
                     f"Rasa replica{'s' if n > 1 else ''}: " + (f"{best:g} msg/s" if best is not None else f"none of {tried}"))
    return "\n".join(lines)


def sizing(rows: List[Dict[str, Any]], cores: int, target: float) -> Dict[str, Any]:
    """The sizing figures, from the row with the highest rate served within the SLO (fewest replicas on a tie).

    At that row, R msg/s on C cores with A CPU ms per message (all servers):
    - messages per second per core: R / C;
    - utilisation U = R x A / 1000 / C: how busy the cores were while p95 still held;
    - for `target` T msg/s: cores = T x A / 1000 / U (= T / (R / C)), Rasa
      replicas = T x A_rasa / 1000 / U (a replica is one Python process and
      uses one core at most), action servers = T x A_actions / 1000 / U,
      each rounded up; memory = replicas x the largest RSS of a replica +
      action servers x the largest RSS of an action server, in any row.
    """
    found = {"met": False, "cores": cores, "target": target,
             "rss_rasa_mb": max((m for r in rows for m in r["rss_rasa_mb"]), default=0.0),
             "rss_actions_mb": max((m for r in rows for m in r["rss_actions_mb"]), default=0.0)}
    candidates = [(best_rate(rows, n), -n) for n in {r["replicas"] for r in rows}]
    candidates = [c for c in candidates if c[0] is not None]
    if not candidates:
        return found
    rate, minus_n = max(candidates)
    row = next(r for r in rows if r["replicas"] == -minus_n and r["rate"] == rate)
    cpu = row["cpu_ms"]
    util = rate * cpu["all"] / 1000 / cores
    found.update(met=True, replicas=row["replicas"], action_servers=row["action_servers"], rate=rate,
                 cpu_ms={k: cpu[k] for k in (*SERVER_PARTS, "all", "driver")},
                 per_core=rate / cores, utilisation=util, p95=row["p95"])
    if util > 0:
        need = lambda ms: max(1, math.ceil(round(target * ms / 1000 / util, 6)))  # noqa: E731  (6 places: no 2.0000001 -> 3)
        found.update(need_cores=need(cpu["all"]), need_replicas=need(cpu["rasa"]), need_action_servers=need(cpu["actions"]))
        found["need_memory_mb"] = (found["need_replicas"] * found["rss_rasa_mb"]
                                   + found["need_action_servers"] * found["rss_actions_mb"])
    return found


def sizing_text(s: Dict[str, Any]) -> str:
    """The report's sizing paragraph (docs/deployment.md, "Sizing a deployment", explains it)."""
    memory = (f"Memory after the runs: up to {s['rss_rasa_mb']:.0f} MB per Rasa replica and "
              f"{s['rss_actions_mb']:.0f} MB per action server (resident).")
    if not s["met"]:
        return (f"Sizing: no run kept p95 under {SLO_P95_MS:.0f} ms with no errors and nothing refused, so there is no "
                f"rate per core to size from; run lower rates. {memory}")
    c = s["cpu_ms"]
    parts = " + ".join(f"{PART_NAMES[k]} {c[k]:.1f}" for k in SERVER_PARTS)
    text = (f"Sizing, from the highest rate served within the target ({s['replicas']} Rasa replica"
            f"{'s' if s['replicas'] > 1 else ''} and {s['action_servers']} action server"
            f"{'s' if s['action_servers'] > 1 else ''} at {s['rate']:g} msg/s, p95 {s['p95']:.0f} ms, on {s['cores']} "
            f"cores): {s['per_core']:.1f} messages per second per core, with the cores {s['utilisation']:.0%} busy "
            f"on the servers' work. CPU per message: {c['all']:.1f} ms = {parts} (the load driver's "
            f"{c['driver']:.1f} ms not counted). {memory}")
    if "need_cores" in s:
        t, u = s["target"], s["utilisation"]
        text += (f" For {t:g} msg/s at the same utilisation: cores = {t:g} x {c['all']:.1f} / 1000 / {u:.2f} -> "
                 f"{s['need_cores']}; Rasa replicas = {t:g} x {c['rasa']:.1f} / 1000 / {u:.2f} -> {s['need_replicas']} "
                 f"(one core each at most); action servers = {t:g} x {c['actions']:.1f} / 1000 / {u:.2f} -> "
                 f"{s['need_action_servers']}; memory = {s['need_replicas']} x {s['rss_rasa_mb']:.0f} + "
                 f"{s['need_action_servers']} x {s['rss_actions_mb']:.0f} MB = {s['need_memory_mb'] / 1024:.1f} GB, "
                 f"PostgreSQL and Redis apart. This assumes the cost per message stays the same on more cores and that "
                 f"one PostgreSQL and one Redis keep up, which a machine of {s['cores']} cores cannot show.")
    return text


def report(rows: List[Dict[str, Any]], args, cpu: str, cores: int, mix: str) -> str:
    """The whole markdown report."""
    return "\n\n".join([
        f"CPU: {cpu}; {cores} cores; serving precision: {args.precision}",
        mix.strip(),
        f"Topology per row: fresh PostgreSQL (tracker store and project database) and Redis (lock store) for each "
        f"replica count, the Rasa replicas behind nginx (deploy/nginx.conf), each replica calling its own action "
        f"server (replica i -> action server ((i - 1) mod M) + 1). The servers of a replica count are started once; "
        f"its rates run in ascending order on them, {args.drain:g} s apart, each with its own customers "
        f"({args.customers}, open loop, {args.duration:g} s, the long conversations sent first). Latency from each "
        f"message's scheduled send time; timeout {args.timeout:g} s. CPU ms per message offered, from /proc; "
        f"\"all\" is the servers' sum, without the load driver, which runs on the same cores. Machine CPU busy: share "
        f"of all cores' time, anyone's work included. RSS after the run, one figure per server.",
        latency_table(rows),
        cost_table(rows),
        f"p95 by replica count (machine CPU busy; x: p95 {SLO_P95_MS:.0f} ms or more, an error or a refusal):",
        by_rate_table(rows),
        best_lines(rows),
        sizing_text(sizing(rows, cores, args.size_for)),
    ])


def write_report(rows: List[Dict[str, Any]], args, mix: str) -> str:
    from core.encoder import cpu_description
    from core.files import write_text_atomically

    cores = len(os.sched_getaffinity(0))
    cpu = cpu_description()
    text = report(rows, args, cpu, cores, mix)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "replicas.md", text + "\n")
    payload = {"cpu": cpu, "cores": cores, "args": {k: v for k, v in vars(args).items() if k not in ("out", "model")},
               "rows": rows, "sizing": sizing(rows, cores, args.size_for)}
    write_text_atomically(args.out / "replicas.json", json.dumps(payload, indent=2, default=str) + "\n")
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():  # like Ctrl-C: the finally clauses stop every server
        return _run(args)


def _run(args) -> int:
    from bot.serve import prepare
    from core.settings import get_settings

    env = project_env()
    model = args.model or prepare(env, PROJECT_ROOT / "config.yml", Path(get_settings().model_dir))
    _, mix = customers_at(args, args.rates[-1])
    mix = mix.replace("Traffic (", f"Traffic at {args.rates[-1]:g} msg/s (", 1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    rows: List[Dict[str, Any]] = []
    try:
        for replicas in args.replicas:
            rows += run_replicas(model, replicas, args, workdir)
            write_report(rows, args, mix)  # after each replica count: a later failure keeps these
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + write_report(rows, args, mix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
