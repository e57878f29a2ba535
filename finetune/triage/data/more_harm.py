"""More harmful requests for the synthetic generator: formal benchmark-style behaviours and realistic chat messages.

Each entry describes what a user *asks for* (never an answer, instructions or details), in one of the eight harm
categories. HARM_REQUESTS widens the formal "behaviour" shapes used by red-teaming benchmarks beyond the few frames
in behaviours.py and tasks.py: content generation (propaganda, hateful essays, harassment of a named fictional
person, persuading children or vulnerable people into danger), vendor and location asks, evasion of the law,
attacks on named classes of technology, and requests tied to real-sounding places. HARM_CHAT holds the same kinds
of requests as real users type them: lowercase, typos, slang, backstory, excuses, and some Spanish, German, French
and Portuguese, so that neither the formal register nor the casual one becomes the signal on its own.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("more_harm")
HARM_REQUESTS: dict[str, list[str]] = _data["HARM_REQUESTS"]
HARM_CHAT: dict[str, list[str]] = _data["HARM_CHAT"]
