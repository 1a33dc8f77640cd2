"""The run-directory contract: the layout `curate run` publishes, and the one reader of it.

Layout of a published run (writer: `pipelines/publish.py`, through Beam filesystems)::

    RUN/pools/pool=K/*.parquet   kept documents, hive-partitioned by pool (0 = best)
    RUN/embeddings/              id, embedding (when documents were embedded)
    RUN/dedup/                   removed_id, kept_id, method, similarity
    RUN/filtered/                documents dropped by a keep/drop rule, with the reason
    RUN/dead_letter/             source, line, reason, raw
    RUN/stats.parquet            one row per pool
    RUN/_SUCCESS                 {"manifest_sha256": ..., "fingerprint": ...}
    RUN/manifest.json            config, versions, inputs, counts that reconcile

Publish order (`PUBLISH_ORDER`, the guarantee readers rely on): `_PUBLISHING` first (so a killed
publish is recognisably curate's), the data folders, then stats.parquet, then `_SUCCESS`, then
manifest.json, and `_PUBLISHING` removed last. A directory is a finished run only when
`_SUCCESS` parses and names the SHA-256 of the manifest.json beside it: a killed publish, a
leftover marker or a hand-edited manifest never counts.

Replacing a published run on a local filesystem (`--force`, `--overwrite`) does not go through
that order in place: the new run is completed in its staging folder, moved out beside RUN as
`.RUN._curate-swap-<id>` (`swap_sibling`) and the two directories are exchanged in one rename, so
RUN holds the old complete run or the new one at every instant (`pipelines/publish.py`).

A run is also checked for being whole, not only finished: `manifest_problem` (the manifest's
types: `counts: [1, 2]` is not a curate manifest) and `file_problem` (each data file opens;
`deep` decodes it) say what is wrong with one line naming the key or the file; the catalog
quarantines such a run instead of failing every query.

`RunDir(path)` is the reader every command uses (catalog, stats, report, diff, plan, probe): it
refuses an unfinished run with one message, and gives the manifest, the stats rows, the data
files by kind and SQL selects over them (with typed empty results where a run has no such file).
Plain Python; duckdb is imported when a query runs. Local paths only (remote runs are published
through Beam's filesystems by the writer, and read after copying).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

POOLS = "pools"
EMBEDDINGS = "embeddings"
DEDUP = "dedup"
FILTERED = "filtered"
DEAD_LETTER = "dead_letter"
STATS = "stats.parquet"
SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
STAGING_PREFIX = "_staging-"
# Written into RUN before a publish touches it and removed after the manifest is in: leftovers
# next to it are a killed publish of curate's own, which the next run may remove. Without it
# (or a valid _SUCCESS) the names below in RUN belong to someone else and are never deleted.
PUBLISHING = "_PUBLISHING"
# Written into the staging folder for the launcher (read into the manifest), never published.
CUTS = "_pool_cuts.json"
STAGE_INFO = "_stage_info.json"
PROGRESS = "_progress"
# `curate run`'s exclusive lock on RUN (orchestration/run_lock.py); kept across a swap (publish.py).
LOCK = "_curate.lock"
# A replacing publish's sibling of RUN: `.NAME._curate-swap-<12 hex>` in RUN's parent folder.
SWAP_INFIX = "._curate-swap-"
DATA_DIRS = (POOLS, DEDUP, FILTERED, DEAD_LETTER, EMBEDDINGS)
# Order of appearance when publishing (the _SUCCESS marker goes in just before the manifest);
# reversed when unpublishing.
PUBLISH_ORDER = DATA_DIRS + (STATS, MANIFEST)
# Every name curate itself creates inside RUN (or a staging or swap folder of it): the only
# entries curate ever deletes there; anything else in RUN belongs to someone else.
OWN_NAMES = PUBLISH_ORDER + (SUCCESS, PUBLISHING, LOCK, CUTS, STAGE_INFO, PROGRESS)
DATA_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")

# Columns of each kind of data file, typed, for selects over a run that has none of them.
EMPTY_COLUMNS = {
    "docs": "NULL::VARCHAR AS id, NULL::VARCHAR AS text, NULL::VARCHAR AS source, NULL::DOUBLE AS score, "
            "NULL::BIGINT AS chars, NULL::BIGINT AS tokens, NULL::BIGINT AS pool",
    "pool_stats": "NULL::BIGINT AS pool, NULL::BIGINT AS docs, NULL::BIGINT AS chars, NULL::BIGINT AS tokens, "
                  "NULL::DOUBLE AS score_min, NULL::DOUBLE AS score_mean, NULL::DOUBLE AS score_max, "
                  "NULL::VARCHAR AS source_share",
    "duplicates": "NULL::VARCHAR AS removed_id, NULL::VARCHAR AS kept_id, NULL::VARCHAR AS method, "
                  "NULL::DOUBLE AS similarity",
    "dead_letter": "NULL::VARCHAR AS source, NULL::BIGINT AS line, NULL::VARCHAR AS reason, NULL::VARCHAR AS raw",
    "filtered": "NULL::VARCHAR AS id, NULL::VARCHAR AS source, NULL::VARCHAR AS reason, NULL::DOUBLE AS score",
    "embeddings": "NULL::VARCHAR AS id, NULL::FLOAT[] AS embedding",
}
VIEWS = tuple(EMPTY_COLUMNS)


class RunDirError(ValueError):
    """Not a finished run directory (missing, unfinished, unreadable): one line for the user."""


def manifest_digest(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a local file's content, read in 1 MiB blocks (files a manifest lists)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def marker_bytes(manifest_bytes: bytes, fingerprint: str) -> bytes:
    """The contents of `_SUCCESS` for a run whose manifest.json holds `manifest_bytes`."""
    marker = {"manifest_sha256": manifest_digest(manifest_bytes), "fingerprint": fingerprint}
    return json.dumps(marker, sort_keys=True).encode("utf-8")


def parse_marker(marker: bytes, manifest: bytes) -> dict | None:
    """The marker as a dict when it is valid for this manifest, else None."""
    try:
        data = json.loads(marker)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("manifest_sha256") != manifest_digest(manifest):
        return None
    return data


def swap_sibling(run_dir: str | os.PathLike, token: str) -> Path:
    """The folder beside RUN that a replacing publish swaps with RUN (see pipelines/publish.py)."""
    root = Path(os.path.realpath(run_dir))
    return root.parent / f".{root.name}{SWAP_INFIX}{token}"


def swap_siblings(run_dir: str | os.PathLike) -> list[Path]:
    """Swap folders of RUN left by an interrupted replacing publish (sorted)."""
    root = Path(os.path.realpath(run_dir))
    prefix = f".{root.name}{SWAP_INFIX}"
    try:
        names = os.listdir(root.parent)
    except OSError:
        return []
    return sorted(root.parent / n for n in names
                  if n.startswith(prefix) and len(n) == len(prefix) + 12 and (root.parent / n).is_dir())


# ---------------------------------------------------------------------- is the run whole?
def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# Top-level manifest keys and the JSON types they must have where present (counts is required).
_MANIFEST_TYPES = {
    "format": (str,), "run_id": (str, type(None)), "status": (str,), "created_utc": (str,),
    "config": (dict,), "versions": (dict,), "pipeline_options": (dict,), "inputs": (list,),
    "fingerprint": (dict, str, type(None)), "reconciliation": (dict,), "written_rows": (dict,),
    "pools": (dict, list), "near_dedup": (dict,), "embeddings": (dict, type(None)),
    "semantic_dedup": (dict, type(None)), "embedding_scores": (dict, type(None)),
}


def manifest_problem(manifest) -> str | None:
    """Why `manifest` is not a curate run manifest (one line naming the key), or None.

    Checks the types of what readers use, not only presence: `counts` is an object whose values
    are counts (non-negative integers) or objects of counts (per reason), `inputs` a list of
    objects, and the other known sections have their documented types.
    """
    if not isinstance(manifest, dict):
        return f"the manifest is {_type_name(manifest)}, not an object"
    if "counts" not in manifest:
        return "it has no counts"
    counts = manifest["counts"]
    if not isinstance(counts, dict):
        return f"counts is {_type_name(counts)}, not an object of counts"
    for key, value in counts.items():
        if isinstance(value, dict):
            bad = next((k for k, v in value.items() if not _is_count(v)), None)
            if bad is not None:
                return f"counts.{key}.{bad} is {value[bad]!r}, not a count"
        elif not _is_count(value):
            return f"counts.{key} is {value!r}, not a count or an object of counts"
    for key, types in _MANIFEST_TYPES.items():
        if key in manifest and not isinstance(manifest[key], types):
            wanted = " or ".join(_type_name(t()) if t is not type(None) else "null" for t in types)
            return f"{key} is {_type_name(manifest[key])}, not {wanted}"
    if any(not isinstance(entry, dict) for entry in manifest.get("inputs", [])):
        return "inputs holds an entry that is not an object"
    return None


_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


def file_problem(path: str | os.PathLike, *, deep: bool = False) -> str | None:
    """Why a run's data file cannot be read (one line), or None.

    Quick (every catalog query): the file is there, a Parquet file's footer parses, a gzip file
    starts like one. `deep` (`curate runs --check`) also decodes every row, which finds damage
    inside the data pages that only shows when a query reaches it.
    """
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return exc.strerror or "cannot be read"
    try:
        if path.endswith(".parquet"):
            with open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(max(0, size - 4))
                tail = fh.read(4)
            if size < 12 or head != _PARQUET_MAGIC or tail != _PARQUET_MAGIC:
                return "not a Parquet file (truncated or overwritten)"
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            if deep:
                for _ in parquet.iter_batches(batch_size=4096):
                    pass
        elif path.endswith(".gz"):
            with open(path, "rb") as fh:
                if fh.read(2) != _GZIP_MAGIC:
                    return "not a gzip file"
            if deep:
                _read_json_lines(path)
        elif deep:
            _read_json_lines(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/gzip/json raise many types on damaged bytes
        text = str(exc).strip().splitlines()
        return f"unreadable: {text[0] if text else type(exc).__name__}"
    return None


def _read_json_lines(path: str) -> int:
    """Rows of a JSON-lines file (each a JSON object), else ValueError naming the line."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    rows = 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows += 1
    return rows


