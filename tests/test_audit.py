"""scripts/audit.py: fails on untriaged vulnerabilities only, says NOT AUDITED when it could not look."""
from __future__ import annotations

import importlib.util

from core.settings import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("audit", PROJECT_ROOT / "scripts" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

VULN = {"id": "PYSEC-2024-1", "aliases": ["CVE-2024-0001"], "fix_versions": ["2.0"], "description": "bad"}


def report(*dependencies):
    return {"dependencies": list(dependencies)}


def test_an_untriaged_vulnerability_fails(capsys):
    assert audit.judge(report({"name": "pkg", "version": "1.0", "vulns": [VULN]}), {}) == 1
    assert "NEW      pkg 1.0: PYSEC-2024-1 / CVE-2024-0001 (fixed in: 2.0)" in capsys.readouterr().out


def test_a_triaged_vulnerability_is_listed_but_passes(capsys):
    known = {"CVE-2024-0001": "not reachable from our code"}
    assert audit.judge(report({"name": "pkg", "version": "1.0", "vulns": [VULN]}, {"name": "ok", "version": "1", "vulns": []}), known) == 0
    out = capsys.readouterr().out
    assert "triaged  pkg 1.0" in out and "not reachable from our code" in out


def test_an_unreachable_service_is_reported_and_does_not_fail(capsys, monkeypatch):
    skipped = [{"name": f"p{i}", "version": "1", "skip_reason": "Dependency not found on PyPI and could not be audited"} for i in range(5)]
    monkeypatch.setattr(audit, "STRICT", False)
    assert audit.judge(report(*skipped), {}) == 0
    assert "NOT AUDITED" in capsys.readouterr().out
    monkeypatch.setattr(audit, "STRICT", True)
    assert audit.judge(report(*skipped), {}) == 1


def test_the_triage_file_parses():
    known = audit.triaged()
    assert known and all(reason for reason in known.values())
