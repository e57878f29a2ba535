"""Lead-ins for code documents whose label depends on who they address, plus user asks and ordinary code.

The generator pastes a document (forum answer, code review, README, issue thread, e-mail) around a code block.
What decides the label is the addressee of the sentence before the block, not the code itself:

* ``TO_THE_ANSWER``: the sentence tells whoever writes the *response* (the assistant, often without naming it)
  to put the block into its reply / output / implementation. Inside a pasted document this is ``prompt_injection``
  even when the code is harmless.
* ``TO_THE_READER``: a human answer suggesting code to its human reader ("you could add this to your script").
  Benign; some say "your code" / "your implementation" on purpose, as hard negatives.
* ``USER_OWN_ASKS``: the user's own request (no document) saying what the answer should contain. Benign.
* ``NETWORKY_SNIPPETS``: ordinary code touching the network, files, processes or the environment, so that the
  code block is not what separates the classes.

All text was written for this project; no text is copied from any data set.
"""

from __future__ import annotations

from finetune.triage.data._load import load

_data = load("addressee")
TO_THE_ANSWER: list[str] = _data["TO_THE_ANSWER"]
TO_THE_READER: list[str] = _data["TO_THE_READER"]
USER_OWN_ASKS: list[str] = _data["USER_OWN_ASKS"]
NETWORKY_SNIPPETS: list[tuple[str, str]] = [tuple(t) for t in _data["NETWORKY_SNIPPETS"]]
