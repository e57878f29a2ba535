"""Benign prompts in the shapes the classifier over-flagged on held-out WildGuard-style data.

The shapes: defensive framing (prevent, detect, protect against, report or recover from a harm), countering
prejudice, public facts about public figures and organisations, definitions of sensitive terms and
age-appropriate education, violence in video games, board games and sport, coping with intrusive thoughts and
stress (not crisis disclosures), and long harmless fiction / role-play set-ups with no jailbreak mechanics.
Written for this project; no text copied from any data set.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("wild_benign")
DEFENSIVE: list[str] = _data["DEFENSIVE"]
COUNTER_PREJUDICE: list[str] = _data["COUNTER_PREJUDICE"]
PUBLIC_FACTS: list[str] = _data["PUBLIC_FACTS"]
DEFINITIONS: list[str] = _data["DEFINITIONS"]
GAMES_SPORT: list[str] = _data["GAMES_SPORT"]
COPING: list[str] = _data["COPING"]
FICTION_SETUPS: list[str] = _data["FICTION_SETUPS"]
