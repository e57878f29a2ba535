"""The embeddings-only dialog fast path (rails/nemo_dialog.py): int8 screening, variants, constant configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rails_support import DIALOG_CONFIG, HashEncoder, exchange, write_rails

from rails.nemo_dialog import NEEDS_NEMO, Canned, CannedDialog

SHARED = Path(__file__).resolve().parents[2].parent / "shared"

GREETING = Canned("nemo:greeting", (("Hey!", "Hello!"),))
POLITICS = Canned("nemo:politics", (("No politics.",),))
STOCKS = Canned("nemo:stocks", (("No stock tips.",),))
EXAMPLES = [
    ("hello there friend", "express greeting"),
    ("hi how are you", "express greeting"),
    ("who should I vote for", "ask politics"),
    ("what do you think about the party", "ask politics"),
    ("which stock should I buy", "ask stocks"),
    ("is this stock a good buy", "ask stocks"),
]
FLOWS: dict[str, Canned | str] = {"express greeting": GREETING, "ask politics": POLITICS, "ask stocks": STOCKS}
WORDS = "hello hi there friend how are you who should I vote for what do think about the party stock buy good a"


class Noisy:
    """An approximate embedding whose similarity to any unit vector is off by up to `error` (and often by
    nearly that much): the worst an int8 model within its measured error could do."""

    def __init__(self, exact: HashEncoder, error: float, seed: int) -> None:
        self.exact, self.error, self.rng, self.calls = exact, error, np.random.default_rng(seed), 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        v = self.exact.embed(texts)
        noise = self.rng.normal(size=v.shape)
        return v + 0.999 * self.error * noise / np.linalg.norm(noise, axis=1, keepdims=True)


def _prompts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS.split(), size=int(rng.integers(2, 7)))) for _ in range(n)]


@pytest.mark.parametrize("threshold", [None, 0.3, 0.5])
@pytest.mark.parametrize("fallback", [None, "something else"])
def test_screening_with_an_approximate_embedding_never_changes_the_decision(
    threshold: float | None, fallback: str | None
) -> None:
    exact = HashEncoder(64)
    approx = Noisy(exact, 0.08, seed=1)
    screened = CannedDialog(exact.embed, EXAMPLES, FLOWS, threshold, fallback, approx, 0.08)
    plain = CannedDialog(exact.embed, EXAMPLES, FLOWS, threshold, fallback)
    prompts = _prompts(300)
    exact_calls = 0

    def counting(texts: list[str]) -> np.ndarray:
        nonlocal exact_calls
        exact_calls += 1
        return exact.embed(texts)

    screened.embed = counting
    for text in prompts:
        assert screened.decide(text) == plain.decide(text), text
    assert approx.calls == len(prompts)
    assert 0 < exact_calls < len(prompts)  # confirmations only near a boundary, and some were needed


def test_a_dialog_whose_every_message_ends_the_same_way_embeds_nothing() -> None:
    def no_embedding(texts: list[str]) -> np.ndarray:
        if texts == ["any message"]:
            raise AssertionError("embedded a message although no answer depends on it")
        return HashEncoder(64).embed(texts)

    flows: dict[str, Canned | str] = {"express greeting": NEEDS_NEMO, "ask politics": NEEDS_NEMO}
    examples = EXAMPLES[:4]
    assert CannedDialog(no_embedding, examples, flows, 0.5, None).decide("any message") == NEEDS_NEMO
    assert CannedDialog(no_embedding, examples, {}, None, None).decide("any message") is None
    # Different answers are possible as soon as a flow answers or the threshold leads elsewhere.
    assert not CannedDialog(no_embedding, examples, flows, 0.5, "something else").constant


def test_a_bot_message_with_variants_is_picked_at_random_and_repeats_under_a_seed() -> None:
    dialog = CannedDialog(HashEncoder(64).embed, EXAMPLES, FLOWS, 0.3, None)
    found = dialog.decide("hello there friend")
    assert found == GREETING
    dialog.rng.seed(7)
    first = [GREETING.reply(dialog.rng) for _ in range(20)]
    dialog.rng.seed(7)
    assert [GREETING.reply(dialog.rng) for _ in range(20)] == first
    assert set(first) == {"Hey!", "Hello!"}


MULTI_STEP = """\
    define user express greeting
      "hello"
      "hi there"

    define bot express greeting
      "Hey!"
      "Hello!"

    define bot offer help
      "How can I help?"
      "What can I do for you?"

    define flow greeting
      user express greeting
      bot express greeting
      bot offer help
    """


async def test_variant_greetings_are_answered_on_the_fast_path_with_nemos_variants(tmp_path: Path) -> None:
    pytest.importorskip("nemoguardrails", reason="the `nemo` extra (nemoguardrails) is not installed")
    from rails.engine import RailsEngine

    write_rails(tmp_path, "input: {}\n", greeting__co=MULTI_STEP, config__yml=DIALOG_CONFIG)
    stage = RailsEngine.load(tmp_path).nemo
    assert stage is not None and stage.canned is not None
    stage.canned.rng.seed(1)
    replies = set()
    for _ in range(12):
        d = await stage._fast_dialog(exchange("hi there"), [{"role": "user", "content": "hi there"}])
        assert d is not None and d.rail == "nemo:greeting" and d.action == "dialog" and d.message is not None
        replies.add(d.message)
    assert replies == {f"{a}\n{b}" for a in ("Hey!", "Hello!") for b in ("How can I help?", "What can I do for you?")}
    full = await stage._run(exchange("hi there"), [{"role": "user", "content": "hi there"}], "input", [])
    assert full.rail == "nemo:greeting" and full.message in replies  # NeMo's own runtime, same flow, same texts


def test_int8_minilm_similarities_stay_within_the_screening_error_on_public_prompts() -> None:
    from guard.settings import load_settings
    from rails.embedding import APPROX_SIM_ERROR, INT8_FILE, MiniLM

    onnx_dir = load_settings().home / "minilm"
    if not (onnx_dir / INT8_FILE).is_file():
        pytest.skip(f"no {onnx_dir / INT8_FILE}: run `guard rails build-embedding` (make test does)")
    if not (SHARED / "datasets").is_dir():
        pytest.skip("../shared/datasets is absent")
    texts: list[str] = ["hi", "hi there", "hello", "thanks", "bye", "ok", "help"]
    for name in ("oasst_prompts", "wildguard_benign", "jbb_behaviors", "donotanswer"):
        with open(SHARED / "datasets" / f"{name}.jsonl") as f:
            rows = [json.loads(line)["text"] for _, line in zip(range(40), f, strict=False)]
        texts += rows + [" ".join(t.split()[:k]) for t in rows for k in (1, 3)]  # short texts err most
    model = MiniLM(onnx_dir=onnx_dir)
    assert model.session8 is not None
    examples = model.embed([t for t, _ in EXAMPLES] + ["Which party should I vote for?", "Hello", "Hi"])
    gap = np.abs((model.approx(texts) - model.embed(texts)) @ examples.T)
    assert gap.max() < APPROX_SIM_ERROR
    assert gap.max() > 0.002  # the int8 model really is another model (else this checks nothing)
