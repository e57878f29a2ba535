"""Deterministic stand-ins for the triage stage: real objects with the same interface, no model files.

`WordScorer` labels a text when it contains one of a few words (a tiny, explicit lexicon), and
`HashEncoder` embeds texts as hashed bag-of-words unit vectors, so nearest-neighbour intents work on
shared words. Shipped-config tests use the real ONNX triage model instead (see test_shipped_configs).
"""

from __future__ import annotations

import hashlib
import os
import textwrap
import uuid
from pathlib import Path

import numpy as np

from guard.domain import Message
from guard.pipeline import Exchange, TriageResult

os.environ.setdefault("OMP_NUM_THREADS", "1")

LEXICON = {
    "bomb": "violence_weapons",
    "rifle": "violence_weapons",
    "ransomware": "cyber",
    "overdose": "self_harm",
    "dosage": "medical_advice",
    "stocks": "financial_advice",
    "jailbreak": "jailbreak",
}


class WordScorer:
    """Scores 0.95 for a label whose word appears, 0.02 otherwise; 'refusal' from a leading apology."""

    def __init__(self, lexicon: dict[str, str] | None = None, embed_dims: int = 64) -> None:
        self.lexicon = lexicon or LEXICON
        self.encoder = HashEncoder(embed_dims)
        self.calls = 0

    async def score_text(self, text: str) -> TriageResult:
        self.calls += 1
        low = text.lower()
        labels = tuple(dict.fromkeys(v for k, v in self.lexicon.items() if k in low))
        scores = {label: 0.02 for label in self.lexicon.values()}
        scores.update({label: 0.95 for label in labels})
        scores["refusal"] = 0.995 if low.startswith(("sorry", "i cannot")) else 0.05
        return TriageResult(scores, labels, self.encoder.embed([text])[0])

    async def classify(self, exchange: Exchange) -> TriageResult:
        last = next(m.text for m in reversed(exchange.messages) if m.role == "user")
        return await self.score_text(last)


class BrokenScorer:
    async def score_text(self, text: str) -> TriageResult:
        raise RuntimeError("classifier unavailable")


class HashEncoder:
    def __init__(self, dims: int = 64) -> None:
        self.dims = dims

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(",", " ").split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dims] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


# NeMo config.yml for dialog rails decided by embedding alone (NeMo's threshold and fallback semantics).
DIALOG_CONFIG = """\
models: []
rails:
  dialog:
    user_messages:
      embeddings_only: true
      embeddings_only_similarity_threshold: 0.6
      embeddings_only_fallback_intent: something else
"""


def exchange(
    text: str, *, tenant: str = "t1", profile: str | None = None, system: str | None = None, stream: bool = False
) -> Exchange:
    messages = [Message("system", system)] if system else []
    messages.append(Message.user(text))
    return Exchange(
        id=uuid.uuid4().hex, tenant=tenant, messages=messages, model="m", stream=stream, requested_profile=profile
    )


def write_rails(path: Path, guard_yml: str, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "guard.yml").write_text(textwrap.dedent(guard_yml))
    for name, text in files.items():
        (path / name.replace("__", ".")).write_text(textwrap.dedent(text))
    return path
