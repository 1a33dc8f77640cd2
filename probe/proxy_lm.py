"""A small byte-level decoder-only transformer LM for proxy ("probe") training runs.

What a probe needs from a language model is a loss that responds to *which* data it was trained
on and *how often* it saw it, measured cheaply and reproducibly. So this module is deliberately
small and dependency-free:

* Tokens: raw UTF-8 bytes plus a document separator (`probe.sequences`: tokenizer, packing
  and the seeded batch stream); one token = one byte, so "tokens" in observations are bytes.
* Model: pre-norm GPT (learned positions, causal self-attention through
  `scaled_dot_product_attention`, GELU MLP, tied input/output embeddings), no dropout.
* Schedule: linear warm-up, then a *constant* learning rate. Under a constant LR the model at
  step s is (up to noise) the model a run of length s would have ended with, so evaluating at
  intermediate steps gives one valid measurement per step count from a single run. A decaying
  schedule would not: the step-s weights of a long cosine run are not those of a short run.
  `ProxyTrainer.cooldown_loss` optionally evaluates a *branch*: it copies the weights and
  optimiser state, anneals the LR linearly to zero over a few steps, evaluates and discards the
  branch, so the measurement matches a run of length s that ends with a short cool-down
  (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
  Durations"); the main run is unaffected.
* Determinism: weights are initialised from a private `torch.Generator` seeded by the caller,
  batches come from a seeded numpy RNG (`probe.sequences.SequenceStream`),
  `torch.use_deterministic_algorithms` is switched on and the thread count is fixed by the
  caller; on CPU two runs with the same seed, config and thread count give bit-identical
  losses.

torch is imported lazily (inside functions) so importing this module is cheap.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from curate.probe.errors import ProbeError
from curate.probe.sequences import VOCAB_SIZE


@dataclass(frozen=True)
class ProxyConfig:
    """Size and optimisation settings of a proxy LM.

    The defaults (d_model 192, 4 layers, context 128) give ~1.9 M parameters: a CPU-sized
    proxy. `warmup_steps` is the linear warm-up before the constant LR.
    """

    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    context: int = 128
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    cooldown_steps: int = 0  # >0: evaluate on a cooled-down branch (see module docstring)

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        for name in ("d_model", "n_layers", "n_heads", "context", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context

    def n_params(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        d, L = self.d_model, self.n_layers
        per_layer = 12 * d * d + 13 * d  # qkv+proj+mlp weights, biases, two layer norms
        return VOCAB_SIZE * d + self.context * d + L * per_layer + 2 * d

    def train_flops_per_step(self) -> float:
        """~6 N T + attention, per optimiser step: used to size runs to a time budget."""
        T = self.tokens_per_step
        attn = 12 * self.n_layers * self.context * self.d_model * T / 2
        return 6.0 * self.n_params() * T + attn

    def to_dict(self) -> dict:
        return asdict(self)


def _build_model_class():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, d: int, heads: int):
            super().__init__()
            self.heads = heads
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.out = nn.Linear(4 * d, d)

        def forward(self, x):
            B, T, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
            shape = (B, T, self.heads, D // self.heads)
            q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class ByteGPT(nn.Module):
        def __init__(self, cfg: ProxyConfig):
            super().__init__()
            self.tok = nn.Embedding(VOCAB_SIZE, cfg.d_model)
            self.pos = nn.Embedding(cfg.context, cfg.d_model)
            self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
            self.ln_f = nn.LayerNorm(cfg.d_model)

        def forward(self, idx):
            T = idx.shape[1]
            x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x) @ self.tok.weight.t()  # tied output embedding

    return ByteGPT


def build_model(cfg: ProxyConfig, seed: int, device: str = "cpu"):
    """A freshly initialised ByteGPT; initialisation depends only on (cfg, seed)."""
    import torch

    model = _build_model_class()(cfg)
    gen = torch.Generator().manual_seed(int(seed))
    n_layers = cfg.n_layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                if name.endswith("weight"):  # layer-norm gains
                    p.fill_(1.0)
                else:
                    p.zero_()
                continue
            std = 0.02
            if name.endswith(("proj.weight", "out.weight")):
                std = 0.02 / math.sqrt(2 * n_layers)  # GPT-2 residual scaling
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.to(device)


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ProbeError("--device cuda was asked for but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ProbeError(f"unknown device {device!r}; expected auto, cpu or cuda")
    return device


class ProxyTrainer:
    """Trains one proxy LM with warm-up + constant LR; evaluates mean loss (nats per byte).

    Parameters
    ----------
    cfg : model and optimiser settings.
    seed : initialisation seed.
    device : "cpu" or "cuda".
    threads : CPU threads for torch (fixed for reproducibility); None leaves torch's setting.
    """

    def __init__(self, cfg: ProxyConfig, seed: int = 0, device: str = "cpu", threads: int | None = 1):
        import torch

        if threads is not None:
            torch.set_num_threads(int(threads))
        # Deterministic kernels where torch has them (CPU always does); warn rather than fail
        # on a GPU op without a deterministic implementation.
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.cfg = cfg
        self.device = device
        self.model = build_model(cfg, seed, device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                           weight_decay=cfg.weight_decay, eps=1e-8)
        self.step = 0
        self.tokens_seen = 0
        # bf16 autocast on GPU only: on CPU fp32 keeps results bit-reproducible.
        self._autocast = device == "cuda"

    def lr_at(self, step: int) -> float:
        """Linear warm-up over `warmup_steps`, then constant."""
        w = self.cfg.warmup_steps
        return self.cfg.lr * min(1.0, (step + 1) / w) if w > 0 else self.cfg.lr

    def _loss(self, model, batch):
        import torch
        from torch.nn import functional as F

        x = torch.as_tensor(batch[:, :-1], device=self.device)
        y = torch.as_tensor(batch[:, 1:], device=self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._autocast):
            logits = model(x)
        return F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1))

    def _update(self, model, optimizer, batch, lr: float) -> float:
        import torch

        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = self._loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        optimizer.step()
        return float(loss.detach())

    def train_step(self, batch: np.ndarray) -> float:
        """One optimiser step on a (B, context + 1) batch; returns the training loss."""
        self.model.train()
        loss = self._update(self.model, self.optimizer, batch, self.lr_at(self.step))
        self.step += 1
        self.tokens_seen += batch.shape[0] * (batch.shape[1] - 1)
        return loss

    def evaluate(self, sequences: np.ndarray, batch_size: int = 64, model=None) -> float:
        """Mean next-token loss (nats per byte) over all predicted tokens of `sequences`."""
        import torch
        from torch.nn import functional as F

        model = self.model if model is None else model
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(sequences), batch_size):
                batch = sequences[i:i + batch_size]
                x = torch.as_tensor(batch[:, :-1], device=self.device)
                y = torch.as_tensor(batch[:, 1:], device=self.device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._autocast):
                    logits = model(x)
                total += float(F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE),
                                               y.reshape(-1), reduction="sum"))
                count += y.numel()
        return total / max(count, 1)

    def cooldown_loss(self, sequences: np.ndarray, batches: Sequence[np.ndarray]) -> float:
        """Evaluate a cooled-down *branch*: copy the model and optimiser, train on `batches`
        with the LR annealed linearly from its current value to zero, evaluate, discard.

        The batches should be the next ones of the training stream (the caller peeks them
        from a copy of its stream) so the branch sees the same data the main run would.
        """
        import torch

        branch = copy.deepcopy(self.model)
        opt = torch.optim.AdamW(branch.parameters(), lr=self.cfg.lr, betas=(0.9, 0.95),
                                weight_decay=self.cfg.weight_decay, eps=1e-8)
        opt.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        base = self.lr_at(self.step)
        n = len(batches)
        branch.train()
        for j, batch in enumerate(batches):
            self._update(branch, opt, batch, base * (1.0 - (j + 1) / (n + 1)))
        loss = self.evaluate(sequences, model=branch)
        del branch, opt
        return loss
