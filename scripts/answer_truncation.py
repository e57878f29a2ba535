"""Would the gate's refusal verdicts change with a shorter answer cap? Reads a model's stored suite answers
(`eval_answers.jsonl`, finetune/answers.py) and judges each answer cut to its first T tokens with the one refusal
detector (the triage refusal head included when the triage model is built).

    PYTHONPATH=. .venv/bin/python scripts/answer_truncation.py MODEL_DIR/eval_answers.jsonl [...]

Greedy answers make this exact: an answer generated with a cap of T tokens is the first T tokens of the same
answer generated with a larger cap (same batches, same first-sentence stop).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoTokenizer

from guard.refusal import HEAD_THRESHOLD, shipped
from guard.settings import load_settings
from guard.triage.runtime import TriageModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--caps", default="16,24,28,32,36")
    a = ap.parse_args()
    triage_dir = load_settings().triage_dir
    flags = shipped().with_head(HEAD_THRESHOLD).batch(TriageModel.load(triage_dir) if triage_dir.is_dir() else None)
    for store in a.stores:
        answers = [json.loads(line)["answer"] for line in store.read_text().splitlines()[1:]]
        tok = AutoTokenizer.from_pretrained(store.parent)
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in answers]
        full = flags(answers)
        print(f"{store}: {len(answers)} answers, {sum(full)} refusals")
        for cap in map(int, a.caps.split(",")):
            cut = [
                tok.decode(i[:cap], skip_special_tokens=True).strip() if len(i) > cap else t
                for i, t in zip(ids, answers, strict=True)
            ]
            changed = [t for t, x, y in zip(answers, full, flags(cut), strict=True) if x != y]
            print(f"  cap {cap}: {sum(len(i) > cap for i in ids)} answers cut, verdict changed on {len(changed)}")
            for t in changed[:3]:
                print(f"    {t[:120]!r}")


if __name__ == "__main__":
    main()