def _rows(path: str) -> int:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return _read_json_lines(path)


def sql_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    return "[" + ", ".join(sql_literal(v) for v in values) + "]"


def select_files(files: list[str], columns: str = "*", *, hive: bool = False) -> list[str]:
    """SELECTs reading `files` (Parquet and JSON lines), one per format; [] for no files."""
    parquet = [f for f in files if f.endswith(".parquet")]
    other = [f for f in files if not f.endswith(".parquet")]
    out = []
    if parquet:
        out.append(f"SELECT {columns} FROM read_parquet({sql_list(parquet)}, "
                   f"hive_partitioning={'true' if hive else 'false'}, union_by_name=true)")
    if other:
        out.append(f"SELECT {columns} FROM read_json({sql_list(other)}, format='newline_delimited', "
                   "union_by_name=true, sample_size=-1, maximum_object_size=268435456)")
    return out


def union(selects: list[str], empty: str) -> str:
    """One query over `selects`, or `SELECT <empty> WHERE false` when there are none."""
    return " UNION ALL BY NAME ".join(f"({s})" for s in selects) if selects else f"SELECT {empty} WHERE false"


@dataclass(frozen=True)
class RunFiles:
    """The data files of one run directory, grouped by the view they feed."""

    run_dir: Path
    pools: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dead_letter: list[str] = field(default_factory=list)
    filtered: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, run_dir: str | os.PathLike) -> "RunFiles":
        root = Path(run_dir).resolve()
        return cls(
            run_dir=root,
            pools=_data_files(root / POOLS, pattern="pool=*/**/*"),
            stats=[str(root / STATS)] if (root / STATS).is_file() else [],
            duplicates=_data_files(root / DEDUP),
            dead_letter=_data_files(root / DEAD_LETTER),
            filtered=_data_files(root / FILTERED),
            embeddings=_data_files(root / EMBEDDINGS),
        )

    def for_view(self, view: str) -> list[str]:
        return {"docs": self.pools, "pool_stats": self.stats, "duplicates": self.duplicates,
                "dead_letter": self.dead_letter, "filtered": self.filtered,
                "embeddings": self.embeddings}[view]

    def all_files(self) -> list[str]:
        return self.pools + self.stats + self.duplicates + self.dead_letter + self.filtered + self.embeddings


