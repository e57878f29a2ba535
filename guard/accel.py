"""Hardware checks shared by the training code (triage classifier, DPO); torch is imported only when called."""

from __future__ import annotations


def cpu_has_bf16() -> bool:
    """AVX512-BF16 / AMX: bf16 autocast halves the CPU step time (bench/dpo.py); without it bf16 is slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
