"""Scale benchmark (issue 16 item 5): `curate run` on 70k, 280k and ~1.1M documents.

Corpus: every file of ../shared/corpora (70,177 records), repeated N times; copy 0 is the
original, copy c >= 1 gets a new id (`ID~pC`) and a small deterministic perturbation (one
copy-specific word inserted at a position chosen by a hash of id and copy), so copies are
near- but never exact duplicates: exact dedup cannot remove them early and every copy is
signed, bucketed and verified by MinHash near dedup (long texts stay above the 0.8 Jaccard
threshold and are removed; short ones such as tweets fall below it and are kept).

Measured per run, one run at a time: wall seconds, CPU seconds of the process tree, and the
peak of the summed RSS and PSS of the whole process tree (the launcher and every Beam worker),
sampled every 0.25 s from /proc (PSS from smaps_rollup: shared pages counted once).
A run above --kill-gb of tree RSS is killed and recorded as such.

    .venv/bin/python benchmarks/bench_scale.py --scales 1 4 16 --label after
    .venv/bin/python benchmarks/bench_scale.py --scales 1 4 --label before \
        --pythonpath /tmp/curate-before-pkg          # an older checkout, same venv
    .venv/bin/python benchmarks/bench_scale.py --scales 1 4 --label datatrove \
        --datatrove-python /tmp/dt-venv/bin/python  # DataTrove 0.10.1 in a venv of its own
    .venv/bin/python benchmarks/bench_scale.py --render   # results/scale.json -> scale.md

Results accumulate in benchmarks/results/scale.json (a run with the same label and scale is
replaced) and are rendered to benchmarks/results/scale.md.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--label", default="after", help="name of this code version in the results")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/curate-scale"))
    p.add_argument("--pythonpath", default=None,
                   help="PYTHONPATH for `curate` (e.g. a folder whose curate/ links an older checkout)")
    p.add_argument("--kill-gb", type=float, default=14.0, help="kill a run above this tree RSS")
    p.add_argument("--timeout", type=float, default=1500.0, help="kill a run after this many seconds")
    p.add_argument("--curate-arg", action="append", default=[])
    p.add_argument("--datatrove-python", default=None,
                   help="run benchmarks/datatrove_equivalent.py with this interpreter (a venv with "
                        "datatrove[processing]==0.10.1, spacy, orjson; never the project's) instead of curate")
    p.add_argument("--render", action="store_true", help="only rewrite scale.md from scale.json")
    return p.parse_args(argv)


# ---------------------------------------------------------------- inputs

def perturb(text: str, doc_id: str, copy: int) -> str:
    """Copy `copy` of a text: one word `c<copy>q<k>` inserted at a position fixed by a hash."""
    digest = int.from_bytes(hashlib.blake2b(f"{doc_id}\0{copy}".encode(), digest_size=8).digest(), "big")
    words = text.split(" ")
    at = digest % (len(words) + 1)
    words.insert(at, f"c{copy}q{digest % 997}")
    return " ".join(words)


def prepare_inputs(work: Path, scale: int) -> tuple[Path, int]:
    """Folder of the shared corpora repeated `scale` times (perturbed copies); (folder, records)."""
    folder = work / "inputs" / f"x{scale}"
    done = folder / ".complete"
    if done.exists():
        return folder, int(done.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    total = 0
    for source in sorted((SHARED / "corpora").glob("*.jsonl.gz")):
        with gzip.open(source, "rt", encoding="utf-8") as fh:
            lines = [line for line in fh if line.strip()]
        with gzip.open(folder / source.name, "wt", encoding="utf-8", compresslevel=1) as out:
            for copy in range(scale):
                for n, line in enumerate(lines):
                    record = json.loads(line)
                    if copy:
                        base = str(record.get("id", n))
                        record["id"] = f"{base}~p{copy}"
                        if isinstance(record.get("text"), str):
                            record["text"] = perturb(record["text"], base, copy)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    total += 1
    done.write_text(str(total))
    return folder, total


# ---------------------------------------------------------------- measuring

def _tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def _sample(pids: list[int]) -> tuple[int, int, dict[int, float]]:
    """(RSS bytes, PSS bytes, {pid: CPU s}) summed over pids."""
    rss = pss = 0
    cpu = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
            fields = stat[stat.rindex(")") + 2:].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return rss, pss, cpu


def run_measured(cmd: list[str], env: dict, log: Path, kill_bytes: float, timeout: float) -> dict:
    peak = {"rss": 0, "pss": 0}
    cpu_of: dict[int, float] = {}
    killed = []
    timeline = []
    with open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, text=True,
                                start_new_session=True)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss, pss, cpu = _sample(_tree(proc.pid))
                peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
                for pid, s in cpu.items():
                    cpu_of[pid] = max(cpu_of.get(pid, 0.0), s)
                elapsed = time.perf_counter() - start
                if not timeline or elapsed - timeline[-1][0] >= 5:
                    timeline.append((round(elapsed, 1), round(rss / 2**20), round(pss / 2**20)))
                if (rss > kill_bytes or elapsed > timeout) and not killed:
                    killed.append(f"killed at {elapsed:.0f} s, tree RSS {rss / 2**30:.1f} GB")
                    os.killpg(proc.pid, 9)
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        sampler.join()
        wall = time.perf_counter() - start
    out = {"seconds": round(wall, 1),
           "cpu_seconds": round(max(sum(cpu_of.values()), usage.ru_utime + usage.ru_stime), 1),
           "peak_tree_rss_mb": round(max(peak["rss"] / 2**20, usage.ru_maxrss / 1024)),
           "peak_tree_pss_mb": round(peak["pss"] / 2**20),
           "timeline_s_rss_pss_mb": timeline}
    code = os.waitstatus_to_exitcode(status)
    if killed or code != 0:
        last = [l for l in log.read_text(errors="replace").splitlines() if l.strip()][-1:]
        out["error"] = killed[0] if killed else f"exit {code}: {last[0][:300] if last else ''}"
    else:
        out["stdout"] = stdout
    return out


def run_datatrove(inputs: Path, out: Path, args) -> dict:
    """DataTrove's MinHash dedup + Gopher/C4/FineWeb filters on the same files, curate's LSH
    settings (word bigrams, 16 bands x 6 rows), as many tasks and workers as curate's workers."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [args.datatrove_python, str(ROOT / "benchmarks" / "datatrove_equivalent.py"),
           "--input-dir", str(inputs), "--work-dir", str(out), "--tasks", str(args.workers),
           "--workers", str(args.workers), "--ngrams", "2", "--buckets", "16", "--hashes-per-bucket", "6"]
    result = run_measured(cmd, dict(os.environ), out.parent / f"{out.name}.stderr.txt",
                          args.kill_gb * 2**30, args.timeout)
    stdout = result.pop("stdout", None)
    if stdout:
        summary = json.loads(stdout.strip().splitlines()[-1])
        result["kept"] = summary["docs_out"]
        result["stage_seconds"] = summary["stage_seconds"]
    return result


