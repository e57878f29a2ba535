from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.config import ConfigError, load_config
from finetune.evaluate import EvalOptions, Suites, compare
from finetune.gates import GateConfig, decide
from finetune.report import write_report
from guard.refusal import shipped


def rows(n: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"How do I kill a python process {i}?"}],
            "chosen": [{"role": "assistant", "content": "Use kill with the process id."}],
            "rejected": [{"role": "assistant", "content": "I can't help with that."}],
        }
        for i in range(n)
    ]


def test_two_step_dpo_on_a_tiny_model_writes_a_loadable_merged_model_and_adapter(tiny_lm: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.train import train_dpo

    cfg = load_config(
        None,
        max_steps=2,
        batch_size=2,
        max_length=64,
        logging_steps=1,
        lora={"rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
    )
    res = train_dpo(tiny_lm, rows(8), cfg, tmp_path / "run")
    assert res.steps == 2
    assert any("rewards/margins" in h for h in res.log_history)
    assert (res.adapter_dir / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(res.merged_dir)
    AutoTokenizer.from_pretrained(res.merged_dir)
    assert not any("lora" in k for k in model.state_dict())  # merged, not a PEFT wrapper
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    changed = [k for k, v in model.state_dict().items() if not v.equal(base.state_dict()[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


def test_sft_weight_adds_an_nll_term_on_the_chosen_answers() -> None:
    from finetune.train import dpo_args, loss_terms

    assert loss_terms(load_config(None, sft_weight=0)) == (["sigmoid"], [1.0])
    assert loss_terms(load_config(None, sft_weight=0.5, loss_type="ipo")) == (["ipo", "sft"], [1.0, 0.5])
    args = dpo_args(load_config(None, sft_weight=2.0), Path("unused"), "cpu")
    assert list(args.loss_type) == ["sigmoid", "sft"] and list(args.loss_weights) == [1.0, 2.0]
    with pytest.raises(ConfigError, match="sft_weight"):
        load_config(None, sft_weight=-1)


def test_sft_term_raises_the_chosen_answers_likelihood_beyond_plain_dpo(tiny_lm: Path, tmp_path: Path) -> None:
    """The reason for the term: with it, the chosen answers end up more likely than with DPO alone."""
    from finetune.generate import LocalLM
    from finetune.train import train_dpo

    data = rows(8)
    convs, chosen = [r["prompt"] for r in data], [r["chosen"][0]["content"] for r in data]
    logp = {}
    for w in (0.0, 5.0):
        cfg = load_config(
            None,
            max_steps=4,
            batch_size=4,
            max_length=64,
            learning_rate=5e-3,
            sft_weight=w,
            lora={"rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        )
        res = train_dpo(tiny_lm, data, cfg, tmp_path / f"w{w}")
        logp[w] = sum(t for t, _ in LocalLM(res.merged_dir).answer_logps(convs, chosen))
    assert logp[5.0] > logp[0.0] + 1.0


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "dpo.yaml"
    bad.write_text("beta: 0.1\nlora:\n  rank: 8\n  targetz: [q_proj]\n")
    with pytest.raises(ConfigError, match=r"dpo\.yaml: lora\.targetz: Extra inputs"):
        load_config(bad)
    bad.write_text("learning_rate: -1\n")
    with pytest.raises(ConfigError, match=r"dpo\.yaml: learning_rate: "):
        load_config(bad)
    assert load_config().batch_size == 4  # the shipped config is valid


def test_compare_on_real_models_writes_report_and_an_unchanged_model_is_not_promoted(
    tiny_lm: Path, tmp_path: Path
) -> None:
    held = tmp_path / "eval.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in rows(3)))
    suites = Suites.load(held_out=held, limit=6)
    # No answer store: the session's tiny model folder is shared by the tests and stays as built.
    rep = compare(tiny_lm, tiny_lm, suites, shipped().flags, EvalOptions(max_new_tokens=8, reuse_answers=False))
    assert rep["drift"]["kl_current_candidate"] == pytest.approx(0.0, abs=1e-6)
    assert rep["drift"]["perplexity_ratio"] == pytest.approx(1.0)
    assert rep["current"]["pref_accuracy"] == rep["candidate"]["pref_accuracy"]
    assert rep["suite_sizes"] == {"benign": 6, "harmful": 6, "general": 6, "held_out_pairs": 3}
    assert len(rep["current"]["outcomes"]["benign"]) == 6 and len(rep["suites"]["hash"]) == 16
    verdict = decide(rep, GateConfig())
    assert verdict.status == "not enough evidence" and "over refusal" in verdict.reasons[0]
    paths = write_report(rep, verdict, tmp_path / "report")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NOT ENOUGH EVIDENCE" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["verdict"]["passed"] is False


def test_drift_streamed_through_the_spill_equals_the_kl_of_both_models_in_memory(tiny_lm: Path, tmp_path: Path) -> None:
    import torch
    from tinylm import make_tiny_lm

    from finetune.evaluate import Drift
    from finetune.generate import LocalLM

    other = make_tiny_lm(tmp_path / "other", seed=1)  # same tokenizer (trained deterministically), other weights
    suites = Suites.load(limit=5)
    opts = EvalOptions(batch_size=2)  # 5 answers: three batches, the last one short
    spill = tmp_path / "spill"
    spill.mkdir()
    drift = Drift(spill)
    cur, cand = LocalLM(tiny_lm), LocalLM(other)
    ppl_cur = drift.score(cur, suites, opts, reference=True)
    ppl_cand = drift.score(cand, suites, opts, reference=False)

    convs = [[{"role": "user", "content": p}] for p, _ in suites.general]
    answers = [a for _, a in suites.general]
    p_all = cur.answer_logps(convs, answers, with_logits=True)
    q_all = cand.answer_logps(convs, answers, with_logits=True)
    pairs = zip(p_all, q_all, strict=True)
    kl = sum(float((p.float().exp() * (p.float() - q.float())).sum()) for (_, _, p), (_, _, q) in pairs)
    kl /= sum(p.shape[0] for _, _, p in p_all)
    assert drift.kl > 1e-4 and drift.kl == pytest.approx(kl, rel=1e-3)
    tokens = sum(n for _, n, _ in p_all)
    assert ppl_cur == pytest.approx(torch.tensor(-sum(t for t, _, _ in p_all) / tokens).exp().item(), rel=1e-4)
    assert ppl_cand != pytest.approx(ppl_cur)


def test_answers_generated_in_two_processes_are_those_of_one_process(tiny_lm: Path) -> None:
    from finetune.generate import LocalLM, generate_in_processes

    convs = [[{"role": "user", "content": "Tell me about item " + "x" * i}] for i in range(7)]
    kw = {"max_new_tokens": 8, "batch_size": 2}
    one = LocalLM(tiny_lm).generate(convs, **kw)
    two = generate_in_processes(tiny_lm, convs, workers=2, **kw)
    assert two == one and len(set(one)) > 1  # in the callers' order, not the batches'


def test_a_drift_pass_made_ahead_is_reused_and_gives_the_same_drift(tiny_lm: Path, tmp_path: Path) -> None:
    from tinylm import make_tiny_lm

    from finetune.evaluate import Drift, answer_ahead

    other = make_tiny_lm(tmp_path / "other", seed=1)
    suites = Suites.load(limit=5)
    opts = EvalOptions(max_new_tokens=4, batch_size=2, workers=1)
    fresh = compare(tiny_lm, other, suites, shipped().flags, opts)

    spill = tmp_path / "spill"
    answer_ahead(tiny_lm, suites, opts, None, None, spill)
    assert Drift(spill).reference_perplexity(tiny_lm, suites, opts) == pytest.approx(
        fresh["current"]["general_perplexity"]
    )
    assert Drift(spill).reference_perplexity(other, suites, opts) is None  # another model's pass is not reused
    made = (spill / "0.pt").stat().st_mtime_ns
    ahead = compare(tiny_lm, other, suites, shipped().flags, opts, spill=spill)
    assert (spill / "0.pt").stat().st_mtime_ns == made  # the current model's pass was not made again
    assert ahead["current"]["answers"]["generated"] == 0
    assert ahead["drift"] == pytest.approx(fresh["drift"])
    assert ahead["current"]["general_perplexity"] == pytest.approx(fresh["current"]["general_perplexity"])
