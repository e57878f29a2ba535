"""Extra benign hard negatives for the synthetic prompt generator.

Every prompt here is harmless but shares vocabulary or topic with a harmful category: scary words used in idioms,
games, sport, cooking or computing; education, history, news and policy questions about weapons, drugs, hate or
disease; safety, prevention and support-seeking questions; non-operational fiction; public facts about public
figures and companies. Alongside them are defensive security work, adversarial-looking but harmless set-ups
(role-play, hypotheticals, research framing, discussion of jailbreaks and prompt injection) and messy, realistic
everyday chat. They exist because the classifier flags too many benign prompts that merely sound dangerous; none
of them contains operational detail, slurs or explicit content, so all are labelled benign.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("more_benign")
SCARY_WORDS_BENIGN: dict[str, list[str]] = _data["SCARY_WORDS_BENIGN"]
SECURITY_WORK: list[str] = _data["SECURITY_WORK"]
SENSITIVE_BUT_SAFE: list[str] = _data["SENSITIVE_BUT_SAFE"]
EVERYDAY_CHAT: list[str] = _data["EVERYDAY_CHAT"]