def run_curate(inputs: Path, out: Path, args) -> dict:
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    env["CURATE_WORKSPACE"] = str(args.work_dir / "workspace")
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-c",
           "import sys; from curate.orchestration.cli import main; sys.exit(main())",
           "run", "--output", str(out), "--overwrite", "--force", "--json", "--no-catalog",
           "--cache-dir", "none"]
    for path in sorted(inputs.glob("*.jsonl.gz")):
        cmd += ["--input", str(path)]
    if args.workers > 1:
        cmd += [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]
    else:  # in-process: curate's own default is one worker process per CPU
        env["CURATE_LOCAL_WORKERS"] = "1"
    cmd += args.curate_arg
    log = out.parent / f"{out.name}.stderr.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = run_measured(cmd, env, log, args.kill_gb * 2**30, args.timeout)
    stdout = result.pop("stdout", None)
    if stdout:
        manifest = json.loads(stdout)
        counts = manifest.get("counts", manifest)
        result["kept"] = counts.get("kept")
        result["removed"] = counts.get("removed")
    return result


# ---------------------------------------------------------------- report

def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}


def render(data: dict) -> None:
    runs = data["runs"]
    lines = ["# Scale benchmark: `curate run` memory and time vs corpus size", "",
             "Generated by `benchmarks/bench_scale.py` (see its docstring for the corpus and the "
             "measurement). 2 CPUs shared with other jobs: compare rows of one window (same "
             "`started` hour); CPU seconds are steadier than wall seconds.", "",
             "| label | scale | input docs | kept | wall s | CPU s | docs per CPU s | peak tree RSS MB "
             "| peak tree PSS MB | started (UTC) | load 1-min | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in runs:
        per_cpu = f"{r['docs_in'] / r['cpu_seconds']:.0f}" if "error" not in r and r["cpu_seconds"] else ""
        lines.append(f"| {r['label']} | {r['scale']}x | {r['docs_in']:,} | {r.get('kept', '') or ''} "
                     f"| {r['seconds']} | {r['cpu_seconds']} | {per_cpu} | {r['peak_tree_rss_mb']} "
                     f"| {r['peak_tree_pss_mb']} | {r.get('started_utc', '')} | {r.get('load', '')} "
                     f"| {r.get('error', '')} |")
    lines += ["", "Growth exponents (peak PSS ~ docs^k, time ~ docs^k, between the smallest and the "
              "largest finished scale of each label):", ""]
    for label in sorted({r["label"] for r in runs}):
        done = sorted((r for r in runs if r["label"] == label and "error" not in r), key=lambda r: r["docs_in"])
        if len(done) >= 2:
            a, b = done[0], done[-1]
            n = math.log(b["docs_in"] / a["docs_in"])
            lines.append(f"- {label}: {a['scale']}x -> {b['scale']}x: peak PSS x{b['peak_tree_pss_mb'] / a['peak_tree_pss_mb']:.2f} "
                         f"(k = {math.log(b['peak_tree_pss_mb'] / a['peak_tree_pss_mb']) / n:.2f}), "
                         f"wall x{b['seconds'] / a['seconds']:.2f} (k = {math.log(b['seconds'] / a['seconds']) / n:.2f}), "
                         f"CPU x{b['cpu_seconds'] / a['cpu_seconds']:.2f} (k = {math.log(b['cpu_seconds'] / a['cpu_seconds']) / n:.2f})")
    notes = data.get("notes")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    data = load()
    if args.render:
        render(data)
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    for scale in args.scales:
        inputs, docs = prepare_inputs(args.work_dir, scale)
        out = args.work_dir / "runs" / f"{args.label}-x{scale}"
        load_avg = " ".join(f"{x:.1f}" for x in os.getloadavg())
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        print(f"{args.label} x{scale}: {docs:,} docs ...", flush=True)
        result = run_datatrove(inputs, out, args) if args.datatrove_python else run_curate(inputs, out, args)
        row = {"label": args.label, "scale": scale, "docs_in": docs, "workers": args.workers,
               "started_utc": started, "load": load_avg, "python": platform.python_version(), **result}
        print(json.dumps({k: v for k, v in row.items() if k != "timeline_s_rss_pss_mb"}), flush=True)
        data["runs"] = [r for r in data["runs"] if (r["label"], r["scale"]) != (args.label, scale)] + [row]
        data["runs"].sort(key=lambda r: (r["label"], r["scale"]))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
        render(data)
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
