"""Clean document paragraphs and notes to human readers: the benign side of hidden-instruction documents.

The triage classifier labels ``prompt_injection`` when a pasted document hides an instruction aimed at the AI
assistant. It over-flagged clean documents that merely contain imperatives addressed to their *human* readers.
These lists supply many such documents, so that imperatives, instructions, links, hidden-note forms (HTML
comments, bracketed internal notes, JSON ``note`` fields, P.S. lines) and words like "ignore", "system",
"note", "admin" or "assistant" in ordinary documents stop being the signal:

* ``CLEAN_PARAGRAPHS``: one-paragraph documents of many genres (emails, policies, notices, tickets, reviews,
  API docs, CSV/JSON/log/calendar snippets, chat logs, leaflets, itineraries), some in German, Spanish, French.
  About half instruct a human reader; none addresses an AI, assistant, bot or model.
* ``READER_NOTES``: short notes a document could begin or end with, addressed to its human reader; none
  addresses an AI, assistant, bot, model, or "your response/summary/answer".

All text was written for this project; no text is copied from any data set.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("more_docs")
CLEAN_PARAGRAPHS: list[str] = _data["CLEAN_PARAGRAPHS"]
READER_NOTES: list[str] = _data["READER_NOTES"]
