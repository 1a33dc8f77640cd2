"""The worker images (docker/Dockerfile.cpu, .gpu) stay in step with the project: the Beam they
install is the launcher's, torch is the pinned one, every curate package is copied in, and the
build-time smoke check passes in this venv. Docker itself cannot run here: the images are
built and used as documented in docs/runners.md, not in these tests."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("cpu", "gpu")


def _dockerfile(kind: str) -> str:
    return (ROOT / "docker" / f"Dockerfile.{kind}").read_text(encoding="utf-8")


def _arg(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, f"ARG {name}=... not found"
    return match.group(1)


def _package_folders() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(project["tool"]["setuptools"]["package-dir"].values())


@pytest.mark.parametrize("kind", IMAGES)
def test_image_installs_the_launchers_beam_and_the_pinned_torch(kind):
    import sys

    import apache_beam

    text = _dockerfile(kind)
    assert _arg(text, "BEAM_VERSION") == apache_beam.__version__
    assert _arg(text, "PYTHON_VERSION") == f"{sys.version_info.major}.{sys.version_info.minor}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"apache-beam[gcp]=={apache_beam.__version__}" in project["project"]["optional-dependencies"]["dataflow"]
    makefile_torch = re.search(r"pip install -q torch==(\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert _arg(text, "TORCH_VERSION") == makefile_torch
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text


@pytest.mark.parametrize("kind", IMAGES)
def test_image_copies_every_curate_package(kind):
    text = _dockerfile(kind)
    copied = set(re.findall(r"^COPY (\w+) \1$", text, re.MULTILINE))
    assert copied == _package_folders()
    ignore = (ROOT / "docker" / f"Dockerfile.{kind}.dockerignore").read_text().split()
    assert {f"!{folder}" for folder in _package_folders()} <= set(ignore)
    assert "!docker/smoke_check.py" in ignore


def test_smoke_check_passes_in_a_cpu_venv_and_names_what_is_wrong(capsys):
    """The build-time check, run in this (CPU torch) venv: passes as the CPU image's check,
    fails as the GPU image's (CPU torch, no boot) with one line per problem."""
    import importlib.util

    import apache_beam

    spec = importlib.util.spec_from_file_location("smoke_check", ROOT / "docker" / "smoke_check.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    main = smoke.main
    assert main(["--beam-version", apache_beam.__version__]) == 0
    pytest.importorskip("google.cloud.storage", reason="the 'dataflow' extra is not installed")
    assert main(["--gcs", "--beam-version", apache_beam.__version__]) == 0
    assert main(["--cuda", "--beam-version", "0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "CPU build" in err and "expected 0.0.0" in err
