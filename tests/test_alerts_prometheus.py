"""The operators' Prometheus alerting rules (deploy/prometheus/): valid for promtool, firing when they should,
and built only on metrics the service really exports."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from broker.api.ops import _alert_series, _series
from broker.ingest import Metrics
from tests.support import ROOT

RULES = ROOT / "deploy" / "prometheus" / "hailong-alerts.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian package `prometheus`; "
                                           "`make system-deps` installs it)")


@needs_promtool
def test_the_rules_pass_promtool_check():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@needs_promtool
def test_each_rule_fires_when_it_should_and_only_then():
    check = subprocess.run(["promtool", "test", "rules", "hailong-alerts.test.yml"], cwd=RULES.parent,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_rules_use_only_metrics_the_service_exports():
    used = set(re.findall(r"\bhailong_[a-z_]+", RULES.read_text(encoding="utf-8")))
    class NoAlerts:
        def open_alert_count(self):
            return 0

        def outbox_pending(self):
            return 0

    exported = {name for name, *_ in _series(Metrics(), {}) + _alert_series(NoAlerts())}
    assert used and used <= exported, used - exported
