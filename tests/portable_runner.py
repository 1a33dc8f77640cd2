"""Run `curate run` on Beam's PortableRunner with workers that share nothing with the launcher.

The workers come from a separate venv built only from curate's sdist (CPU torch first, then the
sdist with the `cpu` extra), started in an empty folder: they import curate from that venv, not
from this checkout. Beam's local job service runs the job (FnApiRunner inside) and hands every
bundle to an EXTERNAL worker pool started from the same venv. The launcher (`curate run`) runs
from this checkout's venv with absolute paths.

The worker venv is cached under /tmp, keyed by a hash of the sdist's contents (not of the
tarball, whose gzip header holds the build time), the Python and the torch version, so a rerun
on unchanged code reuses it. Everything started here runs in its own process group and is
stopped on the way out, also when the run fails.

    python -m tests.portable_runner OUT_DIR INPUT [INPUT...]   # prints the wall times
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU wheel (see the Makefile): a bare torch pulls CUDA builds
VENV_CACHE = Path(os.environ.get("CURATE_WORKER_VENV_CACHE", tempfile.gettempdir()))
COMPLETE = ".curate-worker-complete"  # written last: a venv without it was interrupted
START_TIMEOUT_S = 120


def _tree_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the checkout (what the sdist is built from)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return sorted(name for name in out.decode().split("\0") if name and (ROOT / name).is_file())


def build_sdist(out_dir: Path) -> Path:
    """curate's sdist, built from a copy of the working tree (the checkout is left untouched)."""
    src = out_dir / "src"
    for name in _tree_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    dist = out_dir / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(dist)], cwd=src, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the sdist failed:\n{proc.stderr[-3000:]}")
    return dist / proc.stdout.strip().splitlines()[-1]


def sdist_content_hash(sdist: Path) -> str:
    digest = hashlib.sha256()
    with tarfile.open(sdist) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile():
                digest.update(member.name.encode() + b"\0")
                digest.update(tar.extractfile(member).read())
    return digest.hexdigest()


def worker_venv(sdist: Path, log=print) -> Path:
    """A venv with curate installed from `sdist` only (cached by content; built once at a time)."""
    key = hashlib.sha256(f"{sdist_content_hash(sdist)} {sys.version} {TORCH}".encode()).hexdigest()[:16]
    venv = VENV_CACHE / f"curate-worker-venv-{key}"
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    with open(VENV_CACHE / f"curate-worker-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run waits instead of building beside it
        _prune_stale_venvs(keep=venv)
        if (venv / COMPLETE).exists():
            (venv / COMPLETE).touch()  # marks it in use (see _prune_stale_venvs)
            log(f"worker venv (cached): {venv}")
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log(f"building the worker venv {venv} from {sdist.name} (a few minutes, once per code version)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for step in ([TORCH], [f"{sdist}[cpu]"]):
            proc = subprocess.run(pip + step, capture_output=True, text=True, cwd=venv)
            if proc.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(step)} into {venv} failed:\n{proc.stderr[-3000:]}")
        (venv / COMPLETE).write_text(sdist.name + "\n")
        return venv


def _prune_stale_venvs(keep: Path, max_kept: int = 2, max_age_s: float = 86400) -> None:
    """Remove worker venvs (~2 GB each, one per code version) beyond the `max_kept` most recently
    used ones, and any unused for a day; `keep` (the one wanted now) stays."""
    complete = [d for d in VENV_CACHE.glob("curate-worker-venv-*") if (d / COMPLETE).exists() and d != keep]
    complete.sort(key=lambda d: (d / COMPLETE).stat().st_mtime, reverse=True)
    for rank, old in enumerate(complete):
        if rank >= max_kept - 1 or time.time() - (old / COMPLETE).stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)
            with contextlib.suppress(OSError):
                (VENV_CACHE / f"{old.name}.lock").unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, name: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not listen on port {port} within {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the process group `proc` leads (the pool's SDK harnesses included)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # harnesses left behind by a leader that exited


@contextlib.contextmanager
def portable_services(venv: Path, work_dir: Path):
    """Start the job service and an EXTERNAL worker pool from `venv`; yield the Beam flags."""
    python = str(venv / "bin" / "python")
    cwd = work_dir / "services"  # empty: nothing of this checkout is importable from there
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    job_port, pool_port = free_port(), free_port()
    started: list[subprocess.Popen] = []
    try:
        for name, args, port in (
                ("job service", ["-m", "apache_beam.runners.portability.local_job_service_main",
                                 f"--port={job_port}"], job_port),
                ("worker pool", ["-m", "apache_beam.runners.worker.worker_pool_main",
                                 f"--service_port={pool_port}"], pool_port)):
            log_path = work_dir / f"{name.replace(' ', '_')}.log"
            with open(log_path, "w") as log_file:
                proc = subprocess.Popen([python, *args], cwd=cwd, env=env, stdout=log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            started.append(proc)
            _wait_for_port(port, proc, name, log_path)
        yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
               "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]
    finally:
        for proc in reversed(started):
            _stop(proc)


def curate_run(inputs: list[Path], output: Path, beam_flags: list[str], workspace: Path) -> subprocess.CompletedProcess:
    """`curate run` from this checkout's venv, every path absolute, no cache and no catalog."""
    cmd = [sys.executable, "-m", "curate.orchestration.cli", "run", "--output", str(output.resolve()),
           "--workspace", str(workspace.resolve()), "--cache-dir", "none", "--no-catalog", "--quiet"]
    for path in inputs:
        cmd += ["--input", str(path.resolve())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(cmd + beam_flags, capture_output=True, text=True, env=env, timeout=1800)


def pool_ids(run_dir: Path) -> dict[str, list[str]]:
    """Sorted document ids per pool folder (pools/pool=K) of a published run."""
    import pyarrow.parquet as pq

    out: dict[str, list[str]] = {}
    for folder in sorted((run_dir / "pools").glob("pool=*")):
        ids = []
        for part in sorted(folder.rglob("*.parquet")):
            ids += pq.read_table(part, columns=["id"]).column("id").to_pylist()
        out[folder.name] = sorted(ids)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, inputs = Path(argv[0]).resolve(), [Path(a).resolve() for a in argv[1:]]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    venv = worker_venv(build_sdist(out / "sdist"))
    t1 = time.monotonic()
    with portable_services(venv, out) as flags:
        t2 = time.monotonic()
        proc = curate_run(inputs, out / "portable-run", flags, out / "workspace")
    t3 = time.monotonic()
    print(proc.stdout.strip() or proc.stderr[-3000:])
    print(f"sdist + worker venv {t1 - t0:.1f} s; services up {t2 - t1:.1f} s; portable curate run {t3 - t2:.1f} s")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
