"""Throughput and peak memory of `curate run` (CPU stages) next to HuggingFace
DataTrove doing the equivalent steps, on the same files in the same run.

Corpus: health tweets + news articles from ../shared/corpora (67,150 records),
and an N-times version where every record is repeated with a new id (known
exact duplicates). For each scale both tools run one after the other:

- curate:    `.venv/bin/curate run` (ingest, validate, normalise, exact dedup,
             MinHash near dedup, heuristic scores, pools, Parquet output);
- DataTrove: benchmarks/datatrove_equivalent.py in its own venv
             (MinHash dedup in 4 stages, then the Gopher repetition, Gopher
             quality, FineWeb and C4 filters on every surviving document,
             JSONL.gz output).

DataTrove is installed only into benchmarks/.venv-datatrove (created here on
first use, gitignored), never into the project's .venv.

Measured per run: wall time (docs/s = input records / wall seconds), peak
memory of the whole process tree (sum of RSS over all descendants, sampled
every 0.1 s from /proc) and the largest single process's peak RSS (ru_maxrss).
Results go to benchmarks/results/pipeline.md (and .json beside it).

    .venv/bin/python benchmarks/bench_pipeline.py                 # scales 1 and 4, 2 workers
    .venv/bin/python benchmarks/bench_pipeline.py --scales 1 --tools datatrove
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))
CORPORA = ("health_tweets.jsonl.gz", "news_articles.jsonl.gz")
DATATROVE_REQUIREMENTS = ("datatrove[processing]==0.10.1", "spacy", "orjson")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4],
                   help="corpus repetitions to run (default: 1 4)")
    p.add_argument("--tools", nargs="+", choices=("curate", "datatrove"),
                   default=["curate", "datatrove"])
    p.add_argument("--workers", type=int, default=2,
                   help="processes per tool: curate --direct_num_workers, DataTrove tasks/workers")
    p.add_argument("--work-dir", type=Path, default=BENCH / ".work")
    p.add_argument("--venv", type=Path, default=BENCH / ".venv-datatrove",
                   help="DataTrove's own venv (created if missing)")
    p.add_argument("--results", type=Path, default=BENCH / "results" / "pipeline.md")
    p.add_argument("--append", action="store_true",
                   help="keep the other runs already in the results file (same scale and tool: replaced)")
    p.add_argument("--rules-alone", type=int, metavar="N", default=0,
                   help="only time the scoring rules of both tools in-process on the first N "
                        "records of each file (CPU seconds), add to the results and re-render")
    p.add_argument("--render", action="store_true",
                   help="only rewrite the .md from the results .json (no runs)")
    p.add_argument("--curate-arg", action="append", default=[],
                   help="extra argument for `curate run` (repeatable)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- inputs

def prepare_inputs(work: Path, scale: int) -> Path:
    """A folder holding the two corpus files, each record repeated `scale` times (new ids)."""
    folder = work / "inputs" / f"x{scale}"
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in CORPORA:
        source = SHARED / "corpora" / name
        if not source.exists():
            sys.exit(f"bench_pipeline: {source} is absent (set CURATE_SHARED)")
        if scale == 1:
            os.symlink(source, folder / name)
            continue
        with gzip.open(source, "rt", encoding="utf-8") as fh:
            lines = fh.readlines()
        with gzip.open(folder / name, "wt", encoding="utf-8", compresslevel=1) as out:
            for copy in range(scale):
                for line in lines:
                    record = json.loads(line)
                    if copy:
                        record["id"] = f"{record['id']}~r{copy}"
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    done.touch()
    return folder


def count_records(folder: Path) -> int:
    total = 0
    for name in CORPORA:
        with gzip.open(folder / name, "rb") as fh:
            total += sum(1 for _ in fh)
    return total


# ---------------------------------------------------------------- measuring

class RunFailed(RuntimeError):
    """A measured command exited non-zero; the benchmark records it and goes on."""


def _tree_sample(root_pid: int) -> tuple[int, dict[int, float]]:
    """(summed RSS bytes, {pid: own CPU seconds}) over root_pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, float]] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
            with open(f"/proc/{entry}/statm", "rb") as fh:
                resident = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[1] = ppid; fields[11], fields[12] = utime, stime of the process itself
        children.setdefault(int(fields[1]), []).append(int(entry))
        info[int(entry)] = (resident * page, (int(fields[11]) + int(fields[12])) / tick)
    rss, cpu, stack = 0, {}, [root_pid]
    while stack:
        pid = stack.pop()
        if pid in info:
            rss += info[pid][0]
            cpu[pid] = info[pid][1]
        stack.extend(children.get(pid, ()))
    return rss, cpu


