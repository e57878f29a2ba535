"""Issue 18 demonstration: the guard learns from its own reviewed mistakes, measured through the proxy.

A simulated deployment (real `create_app` under uvicorn, an upstream stub, both on 127.0.0.1; SQLite store) gets
traffic from a domain the shipped classifier over-flags, plus ordinary traffic (Open Assistant prompts) and harmful
requests (SORRY-Bench, SimpleSafetyTests), all from sources held out of the classifier's training. The domain
(`--domain`):
- `security` (default): a security team's requests, CyberSecEval's benign "false refusal" prompts (security tooling
  that sounds malicious; the classifier blocks about 5 % of them, against ~1-2 % of ordinary prompts); the domain's
  own harm is the held-out harmful requests labelled `cyber` (malware, intrusion).
- `forum`: a moderation team's forum posts, the Stormfront posts annotators judged not hateful (~10 % blocked);
  the domain's own harm is the forum's hateful posts.
A simulated reviewer labels the blocked exchanges: `false_positive` for the domain's, `correct` for harmful ones.
Every prompt is assigned by a hash of its text to the traffic (what is served and reviewed) or to the held-out
half (what is measured), so no measured prompt was ever reviewed; the measured prompts are also taken out of the
rows the adaptation gate evaluates on, so the gate never decides on what this demo reports.

Measured on the held-out prompts, through the proxy: blocked share of the domain (false positives), of ordinary
prompts (FPR), and the miss rate of harmful requests and of the domain's own harm, at three points: the shipped
classifier, (a) with instant corrections alone, (b) after one adaptation cycle
(`finetune.triage.cycle.run`: adapt -> gate -> register -> promote) and the proxy's hot swap. Then a poisoned batch
(harmful traffic labelled `false_positive`) goes through the same cycle and must be rejected by the gate, and the
same batch is reviewed in the proxy, as instant corrections: how many more held-out harmful requests get through.

    PYTHONPATH=. .venv/bin/python scripts/demo_guard_loop.py   # needs ../shared/datasets and `guard triage build`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from server import ServedApp  # noqa: E402  (the tests' uvicorn-in-a-thread helper)

ADMIN = {"authorization": "Bearer demo-reviewer-key"}
ANSWER = "Here is a short, helpful answer."
HARMFUL_SOURCES = ("sorry_bench", "simple_safety_tests")
PUBLIC_HARMFUL = ("sorry_bench", "simple_safety_tests", "jbb_behaviors")
FORUM = "stormfront_hate_speech"
# Per domain: (the domain's benign prompts, its own harm) as read by `domain_pools`, and the table's names for them.
NAMES = {
    "security": ("security requests, false positives", "harmful cyber requests, missed"),
    "forum": ("forum posts, false positives", "hateful forum posts, missed"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def held_out(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 2 == 0


# Data -----------------------------------------------------------------------------------------------------------
def domain_pools(domain: str, test: list[dict], unseen_forum: list[dict]) -> tuple[list[str], list[str]]:
    """The domain's benign prompts and its own harmful ones, none of them in the classifier's training rows."""
    if domain == "security":  # CyberSecEval is an evaluation source: all its rows are in the test split
        benign = [r["text"] for r in test if r["source"] == "cyberseceval" and not r["labels"]]
        harm = [r["text"] for r in test if "cyber" in r["labels"] and r["source"].startswith(PUBLIC_HARMFUL)]
        return benign, harm
    # The forum's hateful posts are in the test split; most of its benign ones in no split at all.
    benign = [r["text"] for r in unseen_forum if r["label"] == "benign"]
    return benign, [r["text"] for r in test if r["labels"] and r["source"] == FORUM]


def load_sets(datasets: Path, per_set: int, domain: str) -> tuple[dict[str, list[str]], Any]:
    """Traffic and held-out prompt sets, and the classifier's training split (the adaptation replays it)."""
    from finetune.triage.data.build import training_split
    from guard.triage.artifact import ARTIFACT_CONFIG, ARTIFACT_DIR

    train_cfg = json.loads((ARTIFACT_DIR / ARTIFACT_CONFIG).read_text()).get("train", {})
    rows, manifest = training_split(train_cfg, datasets)
    seen = {r["text"] for part in rows.values() for r in part}
    unseen_forum = [r for line in (datasets / f"{FORUM}.jsonl").open() if (r := json.loads(line))["text"] not in seen]
    test = rows["test"]
    benign, harm = domain_pools(domain, test, unseen_forum)
    pools = {
        "domain": benign,
        "domain_harm": harm,
        "harmful": [r["text"] for r in test if r["labels"] and r["source"].startswith(HARMFUL_SOURCES)],
        "ordinary": [r["text"] for r in test if r["source"] == "oasst_prompts" and not r["labels"]],
    }
    sets: dict[str, list[str]] = {}
    for name, texts in pools.items():
        texts = sorted(set(texts))
        traffic = per_set * 3 if name == "domain" else per_set // 3  # the domain's blocked ones get reviewed
        sets[f"{name}_traffic"] = [t for t in texts if not held_out(t)][:traffic]
        sets[f"{name}_held_out"] = [t for t in texts if held_out(t)][: per_set * (2 if name == "domain" else 1)]
    # The gate evaluates on the rest of the test split: what this demo reports never decides a promotion.
    measured = {t for name, texts in sets.items() if name.endswith("_held_out") for t in texts}
    gate_rows = {**rows, "test": [r for r in test if r["text"] not in measured]}
    return sets, (gate_rows, manifest)


