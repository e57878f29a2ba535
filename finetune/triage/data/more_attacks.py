"""More attack material and benign look-alikes.

Jailbreak prompts, system-prompt extraction attempts, instructions hidden in documents, and benign prompts about
prompts, personas and system messages that attack nothing. Every entry was written for this generator.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("more_attacks")
JAILBREAK_TEMPLATES: list[str] = _data["JAILBREAK_TEMPLATES"]
EXTRACTION: list[str] = _data["EXTRACTION"]
BENIGN_META: list[str] = _data["BENIGN_META"]
DOC_INJECTIONS: list[str] = _data["DOC_INJECTIONS"]
