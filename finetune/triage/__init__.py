"""Training the triage classifier: data (public sources + a capped generator), training, export, evaluation.

- `data/`: the source table (`sources.yml`), its mapping onto the taxonomy, leave-out splits, the generator.
- `model.py`, `train.py` (torch) -> the shipped artifact in `guard/triage/artifact/`.
- `export.py` (`guard triage build`) -> ONNX fp32 + int8 for `guard.triage.runtime`.
- `evaluate.py`, `scoring.py` (numpy) -> `guard triage eval` and the calibration.
"""
