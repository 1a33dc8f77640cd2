"""Importing the probe loads no torch: the proxy imports it when it is built, so `curate fit`
(which reads observation files through curate.probe) and the CLI's start stay light. The
package's place among the layers is checked by tests/test_architecture.py."""
from __future__ import annotations

import subprocess
import sys


def test_importing_the_probe_loads_no_torch():
    code = ("import sys, curate.probe.workflow, curate.probe.validation, "
            "curate.probe.observations_io; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
