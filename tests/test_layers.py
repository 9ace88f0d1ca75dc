"""The layers' import direction holds: import-linter checks the contracts in pyproject.toml
(pipelines -> components -> trainer, never upward, function-level imports included; the
components' concerns; the bulk job package's internal order)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_contracts_hold():
    lint_imports = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "3 kept" in result.stdout, result.stdout[-2000:]
