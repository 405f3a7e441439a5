"""The examples of docs/alerts/ are true: every JSON and XML example is read by the portal's parser into
what its ``<!-- check: … -->`` comment says, every shipper configuration shown is accepted by the
shipper, and the signed curl recipe and the Wazuh integration script post alerts the real portal stores.

A check comment stands right before the fenced block it is about. ``key=value`` pairs; for a block
holding several alerts, the values of each are separated by ``|`` (one value: the same for all), and
``accused`` lists addresses with ``,``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.shipper.harness import LivePortal
from vmportal.alerts import Alert, parse_record
from vmportal.compliance.nmap import forbidden_services, parse_nmap_xml, safe_xml_root
from vmportal.shipper.config import build

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts"
PAGES = (
    "README.md",
    "shipper.md",
    "suricata.md",
    "wazuh.md",
    "zeek.md",
    "elastic.md",
    "alertmanager.md",
    "nmap.md",
    "after-the-alert.md",
)
_BLOCK = re.compile(
    r"^(?P<check><!-- check: (?P<spec>.*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M
)


@dataclass(frozen=True)
class Example:
    page: str
    lang: str
    spec: str | None
    body: str

    @property
    def fields(self) -> dict[str, str]:
        assert self.spec is not None
        return dict(part.split("=", 1) for part in self.spec.split() if "=" in part)

    @property
    def kind(self) -> str:
        assert self.spec is not None
        return self.spec.split()[0]


def examples() -> list[Example]:
    out = []
    for page in PAGES:
        text = (DOCS / page).read_text()
        for m in _BLOCK.finditer(text):
            out.append(Example(page, m["lang"], m["spec"], m["body"]))
    return out


def _checked(kind: str) -> list[Example]:
    found = [e for e in examples() if e.spec and (e.kind == kind or e.fields.get("format") == kind)]
    assert found, f"no example checked as {kind}"
    return found


def test_every_page_exists_and_every_json_or_xml_example_is_checked() -> None:
    assert sorted(p.name for p in DOCS.glob("*.md")) == sorted(PAGES)
    unchecked = [(e.page, e.body[:60]) for e in examples() if e.lang in ("json", "xml") and e.spec is None]
    assert unchecked == []


def _per_alert(value: str, count: int) -> list[str]:
    parts = value.split("|")
    return parts * count if len(parts) == 1 else parts


def _accused(alert: Alert) -> set[str]:
    return {a.ip for a in alert.addresses if a.role in alert.subject_roles}


ALERT_EXAMPLES = [e for e in examples() if e.spec and e.fields.get("format") not in (None, "nmap")]


@pytest.mark.parametrize(
    "example", ALERT_EXAMPLES, ids=lambda e: f"{e.page}:{e.fields.get('external_id', '')[:24]}"
)
def test_the_alert_examples_parse_into_what_the_page_says(example: Example) -> None:
    want = example.fields
    record = json.loads(example.body)
    results = parse_record(want["format"], record, source="docs", received_at=datetime.now(UTC))
    alerts = [r for r in results if isinstance(r, Alert)]
    assert len(alerts) == len(results) == int(want.get("alerts", "1")), results
    for key, value in want.items():
        if key in ("format", "alerts"):
            continue
        for alert, expected in zip(alerts, _per_alert(value, len(alerts)), strict=True):
            if key == "accused":
                assert _accused(alert) == {ip for ip in expected.split(",") if ip}, alert
            elif key == "target_host":
                assert (alert.target_host or "") == expected
            else:
                assert str(getattr(alert, key)) == expected, (key, alert)


def test_the_nmap_example_raises_the_violations_the_page_says() -> None:
    (example,) = _checked("nmap")
    findings = forbidden_services(parse_nmap_xml(example.body.encode()))
    got = {f"{f.addresses[0]}:{f.key}" for f in findings}
    assert got == set(example.fields["findings"].split("|"))


def test_the_wazuh_integration_block_is_one_integratord_runs() -> None:
    (example,) = _checked("wazuh-integration-block")
    block = safe_xml_root(example.body)  # the portal's own reader: no DTD, no entities
    assert block.tag == "integration"
    assert (block.findtext("name") or "").startswith("custom-")  # integratord runs integrations/<name>
    assert re.fullmatch(r"https://[^/]+/api/v1/alerts/[a-z0-9][a-z0-9_.-]*", block.findtext("hook_url") or "")
    assert block.findtext("alert_format") == "json" and (block.findtext("api_key") or "").startswith("whsec_")
    assert 0 <= int(block.findtext("level") or "") <= 16


def test_every_shipper_configuration_shown_is_accepted(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=\n")
    shown = _checked("shipper-config")
    assert {e.page for e in shown} >= {"shipper.md", "suricata.md", "wazuh.md", "zeek.md"}
    for example in shown:
        values = tomllib.loads(example.body)
        values["secret_file"] = str(secret)  # the page's path does not exist on this machine
        config = build(values)
        assert config.endpoint == f"https://vmportal.example.edu.cn/api/v1/alerts/{values['source']}"


def test_the_signed_curl_recipe_posts_an_alert_the_portal_stores(portal: LivePortal) -> None:
    source = portal.source("suricata")
    (example,) = _checked("signed-curl")
    lines = example.body.splitlines()
    assert lines[0].startswith("PORTAL=")  # the placeholders; the test's own values instead
    script = "\n".join([f"PORTAL={portal.url} SOURCE={source['name']}", *lines[1:]])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, "SECRET": source["secret"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 1, result.stdout
    (alert,) = portal.alerts(source)
    assert alert["external_id"] == "1781520386405376:2035468:0" and alert["category"] == "trojan"


def test_the_wazuh_integration_script_posts_the_alert_once(portal: LivePortal, tmp_path: Path) -> None:
    source = portal.source("wazuh")
    (script,) = _checked("wazuh-integration-script")
    path = tmp_path / "custom-vmportal"
    path.write_text(script.body)
    alert = next(e for e in _checked("wazuh") if "all_fields" not in e.body)
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(alert.body)
    url = f"{portal.url}/api/v1/alerts/{source['name']}"
    for _ in range(2):  # integratord runs it again for the same alert: recognised, not stored twice
        argv = [sys.executable, str(path), str(alert_file), source["secret"], url]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{shlex.join(argv[:3])}: {result.stderr}"
    (stored,) = portal.alerts(source)
    assert (stored["category"], stored["severity"], stored["repeats"]) == ("webshell", "high", 0)
    assert [r["webhook_id"] for r in portal.records(source)] == ["wazuh-1773642011.2210934"]
