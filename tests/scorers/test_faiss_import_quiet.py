"""faiss's CPU-feature probing stays off stderr (the reliability issue's item 10): its loader
logs every build it cannot load, with a ModuleNotFoundError line, at INFO."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss not installed")

# the root logger at INFO, as in a Beam worker process
PRELUDE = "import logging; logging.basicConfig(level=logging.INFO)\n"


def _stderr(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_lazy_faiss_import_is_quiet_at_info_level():
    err = _stderr("from curate.scorers.clustering import _use_faiss_gpu, import_faiss\n"
                  "_use_faiss_gpu(); assert hasattr(import_faiss(), 'IndexFlatIP')\n"
                  "import logging; assert logging.getLogger('faiss.loader').level == logging.NOTSET\n")
    assert "faiss.loader" not in err and "ModuleNotFoundError" not in err, err


def test_a_plain_faiss_import_does_log_at_info_level():
    # the condition the quiet import removes: on every CPU the loader says what it loaded
    assert "INFO:faiss.loader:" in _stderr("import faiss\n")