def _data_files(directory: Path, pattern: str = "**/*") -> list[str]:
    """Non-empty data files under a directory; hidden/underscore files (temp, markers) are skipped."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(pattern):
        rel = path.relative_to(directory).parts
        if any(part.startswith((".", "_")) for part in rel):
            continue
        if path.is_file() and path.name.endswith(DATA_SUFFIXES) and path.stat().st_size > 0:
            found.append(str(path))
    return sorted(found)


def read_json_object(path: Path, error: type[ValueError] = RunDirError) -> dict:
    """A JSON file holding an object, or `error` with a one-line reason."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object")
    return data


def published_marker(run_dir: str | os.PathLike) -> dict | None:
    """The valid `_SUCCESS` marker of a local run directory, or None (see the module docstring)."""
    root = Path(run_dir)
    try:
        return parse_marker((root / SUCCESS).read_bytes(), (root / MANIFEST).read_bytes())
    except OSError:
        return None


class RunDir:
    """A finished `curate run` output directory, read-only.

    ``RunDir(path)`` raises RunDirError unless `path` holds a published run (valid `_SUCCESS`
    beside manifest.json), so an unfinished run is refused the same way by every reader.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.root = self.path.expanduser().resolve()
        if not self.root.is_dir():
            raise RunDirError(f"run directory {path} does not exist")
        if not (self.root / MANIFEST).is_file():
            leftovers = [n for n in PUBLISH_ORDER + (SUCCESS,) if (self.root / n).exists()]
            why = ": the run did not finish; re-run it" if leftovers else ""
            raise RunDirError(f"{path} is not a curate run directory: no manifest.json{why}")
        marker = published_marker(self.root)
        if marker is None:
            raise RunDirError(f"{path} is not a finished curate run: its {SUCCESS} marker is missing or does "
                              f"not match manifest.json (the run did not finish or was edited); re-run it")
        self.marker = marker
        problem = manifest_problem(self.manifest)
        if problem:
            raise RunDirError(f"{path}/{MANIFEST} is not a curate run manifest: {problem}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @cached_property
    def manifest(self) -> dict:
        return read_json_object(self.root / MANIFEST)

    @cached_property
    def files(self) -> RunFiles:
        return RunFiles.scan(self.root)

    def problem(self, *, deep: bool = False) -> str | None:
        """Why the run is not whole, naming the file (one line), or None.

        Quick: every data file opens (`file_problem`). `deep`: every row decodes, and the rows in
        pools/, dedup/, filtered/ and dead_letter/ are the counts the manifest states (a part
        file deleted or replaced after publishing shows here).
        """
        for path in self.files.all_files():
            why = file_problem(path, deep=deep)
            if why:
                return f"{path}: {why}"
        if not deep:
            return None
        counts = self.manifest["counts"]
        expected = {"pools": counts["kept"] if _is_count(counts.get("kept")) else None}
        for kind, key in (("duplicates", "removed"), ("filtered", "filtered"), ("dead_letter", "dead_letter")):
            if isinstance(counts.get(key), dict):
                expected[kind] = sum(counts[key].values())
        for kind, want in expected.items():
            if want is None:
                continue
            files = self.files.pools if kind == "pools" else self.files.for_view(kind)
            found = sum(_rows(f) for f in files)
            if found != want:
                where = self.root / (POOLS if kind == "pools" else {"duplicates": DEDUP}.get(kind, kind))
                return f"{where}: holds {found} rows, the manifest counts {want}"
        return None

    def select(self, view: str, columns: str = "*") -> str:
        """SQL reading one kind of the run's data files (`VIEWS`), typed and empty if it has none."""
        if view not in EMPTY_COLUMNS:
            raise ValueError(f"unknown run view {view!r}; known: {', '.join(VIEWS)}")
        selects = select_files(self.files.for_view(view), columns, hive=view == "docs")
        if selects:
            return union(selects, "")
        return f"SELECT {columns} FROM (SELECT {EMPTY_COLUMNS[view]}) WHERE false"

    def stats(self) -> list[dict]:
        """The per-pool rows of stats.parquet, ordered by pool."""
        if not self.files.stats:
            raise RunDirError(f"{self.path} has no {STATS}: is it a finished `curate run` output?")
        import duckdb

        con = duckdb.connect()
        try:
            rel = con.execute(f"SELECT * FROM read_parquet({sql_list(self.files.stats)}) ORDER BY pool")
            cols = [d[0] for d in rel.description]
            return [dict(zip(cols, row)) for row in rel.fetchall()]
        finally:
            con.close()