def run_measured(cmd: list[str], env: dict, log: Path) -> dict:
    """Run cmd: wall seconds, CPU seconds of the whole tree, peak tree RSS, largest process RSS.

    CPU seconds matter on a shared machine: wall time grows with other jobs'
    load, CPU time much less. Each process's own CPU time is sampled every
    0.1 s (a process that lives less than that between samples is missed);
    the root's rusage (which includes every child it reaped) is the floor.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = [0]
    cpu_of: dict[int, float] = {}
    with open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT, text=True)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                rss, cpu = _tree_sample(proc.pid)
                peak[0] = max(peak[0], rss)
                for pid, seconds in cpu.items():
                    cpu_of[pid] = max(cpu_of.get(pid, 0.0), seconds)
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout = proc.stdout.read()
        stop.set()
        sampler.join()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = [l for l in log.read_text(errors="replace").splitlines() if l.strip()][-1:]
        raise RunFailed(f"exited {code} after {wall:.0f} s: {last[0][:300] if last else ''} (log: {log})")
    cpu_seconds = max(sum(cpu_of.values()), usage.ru_utime + usage.ru_stime)
    # A 0.1 s sample can miss a short spike; the largest process's own peak is a floor.
    peak_mb = max(peak[0] / 2**20, usage.ru_maxrss / 1024)
    return {"seconds": wall, "cpu_seconds": cpu_seconds, "peak_tree_rss_mb": peak_mb,
            "max_process_rss_mb": usage.ru_maxrss / 1024, "stdout": stdout}


# ---------------------------------------------------------------- the two tools

def ensure_datatrove_venv(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(DATATROVE_REQUIREMENTS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_REQUIREMENTS], check=True)
    version = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('datatrove'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    return version


def curate_lsh() -> tuple[int, int, int]:
    """curate's default shingle size and (bands, rows), so DataTrove hashes alike."""
    sys.path.insert(0, str(ROOT))
    from curate.orchestration.config import DEFAULTS
    from curate.scorers.minhash import lsh_params

    near = DEFAULTS["near_dedup"]
    bands, rows = near["bands"], near["rows"]
    if bands is None:
        bands, rows = lsh_params(near["threshold"], near["num_perm"])
    return near["shingle_size"], bands, rows


def run_curate(inputs: Path, out: Path, workers: int, extra: list[str], env: dict) -> dict:
    cmd = [str(ROOT / ".venv" / "bin" / "curate"), "run", "--output", str(out), "--overwrite", "--json"]
    for name in CORPORA:
        cmd += ["--input", str(inputs / name)]
    if workers > 1:
        cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    cmd += extra
    result = run_measured(cmd, env, out.parent / f"{out.name}.stderr.txt")
    manifest = json.loads(result.pop("stdout"))
    counts = manifest.get("counts", manifest)
    result["docs_out"] = counts.get("kept")
    result["detail"] = {"removed": counts.get("removed"), "dead_letter": counts.get("dead_letter")}
    return result


