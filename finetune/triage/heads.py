"""Factorised classification heads over a sentence embedding.

A harmful label's probability is P(any harm) x P(category | harm), and the same for the two attack labels, so the
group's decision rests on one score trained on every harmful row at once, and the category only says which one.
Eight independent sigmoids each had to be thresholded within the group's FPR budget (their union is what a benign
prompt sees), which pushed every threshold up and recall down (v16: 0.41 harmful recall at a 0.014 FPR).
Advice labels and refusal stay independent sigmoids: an advice request is routed, not refused, and a text can ask
for two kinds of advice at once.

The heads share one hidden layer over the embedding and are fitted on cached embeddings (seconds, not the half
hour an encoder fine-tune takes on this CPU); their forward pass is exported to ONNX behind the encoder. Label
logits are logit(P), so the serving runtime, the thresholds and the rails read them as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from guard.taxonomy import ADVICE, ATTACKS, HARMFUL, INPUT_LABELS

H, A = len(HARMFUL), len(ATTACKS)
assert INPUT_LABELS == HARMFUL + ATTACKS + ADVICE  # the column layout below relies on it


class Heads(nn.Module):
    """L2-normalised embedding [B, D] -> (label logits [B, 13] in INPUT_LABELS order, refusal logit [B])."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.any_harm = nn.Linear(hidden, 1)
        self.harm_cat = nn.Linear(hidden, H)
        self.any_attack = nn.Linear(hidden, 1)
        self.attack_cat = nn.Linear(hidden, A)
        self.advice = nn.Linear(hidden, len(ADVICE))
        self.refusal = nn.Linear(hidden, 1)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(emb)
        harm = _joint_logit(self.any_harm(h), self.harm_cat(h))
        attack = _joint_logit(self.any_attack(h), self.attack_cat(h))
        return torch.cat([harm, attack, self.advice(h)], dim=1), self.refusal(h).squeeze(-1)


def _joint_logit(any_logit: torch.Tensor, cat_logits: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(any) * softmax(cat)), computed in log space (exported ops only: no log1p in ONNX)."""
    log_p = F.logsigmoid(any_logit) + F.log_softmax(cat_logits, dim=1)
    p = torch.exp(log_p).clamp(max=1.0 - 1e-6)
    return log_p - torch.log(1.0 - p)


@dataclass
class HeadData:
    """Training rows for the heads: embeddings and, per row, what it teaches."""

    emb: np.ndarray  # [N, D], L2-normalised
    labels: np.ndarray  # [N, 13] 0/1 in INPUT_LABELS order
    labelled: np.ndarray  # [N] bool: the row teaches the label heads (prompts and synthetic answers)
    is_response: np.ndarray  # [N] bool: the row teaches the refusal head
    refusal: np.ndarray  # [N] 0/1
    weight: np.ndarray  # [N] sample weight


@dataclass
class HeadConfig:
    hidden: int = 256
    epochs: int = 12
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 13


def fit_heads(data: HeadData, cfg: HeadConfig | None = None) -> Heads:
    """Minibatch AdamW on the summed head losses; each row teaches only the heads its labels speak to."""
    cfg = cfg or HeadConfig()
    torch.manual_seed(cfg.seed)
    heads = Heads(data.emb.shape[1], cfg.hidden)
    x = torch.from_numpy(np.ascontiguousarray(data.emb, dtype=np.float32))
    y = torch.from_numpy(data.labels.astype(np.float32))
    t = targets(data)
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    heads.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            loss = heads_loss(heads, x[b], y[b], t.take(b))
            if loss is None:
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
    # A group the data holds no example of cannot be learned: it never fires (a small adaptation set, say).
    silent = [
        (heads.any_harm, y[:, :H].amax(1)[t.labelled].sum()),
        (heads.any_attack, y[:, H : H + A].amax(1)[t.labelled].sum()),
        (heads.refusal, t.refusal[t.response].sum()),
    ]
    with torch.no_grad():
        for layer, positives in silent:
            if float(positives) == 0:
                layer.weight.zero_()
                layer.bias.fill_(-30.0)
    return heads.eval()


def targets(data: HeadData) -> Targets:
    """What each row teaches, and the groups' positive weights (over all rows, not one batch)."""
    y = torch.from_numpy(data.labels.astype(np.float32))
    return Targets(
        labelled=torch.from_numpy(data.labelled.astype(bool)),
        response=torch.from_numpy(data.is_response.astype(bool)),
        refusal=torch.from_numpy(data.refusal.astype(np.float32)),
        weight=torch.from_numpy(data.weight.astype(np.float32)),
        pos_harm=_pos_weight(y[:, :H].amax(1), data.labelled),
        pos_attack=_pos_weight(y[:, H : H + A].amax(1), data.labelled),
        pos_refusal=_pos_weight(torch.from_numpy(data.refusal.astype(np.float32)), data.is_response),
    )


@dataclass
class Targets:
    labelled: torch.Tensor
    response: torch.Tensor
    refusal: torch.Tensor
    weight: torch.Tensor
    pos_harm: torch.Tensor
    pos_attack: torch.Tensor
    pos_refusal: torch.Tensor

    def take(self, b: torch.Tensor) -> Targets:
        return Targets(
            self.labelled[b],
            self.response[b],
            self.refusal[b],
            self.weight[b],
            self.pos_harm,
            self.pos_attack,
            self.pos_refusal,
        )


def _pos_weight(positive: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """sqrt(negatives / positives), so a rare group is not drowned by benign rows (1 when a group is absent)."""
    mask = torch.from_numpy(rows.astype(bool))
    pos = float(positive[mask].sum())
    neg = float(mask.sum()) - pos
    return torch.tensor((neg / pos) ** 0.5 if pos > 0 and neg > 0 else 1.0)


def heads_loss(heads: Heads, x: torch.Tensor, y: torch.Tensor, t: Targets) -> torch.Tensor | None:
    """The summed head losses on a batch of embeddings `x`; None when no row of it teaches any head."""
    h = heads.body(x)
    parts: list[torch.Tensor] = []
    lab = t.labelled
    if lab.any():
        hl, yl, wl = h[lab], y[lab], t.weight[lab]
        harm, attack = yl[:, :H].amax(1), yl[:, H : H + A].amax(1)
        parts.append(_bce(heads.any_harm(hl).squeeze(1), harm, wl, t.pos_harm))
        parts.append(_bce(heads.any_attack(hl).squeeze(1), attack, wl, t.pos_attack))
        adv = F.binary_cross_entropy_with_logits(heads.advice(hl), yl[:, H + A :], reduction="none").mean(1)
        parts.append((adv * wl).sum() / wl.sum())
        for layer, cols, member in ((heads.harm_cat, slice(0, H), harm), (heads.attack_cat, slice(H, H + A), attack)):
            m = member > 0
            if m.any():
                ce = F.cross_entropy(layer(hl[m]), yl[m, cols].argmax(1), reduction="none")
                parts.append((ce * wl[m]).sum() / wl[m].sum())
    r = t.response
    if r.any():
        parts.append(_bce(heads.refusal(h[r]).squeeze(1), t.refusal[r], t.weight[r], t.pos_refusal))
    return torch.stack(parts).sum() if parts else None


def _bce(logit: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(logit, target, pos_weight=pos_weight, reduction="none")
    return (loss * weight).sum() / weight.sum()