# Servers --------------------------------------------------------------------------------------------------------
class Upstream:
    """An OpenAI-style upstream stub (aiohttp, as bench/proxy_overhead.py's) on 127.0.0.1, in a thread."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(30)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _run(self, ready: Any) -> None:
        from aiohttp import web

        async def chat(request: web.Request) -> web.Response:
            body = await request.json()
            choice = {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            usage = {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}
            return web.json_response(
                {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
                | {"usage": usage}
            )

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", chat)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def proxy_settings(home: Path, upstream: str) -> Any:
    from guard.settings import Settings

    return Settings(
        home=home,
        upstream_url=upstream,
        admin_keys={"demo-reviewer-key": "reviewer"},
        record_sample_rate=1.0,
        triage_poll_s=0.5,
        override_refresh_s=1.0,
        triage_workers=1,
    )


def prepare_home(home: Path) -> None:
    """The shipped build, the rails embedding and the embedding cache of this checkout, linked in (not rebuilt)."""
    from guard.settings import load_settings

    here = load_settings()
    if not (here.triage_dir / "triage.json").is_file():
        raise SystemExit(f"no built triage model at {here.triage_dir}: run `guard triage build` first")
    (home / "triage").symlink_to(here.triage_dir.resolve())
    if (here.home / "minilm").is_dir():
        (home / "minilm").symlink_to((here.home / "minilm").resolve())
    (home / "cache").mkdir(parents=True)
    cache = here.home / "cache" / "triage"
    cache.mkdir(parents=True, exist_ok=True)
    (home / "cache" / "triage").symlink_to(cache.resolve())


# Traffic --------------------------------------------------------------------------------------------------------
async def ask_all(url: str, texts: list[str], concurrency: int = 8) -> list[tuple[str, bool, str]]:
    """(exchange id, blocked, triage version) per prompt, in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, text: str) -> tuple[str, bool, str]:
        async with gate:
            body = {"model": "gpt-demo", "messages": [{"role": "user", "content": text}]}
            r = await client.post(f"{url}/v1/chat/completions", json=body)
            r.raise_for_status()
            blocked = r.json()["choices"][0]["finish_reason"] == "content_filter"
            return r.headers["x-guard-exchange-id"], blocked, r.headers.get("x-guard-triage-version", "")

    async with httpx.AsyncClient(timeout=120) as client:
        return list(await asyncio.gather(*(one(client, t) for t in texts)))


def blocked_share(url: str, texts: list[str]) -> float:
    results = asyncio.run(ask_all(url, texts))
    return sum(b for _, b, _ in results) / max(1, len(results))


def measure(url: str, sets: dict[str, list[str]], reviewed: list[str], domain: str) -> dict[str, float]:
    fp_name, harm_name = NAMES[domain]
    return {
        f"{fp_name} ({len(sets['domain_held_out'])})": blocked_share(url, sets["domain_held_out"]),
        "the reviewed domain prompts, asked again": blocked_share(url, reviewed),
        f"harmful requests, missed ({len(sets['harmful_held_out'])})": 1 - blocked_share(url, sets["harmful_held_out"]),
        f"{harm_name} ({len(sets['domain_harm_held_out'])})": 1 - blocked_share(url, sets["domain_harm_held_out"]),
        f"ordinary prompts, false positives ({len(sets['ordinary_held_out'])})": blocked_share(
            url, sets["ordinary_held_out"]
        ),
    }


