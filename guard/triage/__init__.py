"""Triage at serving time: the intent classifier every request meets first.

- `runtime.py` (onnxruntime + tokenizers + numpy only) -> `TriageModel`; `stage.py` -> `TriageStage` for the
  pipeline, micro-batched by `batcher.py`.
- `artifact/`: the shipped, trained weights and thresholds; `guard triage build` (in `finetune.triage`) turns them
  into the ONNX runtime directory.

Everything that trains (data, source mapping, training, export, evaluation) lives in `finetune/triage/`.

Labels (`guard.taxonomy`): eight harmful categories, `jailbreak`, `prompt_injection`, three regulated-advice
requests, all independent sigmoid scores with per-label thresholds; none over threshold = benign. A second
head scores `refusal` on model answers.
"""
