"""Dependency audit: every package installed in .venv checked for known vulnerabilities.

    .venv/bin/python scripts/audit.py          # what `make audit` and CI run

Runs pip-audit (pinned in requirements/audit.txt, installed into its own
environment .venv/audit: it needs packaging>=23, Rasa 3.6 packaging<21) on
the exact versions installed (`pip freeze`), without installing anything.

Exit status:
- 0: no vulnerability, or only ones triaged in requirements/audit-ignore.txt
  (one ID a line, with the reason after ``#``), listed anyway;
- 1: a vulnerability nobody has triaged yet: fix the pin, or triage it;
- 0 with a loud "NOT AUDITED" when pip-audit cannot be installed or its
  vulnerability service cannot be reached (a machine without the Internet):
  CI then reports it and goes on. ``AUDIT_STRICT=1`` makes that a failure.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
TOOL_ENV = ROOT / ".venv" / "audit"
TOOL_REQUIREMENTS = ROOT / "requirements" / "audit.txt"
IGNORE_FILE = ROOT / "requirements" / "audit-ignore.txt"
STRICT = os.environ.get("AUDIT_STRICT", "") not in ("", "0", "false")


def say(text: str = "") -> None:
    print(text, flush=True)


def not_audited(why: str) -> int:
    say(f"NOT AUDITED: {why}")
    say("The dependencies were not checked for known vulnerabilities in this run.")
    return 1 if STRICT else 0


def tool() -> Path:
    """pip-audit from its own environment, (re)installed when requirements/audit.txt changed."""
    exe = TOOL_ENV / "bin" / "pip-audit"
    stamp = TOOL_ENV / ".requirements.sha"
    wanted = hashlib.sha256(TOOL_REQUIREMENTS.read_bytes()).hexdigest()
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return exe
    say(f"==> installing pip-audit into {TOOL_ENV.relative_to(ROOT)}")
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOL_ENV)
    done = subprocess.run([str(TOOL_ENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(TOOL_REQUIREMENTS)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise OSError(((done.stderr or done.stdout).strip().splitlines() or ["pip failed"])[-1][:300])
    stamp.write_text(wanted)
    return exe


def triaged() -> Dict[str, str]:
    """Vulnerability IDs already looked at, with the reason."""
    found: Dict[str, str] = {}
    if IGNORE_FILE.exists():
        for line in IGNORE_FILE.read_text(encoding="utf-8").splitlines():
            entry, _, reason = line.partition("#")
            if entry.strip():
                found[entry.strip()] = reason.strip()
    return found


def installed() -> Tuple[Path, List[str]]:
    """A requirements file of every installed package at its version, and those that cannot be looked up."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    pinned = [line for line in frozen if re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+$", line)]
    local = [line for line in frozen if line and line not in pinned and not line.startswith("#")]
    handle = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    handle.write("\n".join(pinned) + "\n")
    handle.close()
    return Path(handle.name), local


def main() -> int:
    try:
        exe = tool()
    except (subprocess.SubprocessError, OSError) as exc:
        return not_audited(f"pip-audit could not be installed ({exc})")
    requirements, local = installed()
    try:
        run = subprocess.run(
            [str(exe), "-r", str(requirements), "--no-deps", "--disable-pip", "--format", "json",
             "--progress-spinner", "off", "--timeout", "20"],
            capture_output=True, text=True, timeout=900,
        )
    except subprocess.TimeoutExpired:
        return not_audited("pip-audit took longer than 15 minutes (is the vulnerability service reachable?)")
    finally:
        requirements.unlink(missing_ok=True)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        return not_audited(f"pip-audit failed (exit {run.returncode}): {tail[0][:300]}")
    return judge(report, triaged(), local)


def judge(report: Dict, known: Dict[str, str], local: List[str] = ()) -> int:
    """Print pip-audit's JSON `report` against the triaged IDs `known`; the exit status."""
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    checked = [d for d in dependencies if not d.get("skip_reason")]
    say(f"pip-audit: {len(dependencies)} packages, {len(checked)} looked up, "
        f"{len(skipped)} could not be" + (f", {len(local)} installed from local paths (not audited)" if local else ""))
    if not dependencies or len(skipped) > len(dependencies) / 2:
        reasons = sorted({re.sub(r":.*", "", d["skip_reason"]) for d in skipped}) or ["no packages"]
        return not_audited(
            f"the vulnerability service answered for {len(checked)} of {len(dependencies)} packages "
            f"({'; '.join(reasons)[:300]}). PyPI's per-version JSON API (pip-audit's default service) or "
            f"OSV (pip-audit -s osv) must be reachable from this machine"
        )
    for dependency in skipped:
        say(f"  not looked up: {dependency['name']} {dependency.get('version', '')}: {dependency['skip_reason']}")
    new: List[str] = []
    seen: Set[str] = set()
    for dependency in checked:
        for vuln in dependency.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            reason = next((known[i] for i in ids if i in known), None)
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            line = f"{dependency['name']} {dependency['version']}: {' / '.join(ids)} (fixed in: {fixes})"
            seen.update(ids)
            if reason is None:
                new.append(line)
            else:
                say(f"  triaged  {line}\n           {reason}")
    for line in new:
        say(f"  NEW      {line}")
    stale = sorted(set(known) - seen)
    if stale:
        say(f"  not reported now (fixed, or not looked up): {', '.join(stale)}")
    if new:
        say(f"{len(new)} vulnerabilities not triaged: raise the pin, or add the ID to "
            f"requirements/audit-ignore.txt with the reason (docs/security.md)")
        return 1
    say("no untriaged vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
