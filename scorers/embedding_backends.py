"""Optional fast CPU backends for ``Embedder`` (opt-in: ``Embedder(backend="openvino-int8")``).

``openvino-int8``: the sentence-transformers model's BERT encoder converted to OpenVINO and
statically quantised to int8 with NNCF (activations and weights int8, SmoothQuant alpha 0.7,
calibrated on a fixed built-in set of English texts, so the build is deterministic and needs
no data or network).  Runs the int8 matrix products on AVX512-VNNI / AMX.  Mean pooling and
L2 normalisation are done here in numpy, exactly as the model's Pooling/Normalize modules do.

Measured on the project's 2-core AVX512-VNNI CPU (benchmarks/results/embed_semdedup.md):
~3x plain ``SentenceTransformer.encode`` in fp32 (~100-130 docs/s at ~156 tokens), per-document
cosine to the fp32 reference >= 0.99 (min 0.993 on news paragraphs, in "truncate" and
"sentences" modes).

The int8 model is built on first use (~30-60 s: torch -> OpenVINO conversion + calibration) into
``$CURATE_CACHE/openvino/<key>/`` (default ``~/.cache/curate``), where the key hashes the model
files, this recipe, the calibration texts and the openvino/nncf versions; later processes load
it in ~1 s.  Needs the packages ``openvino`` and ``nncf`` (extra ``curate[fast-cpu]``); they and
torch are imported lazily.  Offline: the model is read from its local directory only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

BACKENDS = ("torch", "openvino-int8")
#: Environment variable naming the default backend of ``Embedder`` (default "torch").
BACKEND_ENV = "CURATE_EMBED_BACKEND"
#: Bump when the conversion/quantisation recipe changes (invalidates cached models).
RECIPE_VERSION = "ov-int8-v1"
SMOOTH_QUANT_ALPHA = 0.7
#: Padded tokens per OpenVINO request (measured best on 2 cores: 1024-1536; 4096 was ~15 % slower).
OPENVINO_BATCH_TOKENS = 1024

_ENCODERS: dict[tuple, "OpenVINOInt8Encoder"] = {}
_LOCK = threading.Lock()

#: Fixed calibration texts (written for this purpose; varied registers and lengths).  Static
#: quantisation ranges come from these, so the built model does not depend on user data.
CALIBRATION_TEXTS: tuple[str, ...] = (
    "The city council voted on Tuesday to approve a new budget that increases spending on public "
    "transport and road repairs, after months of debate between the mayor and opposition members.",
    "Researchers at the university found that the new treatment reduced symptoms in 62 percent of "
    "patients, compared with 35 percent in the control group, according to a study published today.",
    "Shares fell sharply in early trading as investors reacted to weaker than expected quarterly "
    "earnings and a cautious outlook for the rest of the year.",
    "Preheat the oven to 180 degrees. Mix the flour, sugar and butter until the dough is smooth, "
    "then bake for twenty-five minutes or until golden brown.",
    "I can't believe how good this phone is for the price!! Battery lasts two days, camera is decent.",
    "Click here to subscribe to our newsletter and get 20% off your first order. Free shipping on all "
    "orders over $50.",
    "The river rises in the northern mountains and flows for about 400 kilometres before reaching the "
    "sea, passing through several small towns and a national park.",
    "In 1848 a wave of revolutions spread across Europe, driven by demands for constitutional "
    "government, national independence and better conditions for workers.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen as "
    "a by-product of splitting water molecules.",
    "The home team scored twice in the final ten minutes to win the match 3-1 and move to the top of "
    "the league table.",
    "Terms and conditions apply. Prices are subject to change without notice. All rights reserved.",
    "Hi everyone, does anyone know how to fix the error when installing the driver on Windows 10? "
    "I tried restarting but nothing works.",
    "The function returns a list of integers sorted in ascending order; if the input is empty it "
    "returns an empty list.",
    "She walked slowly along the beach, watching the waves and thinking about the letter she had "
    "received that morning.",
    "Officials said the fire, which started in a warehouse near the port, was brought under control "
    "after six hours and no one was injured.",
    "Vitamin D helps the body absorb calcium and is important for healthy bones. Many people do not "
    "get enough of it during the winter months.",
    "The committee recommended that the agency publish its data in an open format and review its "
    "procedures every two years.",
    "Our hotel is located in the heart of the old town, within walking distance of museums, "
    "restaurants and the main train station.",
    "Climate scientists warn that without rapid cuts in emissions, average global temperatures could "
    "rise by more than two degrees this century.",
    "New study links poor sleep to higher risk of heart disease",
    "Breaking: earthquake of magnitude 6.1 strikes off the coast, no tsunami warning issued.",
    "Thanks for the quick reply, that solved it.",
    "The company announced it will open a new factory next year, creating about 500 jobs in the region.",
    "He was elected to parliament in 2010 and served as minister of education until 2015, when he "
    "returned to teaching law at the university.",
    "Apply the cream twice a day to clean, dry skin. Do not use on broken skin. Keep out of reach of "
    "children.",
    "The novel follows three generations of a family living on a farm, and explores themes of "
    "memory, loss and belonging.",
    "Traffic was heavy on the motorway this morning after a lorry broke down in the outside lane.",
    "The software update fixes several security vulnerabilities and improves battery life on older "
    "devices.",
    "Local volunteers planted more than two thousand trees along the river bank over the weekend.",
    "The museum's new exhibition brings together paintings, letters and photographs from the artist's "
    "early years in Paris.",
    "Interest rates were left unchanged, but the central bank signalled that it could raise them later "
    "this year if inflation does not slow.",
    "Wow, what a game last night. Absolutely unreal finish.",
    "To reset your password, open the settings page, choose Account, and follow the instructions "
    "sent to your email address.",
    "The population of the village was 1,204 at the last census, most of whom work in agriculture "
    "or tourism.",
    "Doctors recommend at least 150 minutes of moderate exercise per week, such as brisk walking or "
    "cycling.",
    "The bridge, completed in 1932, was for many years the longest of its kind in the world.",
)


def default_backend() -> str:
    return os.environ.get(BACKEND_ENV, "").strip() or "torch"


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"embedding backend must be one of {BACKENDS}, got {name!r}")
    return name


def backend_available(name: str) -> bool:
    """True when the packages the backend needs are importable."""
    if name == "torch":
        return True
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p in ("openvino", "nncf"))


def cache_root() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "curate")
    return Path(base) / "openvino"


def _model_key(model_path: Path, calibration: Sequence[str]) -> str:
    import nncf
    import openvino

    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|alpha={SMOOTH_QUANT_ALPHA}|ov={openvino.__version__}|nncf={nncf.__version__}".encode())
    for f in sorted(p for p in model_path.rglob("*") if p.is_file() and p.suffix in (".json", ".txt", ".safetensors", ".bin")):
        h.update(str(f.relative_to(model_path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    for text in calibration:
        h.update(b"\0" + text.encode("utf-8"))
    return h.hexdigest()[:20]


def _max_seq_length(model_path: Path) -> int:
    cfg = model_path / "sentence_bert_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return 512


def _check_mean_pooling(model_path: Path) -> None:
    modules = model_path / "modules.json"
    pooling = None
    if modules.is_file():
        for mod in json.loads(modules.read_text()):
            if mod.get("type", "").endswith("Pooling"):
                pooling = model_path / mod.get("path", "") / "config.json"
    if pooling is None or not pooling.is_file():
        raise ValueError(f"openvino-int8 backend: no Pooling module config under {model_path}")
    cfg = json.loads(pooling.read_text())
    if not cfg.get("pooling_mode_mean_tokens") or any(
            cfg.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")):
        raise ValueError(f"openvino-int8 backend supports mean pooling only, {pooling} says {cfg}")


def _calibration_batches(tokenizer, texts: Sequence[str], max_len: int, rows: int = 8) -> list[dict]:
    # whole texts and their sentences: the model sees both in curate ("truncate" / "sentences")
    from curate.scorers.embedding_units import document_units

    items = list(texts) + [u for t in texts for u in document_units(t) if u != t]
    batches = []
    for i in range(0, len(items), rows):
        enc = tokenizer(items[i:i + rows], padding=True, truncation=True, max_length=max_len, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        batches.append({"input_ids": ids, "attention_mask": enc["attention_mask"].astype(np.int64),
                        "token_type_ids": np.zeros_like(ids)})
    return batches


def build_int8_model(model_path: str | Path, out_dir: str | Path,
                     calibration: Sequence[str] = CALIBRATION_TEXTS) -> Path:
    """Convert the model's transformer to OpenVINO, quantise it to int8, save ``model.xml``."""
    import nncf
    import openvino as ov
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_path = Path(model_path)
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    # eager attention: a plain MatMul/Softmax graph that OpenVINO fuses into its int8 MHA kernel
    bert = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()

    class _Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = tokenizer(["an example sentence for tracing", "short"], padding=True, return_tensors="pt")
    example = {k: example[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        ov_model = ov.convert_model(_Encoder(bert), example_input=example,
                                    input=[("input_ids", [-1, -1], ov.Type.i64),
                                           ("attention_mask", [-1, -1], ov.Type.i64),
                                           ("token_type_ids", [-1, -1], ov.Type.i64)])
    for inp, name in zip(ov_model.inputs, ("input_ids", "attention_mask", "token_type_ids")):
        inp.get_tensor().set_names({name})
    batches = _calibration_batches(tokenizer, calibration, _max_seq_length(model_path))
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)))
    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_dir / "model.xml"), compress_to_fp16=False)
    return out_dir / "model.xml"


