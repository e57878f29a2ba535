"""`guard triage build`: shipped artifact + installed base weights -> ONNX fp32 + int8, tokenizer, config.

Idempotent: the output's `triage.json` records a hash of what it was built from; a matching build is kept. The
artifact's harm atlas (`guard.triage.atlas`) is copied beside the model when it was embedded by this encoder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from guard.triage.artifact import (
    ARTIFACT_CONFIG,
    EXPORT_VERSION,
    MODEL_FP32,
    MODEL_INT8,
    RUNTIME_CONFIG,
    TOKENIZER,
    ArtifactError,
    base_model_dir,
    source_hash,
)
from guard.triage.atlas import HARM_ATLAS

log = logging.getLogger("guard.triage")

OUTPUT_NAMES = ["label_logits", "refusal_logit", "embedding"]


def is_up_to_date(art_dir: Path, out_dir: Path) -> bool:
    cfg = out_dir / RUNTIME_CONFIG
    if not all((out_dir / n).is_file() for n in (MODEL_INT8, MODEL_FP32, TOKENIZER, RUNTIME_CONFIG)):
        return False
    try:
        return json.loads(cfg.read_text()).get("source_hash") == source_hash(art_dir)
    except (OSError, ValueError):
        return False


def build(art_dir: Path, out_dir: Path, *, force: bool = False) -> bool:
    """Build the runtime directory; returns False when it was already up to date."""
    if not (art_dir / ARTIFACT_CONFIG).is_file():
        raise ArtifactError(f"no triage artifact at {art_dir} (expected {ARTIFACT_CONFIG}); run `guard triage train`")
    if not force and is_up_to_date(art_dir, out_dir):
        sync_atlas(art_dir, out_dir)
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder beside the target, then move files in: a crash leaves the old build intact.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        work = Path(tmp)
        config = export_onnx(art_dir, work / MODEL_FP32)
        quantize(work / MODEL_FP32, work / MODEL_INT8)
        shutil.copyfile(base_model_dir() / "tokenizer.json", work / TOKENIZER)
        runtime = {k: config[k] for k in ("version", "labels", "thresholds", "max_len", "stride")}
        runtime.update(source_hash=source_hash(art_dir), export_version=EXPORT_VERSION, outputs=OUTPUT_NAMES)
        (work / RUNTIME_CONFIG).write_text(json.dumps(runtime, indent=2) + "\n")
        for name in (MODEL_FP32, MODEL_INT8, TOKENIZER, RUNTIME_CONFIG):  # config last: it marks the build done
            os.replace(work / name, out_dir / name)
    sync_atlas(art_dir, out_dir)
    return True


def sync_atlas(art_dir: Path, out_dir: Path) -> None:
    """Copy the artifact's harm atlas into the build when it fits the encoder; drop a stale one."""
    src, dst = art_dir / HARM_ATLAS, out_dir / HARM_ATLAS
    if not src.is_file():
        dst.unlink(missing_ok=True)
        return
    if dst.is_file() and dst.read_bytes() == src.read_bytes():
        return
    from finetune.triage.atlas import artifact_encoder, atlas_encoder

    if atlas_encoder(src) != artifact_encoder(art_dir):
        log.warning("%s was embedded by another encoder: not used (run `guard triage atlas`)", src)
        dst.unlink(missing_ok=True)
        return
    shutil.copyfile(src, dst)


def export_onnx(art_dir: Path, path: Path) -> dict:
    import torch

    from finetune.triage.model import load_artifact

    model, config = load_artifact(art_dir, merge=True)
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    seq_axes = {0: "batch", 1: "seq"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy exporter's deprecation + tracer warnings; parity is tested
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask"],
            output_names=OUTPUT_NAMES,
            dynamic_axes={
                "input_ids": seq_axes,
                "attention_mask": seq_axes,
                "label_logits": {0: "batch"},
                "refusal_logit": {0: "batch"},
                "embedding": {0: "batch"},
            },
        )
    return config


def quantize(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" notice; harmless here
    import onnx

    # Per-channel scales: per-tensor int8 moved some probabilities by ~0.35 on this model, per-channel by ~0.1.
    # Outputs of fused operators (Attention, BiasGelu: rails.embedding) have no inferred type; they are float.
    default = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, extra_options=default)
