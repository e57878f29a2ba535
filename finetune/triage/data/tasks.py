"""Content-production requests ("write a post that...", "write code for...") and their benign twins.

Generator v2 phrased almost every harmful request as "how do I <act>"; held out by source, the model then
missed plainly harmful *production* requests (write a post glorifying X, write an exploit for Y, describe a
graphic scene of Z). These entries cover that request shape, with benign twins in the same shape so that the
shape itself does not become the signal. Also: more hidden instructions for document injections.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("tasks")
HARM_TASKS: dict[str, list[str]] = _data["HARM_TASKS"]
TASK_FRAMES: list[str] = _data["TASK_FRAMES"]
BENIGN_PRODUCTION: list[str] = _data["BENIGN_PRODUCTION"]
SCARY_IDIOMS: list[str] = _data["SCARY_IDIOMS"]
MORE_HIDDEN_INSTRUCTIONS: list[str] = _data["MORE_HIDDEN_INSTRUCTIONS"]
CONTACT_REQUESTS: list[str] = _data["CONTACT_REQUESTS"]
CONTACT_VALUES: dict[str, list[str]] = _data["CONTACT_VALUES"]