def ensure_int8_model(model_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Path of the cached int8 model for ``model_path``, building it on first use."""
    model_path = Path(model_path)
    root = Path(cache_dir) if cache_dir else cache_root()
    final = root / _model_key(model_path, CALIBRATION_TEXTS)
    if (final / "model.xml").is_file() and (final / "model.bin").is_file():
        return final / "model.xml"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        build_int8_model(model_path, tmp)
        (tmp / "source.json").write_text(json.dumps({"model_path": str(model_path), "recipe": RECIPE_VERSION}))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first
            if not (final / "model.xml").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "model.xml"


class OpenVINOInt8Encoder:
    """Token-budget batched int8 encode: texts -> unit-norm float32 mean-pooled embeddings.

    Compiled with OpenVINO's THROUGHPUT hint: one stream per few cores, each running its own
    small batch, fed by an ``AsyncInferQueue``.  On 2 cores two single-thread streams with
    ~1024-token requests ran ~1.15x the one-stream (LATENCY) layout with 4096-token batches,
    because small ops no longer wait on each other across cores
    (benchmarks/results/embed_semdedup.md).  Every row's result depends only on its request's
    padded shape, so the output is the same whatever order requests finish in.
    """

    def __init__(self, model_path: str | Path, num_threads: int | None = None, cache_dir: str | Path | None = None):
        import openvino as ov
        from transformers import AutoTokenizer

        model_path = Path(model_path)
        _check_mean_pooling(model_path)
        self.max_len = _max_seq_length(model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.xml_path = ensure_int8_model(model_path, cache_dir)
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.xml_path)), "CPU", config)
        self.dimension = int(self.compiled.outputs[0].get_partial_shape()[2].get_length())
        self.streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._local = threading.local()

    def _queue(self):
        # one queue per calling thread: Beam may run several DoFn threads on one shared encoder
        queue = getattr(self._local, "queue", None)
        if queue is None:
            import openvino as ov

            queue = self._local.queue = ov.AsyncInferQueue(self.compiled, self.streams)
            queue.set_callback(_pool_into)
        return queue

    def encode(self, texts: Sequence[str], batch_tokens: int = OPENVINO_BATCH_TOKENS) -> np.ndarray:
        from curate.scorers.embedding_units import token_budget_batches

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not len(texts):
            return out
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_len,
                             verbose=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        pad_id = self.tokenizer.pad_token_id or 0
        queue = self._queue()
        for idx in token_budget_batches(lengths, batch_tokens):
            width = int(lengths[idx].max())
            input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :lengths[i]] = ids[i]
                mask[row, :lengths[i]] = 1
            queue.start_async({"input_ids": input_ids, "attention_mask": mask,
                               "token_type_ids": np.zeros_like(input_ids)}, (out, idx, mask))
        queue.wait_all()
        return out


def _pool_into(request, target) -> None:
    """AsyncInferQueue callback: mean-pool and L2-normalise one request's rows into ``out``."""
    out, idx, mask = target
    hidden = request.get_output_tensor(0).data
    m = mask[..., None].astype(np.float32)
    emb = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    out[idx] = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def get_encoder(backend: str, model_path: str, num_threads: int | None = None) -> OpenVINOInt8Encoder:
    """The process-wide encoder for (backend, model, threads), built/loaded once."""
    check_backend(backend)
    if backend != "openvino-int8":
        raise ValueError(f"no separate encoder for backend {backend!r}")
    if not backend_available(backend):
        raise ImportError("embedding backend 'openvino-int8' needs the packages openvino and nncf "
                          "(pip install 'curate[fast-cpu]')")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    key = (backend, str(model_path), num_threads)
    with _LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = _ENCODERS[key] = OpenVINOInt8Encoder(model_path, num_threads)
        return enc
