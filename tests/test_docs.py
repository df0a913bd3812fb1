"""The docs stay true: every setting is in the README's reference and in the shipped
config; the README's two quickstart commands are the ones CI runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from aggregator.config import env_name, settings_reference

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, default, _help in settings_reference():
        row = f"| `{name}` | `{default}` | `{env_name(name)}` |"
        assert row in readme, row


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    assert len(commands) >= 2
    run_command, test_command = commands[0], commands[1]
    assert "aggregator run" in run_command
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_procfile_has_web_and_worker() -> None:
    kinds = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert "gunicorn" in kinds["web"] and "aggregator.web:create_app()" in kinds["web"]
    assert "aggregator worker" in kinds["worker"]