def run_datatrove(python: str, inputs: Path, work: Path, workers: int,
                  lsh: tuple[int, int, int], env: dict) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ngrams, bands, rows = lsh
    cmd = [python, str(BENCH / "datatrove_equivalent.py"), "--input-dir", str(inputs),
           "--work-dir", str(work), "--tasks", str(workers), "--workers", str(workers),
           "--ngrams", str(ngrams), "--buckets", str(bands), "--hashes-per-bucket", str(rows)]
    result = run_measured(cmd, env, work / "stderr.txt")
    summary = json.loads(result.pop("stdout").strip().splitlines()[-1])
    result["docs_out"] = summary["docs_out"]
    result["detail"] = {"stage_seconds": summary["stage_seconds"],
                        "step_seconds": _datatrove_step_seconds(work / "logs")}
    return result


def _datatrove_step_seconds(logs: Path) -> dict:
    """Time DataTrove's own stats attribute to each pipeline step, summed over tasks."""
    out = {}
    for stage in ("sigs", "final"):
        try:
            steps = json.loads((logs / stage / "stats.json").read_text())
        except (OSError, ValueError):
            continue
        for step in steps:
            total = (step.get("time_stats") or {}).get("total")
            if total is not None:
                name = "".join(ch for ch in step.get("name", "?") if ch.isascii()).strip(" -:")
                out[f"{stage}: {name}"] = round(total, 1)
    return out


def scorer_alone(inputs: Path, limit: int | None = None) -> dict:
    """docs/s of scorers.heuristics.HeuristicScorer alone, in this process (one core)."""
    sys.path.insert(0, str(ROOT))
    from curate.scorers.heuristics import HeuristicScorer

    scorer = HeuristicScorer()
    out = {}
    for name in CORPORA:
        with gzip.open(inputs / name, "rt", encoding="utf-8") as fh:
            lines = fh if limit is None else (line for line, _ in zip(fh, range(limit)))
            texts = [t for t in (json.loads(line).get("text") for line in lines) if isinstance(t, str) and t]
        start = time.process_time()
        for text in texts:
            scorer.score(text)
        seconds = time.process_time() - start
        out[name] = {"docs": len(texts), "cpu_seconds": round(seconds, 2),
                     "docs_per_cpu_s": round(len(texts) / seconds)}
    return out


# ---------------------------------------------------------------- verdict agreement

FILTER_OF_FAMILY = {"gopher_quality": "dt_GopherQualityFilter",
                    "gopher_repetition": "dt_GopherRepetitionFilter",
                    "c4": "dt_C4QualityFilter", "fineweb": "dt_FineWebQualityFilter"}