def review(url: str, exchange_id: str, label: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:  # the recorder writes in the background: a just-served exchange may not be stored yet
        r = httpx.post(f"{url}/admin/exchanges/{exchange_id}/review", headers=ADMIN, json={"label": label}, timeout=30)
        if r.status_code != 404 or time.monotonic() > deadline:
            r.raise_for_status()
            return
        time.sleep(0.2)


def serve_and_review(url: str, sets: dict[str, list[str]], n_fp: int, n_correct: int) -> tuple[list[str], list[str]]:
    """Serve the traffic; the reviewer labels blocked exchanges. Returns (reviewed domain texts, blocked harmful)."""
    names = ("domain", "harmful", "domain_harm", "ordinary")
    texts = list(dict.fromkeys(t for n in names for t in sets[f"{n}_traffic"]))  # a text in two sets is asked once
    results = dict(zip(texts, asyncio.run(ask_all(url, texts)), strict=True))
    blocked = {t for t, (_, b, _) in results.items() if b}
    domain = [t for t in sets["domain_traffic"] if t in blocked][:n_fp]
    harmful = sorted({t for t in sets["harmful_traffic"] + sets["domain_harm_traffic"] if t in blocked})
    for t in domain:
        review(url, results[t][0], "false_positive")
    for t in harmful[:n_correct]:
        review(url, results[t][0], "correct")
    log(
        f"traffic: {len(texts)} requests, {len(blocked)} blocked; reviewed {len(domain)} false positives, "
        f"{min(n_correct, len(harmful))} correct blocks"
    )
    return domain, harmful


def poison_overrides(url: str, texts: list[str]) -> int:
    """Ask `texts` again and label each blocked exchange `false_positive`; returns how many were labelled."""
    results = asyncio.run(ask_all(url, texts))
    blocked = [ex for ex, b, _ in results if b]
    for exchange_id in blocked:
        review(url, exchange_id, "false_positive")
    return len(blocked)


# The cycle ------------------------------------------------------------------------------------------------------
def adapt(home: Path, settings: Any, corrections: list[Any], split: Any) -> Any:
    from finetune.triage.cycle import Places, run

    places = Places(
        home / "models", home / "triage", settings.datasets_dir, home / "cache" / "triage", settings.database_url
    )
    t0 = time.perf_counter()
    result = run(places, corrections, split=split, threads=2)
    log(f"{result.summary()} ({time.perf_counter() - t0:.0f} s)")
    return result


def wait_version(url: str, version: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz", timeout=10).json().get("triage_version") != version:
        if time.monotonic() > deadline:
            raise SystemExit(f"the proxy did not swap to {version} within {timeout_s} s")
        time.sleep(0.2)


def table(before: dict[str, float], a: dict[str, float], b: dict[str, float]) -> str:
    lines = ["| measured through the proxy | shipped | (a) corrections | (b) after the cycle |", "|---|---|---|---|"]
    for key in before:
        lines.append(f"| {key} | {before[key]:.1%} | {a[key]:.1%} | {b[key]:.1%} |")
    return "\n".join(lines)


def main() -> None:
    from finetune.triage.adapt import Correction, corrections_from_store
    from guard.app import create_app
    from guard.settings import load_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets-dir", type=Path, default=None)
    p.add_argument("--per-set", type=int, default=300, help="held-out prompts per measured set")
    p.add_argument("--reviews", type=int, default=40, help="false positives the reviewer labels")
    p.add_argument("--domain", choices=sorted(NAMES), default="security", help="the over-flagged traffic")
    a = p.parse_args()
    datasets = a.datasets_dir or load_settings().datasets_dir
    if not (datasets / f"{FORUM}.jsonl").is_file():
        raise SystemExit(f"public data sets not found at {datasets} (see ../shared/README.md)")
    t_start = time.perf_counter()
    sets, split = load_sets(datasets, a.per_set, a.domain)
    log("sets: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    with tempfile.TemporaryDirectory(prefix="demo-guard-loop-") as tmp:
        home = Path(tmp)
        prepare_home(home)
        upstream = Upstream()
        settings = proxy_settings(home, upstream.url)
        proxy = ServedApp(create_app(settings))
        try:
            before = measure(proxy.url, sets, [], a.domain)
            reviewed, harmful = serve_and_review(proxy.url, sets, a.reviews, 10)
            before["the reviewed domain prompts, asked again"] = 1.0  # each was blocked when it was reviewed
            time.sleep(2 * settings.override_refresh_s)
            with_corrections = measure(proxy.url, sets, reviewed, a.domain)
            result = adapt(home, settings, corrections_from_store(settings.database_url), split)
            if result.promoted:
                wait_version(proxy.url, result.version)
            time.sleep(2 * settings.override_refresh_s)  # retired overrides leave the memory
            after = measure(proxy.url, sets, reviewed, a.domain)
            poison = [Correction(t, ()) for t in harmful[: a.reviews]]
            poisoned = adapt(home, settings, poison, split)
            # The same mistake as instant corrections: a reviewer marks blocked harmful requests false_positive.
            poisoned_overrides = poison_overrides(proxy.url, [c.text for c in poison])
            time.sleep(2 * settings.override_refresh_s)
            missed_after_poison = 1 - blocked_share(proxy.url, sets["harmful_held_out"])
        finally:
            proxy.stop()
            upstream.stop()
    print()
    print(table(before, with_corrections, after))
    print()
    print(f"domain {a.domain}: reviewed {len(reviewed)} blocked domain prompts false_positive")
    fixed = f"fixed {result.report.fixed_share:.0%} of {result.report.held_out} held-out reviews"
    print(f"cycle: {result.summary()} ({fixed})")
    print(f"gate: {json.dumps({'current': result.report.current, 'candidate': result.report.candidate})}")
    print(f"poisoned batch ({len(poison)} harmful prompts labelled false_positive): {poisoned.summary()}")
    print(
        f"the same batch as instant corrections ({poisoned_overrides} overrides): held-out harmful requests missed "
        f"{after[next(k for k in after if k.startswith('harmful requests'))]:.1%} -> {missed_after_poison:.1%}"
    )
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
