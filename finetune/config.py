"""The DPO training config: YAML validated by pydantic; unknown keys and bad values name the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SHIPPED_DPO = Path(__file__).resolve().parent / "configs" / "dpo.yaml"


class ConfigError(ValueError):
    pass


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    targets: list[str] | Literal["all-linear"] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class DPOSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = Field(0.1, gt=0)
    loss_type: Literal[
        "sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"
    ] = "sigmoid"
    # Weight of an NLL (SFT) term on the chosen answers, added to the DPO loss (TRL loss_type [loss_type, "sft"],
    # RPO-style). DPO alone can lower the chosen answer's likelihood too ("likelihood displacement"): in the demo
    # the "refuse more" pairs then failed to keep refusals on harmful prompts. 0 = plain DPO.
    sft_weight: float = Field(0.0, ge=0, le=100)
    learning_rate: float = Field(5e-4, gt=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1 = run `epochs`
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(192, ge=16)  # same as the shipped configs/dpo.yaml
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    threads: int = Field(1, ge=1, le=256)  # CPU torch threads; 1 is fastest on a shared machine
    precompute_ref_log_probs: bool = True
    ref_batch_size: int = Field(8, ge=1)  # pairs per batch of that pass (finetune/reference.py)
    logging_steps: int = Field(5, ge=1)
    lora: LoraSettings | None = LoraSettings()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto = bf16 on GPU and on CPUs with native bf16 (AVX512-BF16 / AMX: autocast), else fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"


def load_config(path: Path | None = None, **overrides: object) -> DPOSettings:
    path = Path(path) if path else SHIPPED_DPO
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DPOSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {key}: {err['msg']}") from None
