"""Triage: the intent classifier every request meets first.

- `data/`: synthetic generator + public-data mapping + honest splits (`guard triage train` uses it).
- `model.py`, `train.py` (torch; training only) -> the shipped artifact in `artifact/` (LoRA + heads + thresholds).
- `export.py` (`guard triage build`) -> ONNX fp32 + int8 in `settings.triage_dir`.
- `runtime.py` (onnxruntime + tokenizers + numpy only) -> `TriageModel`; `stage.py` -> `TriageStage` for the
  pipeline, micro-batched by `batcher.py`.

Labels (`guard.taxonomy`): eight harmful categories, `jailbreak`, `prompt_injection`, three regulated-advice
requests, all independent sigmoid scores with per-label thresholds; none over threshold = benign. A second
head scores `refusal` on model answers.
"""