def verdict_agreement(inputs: Path, datatrove_output: Path) -> dict:
    """Per rule family: how often curate's heuristics and DataTrove's filters agree.

    Compares pass/fail on every document DataTrove wrote (its filters ran on all
    of them), scoring the original text with scorers.heuristics, once with the
    defaults and once with long lines judged whole (``long_line_chars=0``, as
    C4 and FineWeb do), which isolates that deliberate difference.
    """
    sys.path.insert(0, str(ROOT))
    from curate.scorers.heuristics import HeuristicScorer

    verdicts = {}
    for path in sorted(datatrove_output.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                verdicts[row["id"]] = row["metadata"]
    scorer = HeuristicScorer()
    whole_lines = HeuristicScorer({"params": {"long_line_chars": 0}})
    table = {f: {"both_pass": 0, "both_fail": 0, "only_curate_passes": 0, "only_datatrove_passes": 0,
                 "agree_whole_lines": 0}
             for f in FILTER_OF_FAMILY}
    for name in CORPORA:
        with gzip.open(inputs / name, "rt", encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                meta = verdicts.pop(record.get("id"), None)
                if meta is None or not record.get("text"):
                    continue
                passed = scorer.score(record["text"]).passed
                passed_whole = whole_lines.score(record["text"]).passed
                for family, key in FILTER_OF_FAMILY.items():
                    ours, theirs = passed[family], meta.get(key) == "pass"
                    cell = ("both_pass" if theirs else "only_curate_passes") if ours else (
                        "only_datatrove_passes" if theirs else "both_fail")
                    table[family][cell] += 1
                    table[family]["agree_whole_lines"] += passed_whole[family] == theirs
    for counts in table.values():
        n = max(1, counts["both_pass"] + counts["both_fail"] + counts["only_curate_passes"]
                + counts["only_datatrove_passes"])
        counts["agreement"] = round((counts["both_pass"] + counts["both_fail"]) / n, 4)
        counts["agreement_whole_lines"] = round(counts.pop("agree_whole_lines") / n, 4)
    return table


# ---------------------------------------------------------------- report

def write_report(path: Path, rows: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for r in rows:  # results written before the sampled peak was floored at the largest process
        if "error" not in r:
            r["peak_tree_rss_mb"] = max(r["peak_tree_rss_mb"], r["max_process_rss_mb"])
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    lines = [
        "# Pipeline benchmark: `curate run` vs DataTrove",
        "",
        f"Generated by `benchmarks/bench_pipeline.py` on {meta.get('date', '?')} "
        f"({meta.get('cpus', '?')} CPUs, "
        f"Python {meta.get('python', '?')}, DataTrove {meta.get('datatrove', '?')}). "
        f"Load average before / after: {meta.get('load_before', '?')} / {meta.get('load_after', '?')}"
        + (f"; rows not rerun come from the run of {meta['earlier_runs']}." if meta.get("earlier_runs") else "."),
        "",
        "| scale | workers | tool | input docs | output docs | wall s | docs/s | CPU s | docs per CPU s | peak tree RSS MB | largest process RSS MB | started (UTC) | 1-min load start / end |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    failed = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    for r in rows:
        lines.append(f"| {r['scale']}x | {r.get('workers', 1)} | {r['tool']} | {r['docs_in']:,} | {r['docs_out'] if r['docs_out'] is None else format(r['docs_out'], ',')} "
                     f"| {r['seconds']:.1f} | {r['docs_per_s']:.0f} | {r['cpu_seconds']:.0f} "
                     f"| {r['docs_per_cpu_s']:.0f} | {r['peak_tree_rss_mb']:.0f} "
                     f"| {r['max_process_rss_mb']:.0f} | {r.get('started_utc', '?')} "
                     f"| {r.get('load_at_start', '?')} / {r.get('load_after', '?')} |")
    lines += ["", "| scale | workers | curate / DataTrove, docs/s (wall) | curate / DataTrove, docs per CPU s | curate / DataTrove, peak tree RSS |",
              "|---:|---:|---:|---:|---:|"]
    for scale, workers in sorted({(r["scale"], r.get("workers", 1)) for r in rows}):
        by_tool = {r["tool"]: r for r in rows if (r["scale"], r.get("workers", 1)) == (scale, workers)}
        if len(by_tool) == 2:
            c, d = by_tool["curate"], by_tool["datatrove"]
            lines.append(f"| {scale}x | {workers} | {c['docs_per_s'] / d['docs_per_s']:.2f} "
                         f"| {c['docs_per_cpu_s'] / d['docs_per_cpu_s']:.2f} "
                         f"| {c['peak_tree_rss_mb'] / d['peak_tree_rss_mb']:.2f} |")
    lines += ["", "Per-run details (curate: dedup and dead-letter counts; DataTrove: wall seconds per "
              "executor stage and the seconds its stats attribute to each step, summed over tasks):", ""]
    for r in rows:
        detail = dict(r["detail"])
        if "step_seconds" in detail:  # older results kept DataTrove's emoji step names
            detail["step_seconds"] = {"".join(ch for ch in k if ch.isascii()).replace("  ", " "): v
                                      for k, v in detail["step_seconds"].items()}
        lines.append(f"- {r['scale']}x, {r.get('workers', 1)} worker(s), {r['tool']}: `{json.dumps(detail)}`")
    if meta.get("scorer_alone"):
        lines += ["", "`scorers.heuristics.HeuristicScorer` alone (all four rule families, one core, "
                  "CPU seconds, 1x corpus):", ""]
        for name, c in meta["scorer_alone"].items():
            lines.append(f"- {name}: {c['docs']:,} docs in {c['cpu_seconds']} s = {c['docs_per_cpu_s']:,} docs/s")
    if meta.get("rules_alone"):
        ra = meta["rules_alone"]
        lines += ["", f"The scoring rules alone, in one process, same records (first {ra['limit']:,} of each file), "
                  "CPU seconds (DataTrove: its 4 filters, spaCy loaded before timing):", "",
                  "| file | docs | curate heuristics docs per CPU s | DataTrove filters docs per CPU s | ratio |",
                  "|---|---:|---:|---:|---:|"]
        for name, c in ra["curate"].items():
            d = ra["datatrove"].get(name)
            if d:
                lines.append(f"| {name} | {c['docs']:,} | {c['docs_per_cpu_s']:,} | {d['docs_per_cpu_s']:,} "
                             f"| {c['docs_per_cpu_s'] / d['docs_per_cpu_s']:.1f} |")
    if meta.get("agreement"):
        lines += ["", "Pass/fail agreement per rule family between `scorers.heuristics` and DataTrove's "
                  f"filters on the documents DataTrove kept ({meta.get('agreement_scale', 1)}x input):", "",
                  "| family | agreement | both pass | both fail | only curate passes | only DataTrove passes "
                  "| agreement, long lines judged whole |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for family, c in meta["agreement"].items():
            whole = c.get("agreement_whole_lines")
            lines.append(f"| {family} | {c['agreement']:.3f} | {c['both_pass']:,} | {c['both_fail']:,} "
                         f"| {c['only_curate_passes']:,} | {c['only_datatrove_passes']:,} "
                         f"| {'' if whole is None else format(whole, '.3f')} |")
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['scale']}x, {r.get('workers', 1)} worker(s), {r['tool']}: {r['error']}" for r in failed]
    if meta.get("notes"):  # findings written into the results JSON by whoever ran the benchmark
        lines += ["", "Findings:", ""] + [f"- {note}" for note in meta["notes"]]
    lines += ["", "How to read this:", "",
              "- docs/s is input records over wall seconds of the whole command, start-up included.",
              "- The tools ran one after the other, never at the same time, but the machine may be "
              "shared: the load column shows how busy it was. Compare tools within one scale.",
              "- Peak tree RSS sums every process of the run (DataTrove and Beam start workers); "
              "the largest process is the single biggest one.",
              "- Verdicts differ where the implementations differ on purpose; see the docstrings of "
              "scorers/heuristics/gopher.py, c4.py and fineweb.py (e.g. DataTrove counts a top "
              "n-gram that occurs once, so it fails most tweets on top_n_gram)."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rules_alone:
        filters_alone(args, args.rules_alone)
        args.render = True
    if args.render:
        saved = json.loads(args.results.with_suffix(".json").read_text())
        write_report(args.results, saved["runs"], saved["meta"])
        print(f"wrote {args.results}")
        return 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "workers": args.workers, "python": platform.python_version(),
            "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()), "datatrove": "not run"}
    python = None
    if "datatrove" in args.tools:
        meta["datatrove"] = ensure_datatrove_venv(args.venv)
        python = str(args.venv / "bin" / "python")
    lsh = curate_lsh()
    if "curate" in args.tools:
        print("timing scorers.heuristics alone ...", flush=True)
        meta["scorer_alone"] = scorer_alone(prepare_inputs(args.work_dir, 1))
    earlier = load_earlier(args)
    rows = []
    for scale in args.scales:
        inputs = prepare_inputs(args.work_dir, scale)
        docs_in = count_records(inputs)
        for tool in args.tools:
            print(f"{scale}x {tool}: {docs_in:,} records ...", flush=True)
            load = os.getloadavg()[0]
            started = time.strftime("%H:%M", time.gmtime())
            try:
                if tool == "curate":
                    r = run_curate(inputs, args.work_dir / f"curate-x{scale}", args.workers,
                                   args.curate_arg, env)
                else:
                    r = run_datatrove(python, inputs, args.work_dir / f"datatrove-x{scale}",
                                      args.workers, lsh, env)
            except RunFailed as exc:
                print(f"   FAILED: {exc}", flush=True)
                rows.append({"scale": scale, "tool": tool, "workers": args.workers, "docs_in": docs_in,
                             "error": str(exc)})
                continue
            r.update(scale=scale, tool=tool, workers=args.workers, docs_in=docs_in,
                     docs_per_s=docs_in / r["seconds"],
                     docs_per_cpu_s=docs_in / r["cpu_seconds"],
                     load_at_start=round(load, 1), started_utc=started,
                     load_after=round(os.getloadavg()[0], 1))
            print(f"   {r['seconds']:.1f} s, {r['docs_per_s']:.0f} docs/s, {r['cpu_seconds']:.0f} CPU s, "
                  f"peak tree RSS {r['peak_tree_rss_mb']:.0f} MB", flush=True)
            rows.append(r)
            if tool == "datatrove" and scale == args.scales[0]:
                print("comparing pass/fail verdicts with DataTrove ...", flush=True)
                meta["agreement"] = verdict_agreement(inputs, args.work_dir / f"datatrove-x{scale}" / "output")
                meta["agreement_scale"] = scale
            report(args, rows, meta, earlier)  # after every run: a cut-short benchmark still leaves its figures
    print(f"wrote {args.results}")
    return 0


def filters_alone(args, limit: int) -> None:
    """CPU time of the scoring rules alone, both tools, same records: into the results JSON."""
    inputs = prepare_inputs(args.work_dir, 1)
    python = args.venv / "bin" / "python"
    ensure_datatrove_venv(args.venv)
    out = subprocess.run([str(python), str(BENCH / "datatrove_equivalent.py"), "--input-dir", str(inputs),
                          "--work-dir", str(args.work_dir / "filters-only"), "--time-filters", str(limit)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    ours = scorer_alone(inputs, limit)
    path = args.results.with_suffix(".json")
    saved = json.loads(path.read_text()) if path.exists() else {"meta": {}, "runs": []}
    saved["meta"]["rules_alone"] = {"limit": limit, "curate": ours, "datatrove": theirs}
    dt_out = args.work_dir / "datatrove-x1" / "output"
    if dt_out.is_dir():
        saved["meta"]["agreement"] = verdict_agreement(inputs, dt_out)
        saved["meta"]["agreement_scale"] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")


def _run_key(r: dict) -> tuple:
    return r["scale"], r.get("workers", 1), r["tool"]


def load_earlier(args) -> tuple[list[dict], dict]:
    """Runs and meta already in the results file, when --append (else nothing)."""
    previous = args.results.with_suffix(".json")
    if not (args.append and previous.exists()):
        return [], {}
    old = json.loads(previous.read_text())
    return old["runs"], old["meta"]


def report(args, rows: list[dict], meta: dict, earlier: tuple[list[dict], dict]) -> None:
    """Write the results files; runs from an earlier invocation stay unless rerun."""
    meta = {**meta, "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    old_rows, old_meta = earlier
    if old_rows:
        fresh = {_run_key(r) for r in rows}
        rows = [r for r in old_rows if _run_key(r) not in fresh] + rows
        rows.sort(key=_run_key)
        for key in ("agreement", "agreement_scale", "scorer_alone", "rules_alone", "notes"):
            if key not in meta and key in old_meta:
                meta[key] = old_meta[key]
        meta["earlier_runs"] = old_meta.get("date")
    write_report(args.results, rows, meta)


if __name__ == "__main__":
    raise SystemExit(main())
