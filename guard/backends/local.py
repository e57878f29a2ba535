"""A local transformers causal LM as the model, served from the model store's `current` version.

torch and transformers are imported here only, and this module is imported only when no upstream URL
is configured. Generation runs on one worker thread (the CPU is the bottleneck; parallel generate
calls would only thrash it). A promoted version is picked up without a restart: the `current` pointer
is checked at most once a second, the new weights load in the background, and requests already
running finish on the weights they started with.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from guard.domain import Message
from guard.errors import InvalidRequest, NotReady
from guard.modelstore import ModelStore, ModelVersion
from guard.pipeline import ModelReply, StreamEvent
from guard.wire import ChatCompletionRequest, Usage, messages_from_wire

if TYPE_CHECKING:  # torch and transformers are imported only when the local model is in use
    import torch
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer


@dataclass(frozen=True)
class Loaded:
    version: ModelVersion
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def load_version(mv: ModelVersion, threads: int) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(mv.path)
    model = AutoModelForCausalLM.from_pretrained(mv.path, dtype=torch.float32)
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return Loaded(mv, model, tok)


class _Cancelled:
    """A transformers StoppingCriteria that stops generation when the client went away."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> bool:
        return self.event.is_set()


class LocalModel:
    def __init__(
        self, store: ModelStore, name: str, *, max_new_tokens: int = 256, threads: int = 1, poll_interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.threads = threads
        self.poll_interval_s = poll_interval_s
        self._loaded: Loaded | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._pointer = store.root / name / "current"
        self._pointer_mtime = 0.0
        self._next_check = 0.0
        self._swap: asyncio.Future[Loaded] | None = None

    @property
    def version(self) -> str | None:
        return self._loaded.version.version if self._loaded else None

    async def start(self) -> None:
        mv = self.store.current(self.name)
        if mv is None:
            raise NotReady(f"no local model {self.name!r} under {self.store.root}: run `guard models prepare`")
        self._pointer_mtime = self._pointer.stat().st_mtime
        self._loaded = await asyncio.get_running_loop().run_in_executor(self._loader, load_version, mv, self.threads)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loader.shutdown(wait=False, cancel_futures=True)

    def _current(self) -> Loaded:
        """The weights for a new request; schedules a background reload when the pointer moved."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.poll_interval_s
            self._maybe_reload()
        if self._swap is not None and self._swap.done():
            if self._swap.exception() is None:
                self._loaded = self._swap.result()
            self._swap = None
        if self._loaded is None:
            raise NotReady("local model is not loaded")
        return self._loaded

    def _maybe_reload(self) -> None:
        try:
            mtime = os.stat(self._pointer).st_mtime
        except OSError:
            return
        if mtime == self._pointer_mtime or self._swap is not None:
            return
        self._pointer_mtime = mtime
        mv = self.store.current(self.name)
        if mv is None or (self._loaded and mv.version == self._loaded.version.version):
            return
        loop = asyncio.get_running_loop()
        self._swap = asyncio.ensure_future(loop.run_in_executor(self._loader, load_version, mv, self.threads))

    async def wait_for_swap(self) -> None:
        """Tests and admin tools: finish a pending reload now."""
        self._next_check = 0.0
        self._current()
        if self._swap is not None:
            await self._swap
            self._current()

    # Generation ----------------------------------------------------------------------------------

    def _inputs(self, lm: Loaded, messages: list[Message]) -> BatchEncoding:
        chat = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text}
            for m in messages
            if m.role in ("system", "developer", "user", "assistant")
        ]
        return lm.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def _token_limit(self, request: ChatCompletionRequest) -> int:
        return min(request.token_limit or self.max_new_tokens, self.max_new_tokens)

    def _gen_kwargs(self, lm: Loaded, request: ChatCompletionRequest, stop: _Cancelled) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "max_new_tokens": self._token_limit(request),
            "pad_token_id": lm.tokenizer.pad_token_id,
            "stopping_criteria": [stop],
        }
        # Greedy unless the client asks for sampling: small local models ramble at temperature 1.
        if request.temperature:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p or 1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _generate(
        self,
        lm: Loaded,
        request: ChatCompletionRequest | None,
        messages: list[Message] | None,
        stop: _Cancelled,
        streamer: TextIteratorStreamer | None = None,
    ) -> ModelReply:
        import torch

        if request is None:
            raise InvalidRequest("the local model needs the client's request (its sampling parameters)")
        if messages is None:
            messages = messages_from_wire(request.messages)
        try:
            if request.seed is not None:
                torch.manual_seed(request.seed)
            inputs = self._inputs(lm, messages)
            kwargs = self._gen_kwargs(lm, request, stop)
            with torch.inference_mode():
                out = lm.model.generate(**inputs, streamer=streamer, **kwargs)
        except BaseException:
            if streamer is not None:
                streamer.end()  # wake the reader, which would otherwise wait for the streamer's timeout
            raise
        prompt_len = inputs["input_ids"].shape[1]
        new = out[0, prompt_len:]
        text = lm.tokenizer.decode(new, skip_special_tokens=True)
        hit_eos = len(new) > 0 and int(new[-1]) in _eos_ids(lm)
        finish = "stop" if hit_eos or len(new) < self._token_limit(request) else "length"
        usage = Usage(prompt_tokens=prompt_len, completion_tokens=len(new), total_tokens=prompt_len + len(new))
        return ModelReply.of_text(text.strip(), finish, usage)

    def pin(self) -> PinnedModel:
        """The model for one request: the weights current now, kept even if a new version is promoted."""
        return PinnedModel(self, self._current())

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return await self._complete(self._current(), request, messages)

    def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        return self._stream(self._current(), request, messages)

    async def _complete(
        self, lm: Loaded, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> ModelReply:
        stop = _Cancelled()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._generate, lm, request, messages, stop, None)
        finally:
            stop.event.set()

    async def _stream(
        self, lm: Loaded, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        from transformers import TextIteratorStreamer

        stop = _Cancelled()
        streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._pool, self._generate, lm, request, messages, stop, streamer)
        pieces = iter(streamer)
        try:
            while True:
                piece = await loop.run_in_executor(None, next, pieces, None)
                if piece is None:
                    break
                if piece:
                    yield StreamEvent.of_text(piece)
            reply = await job
            yield StreamEvent.of_text(finish_reason=reply.finish_reason, usage=reply.usage)
        finally:
            stop.event.set()  # client gone or done: let the worker thread stop generating


class PinnedModel:
    """One request's view of the local model, so the recorded version is the one whose weights answered."""

    def __init__(self, owner: LocalModel, loaded: Loaded) -> None:
        self.name = owner.name
        self._owner = owner
        self._loaded = loaded

    @property
    def version(self) -> str | None:
        return self._loaded.version.version

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        return await self._owner._complete(self._loaded, request, messages)

    def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        return self._owner._stream(self._loaded, request, messages)


def _eos_ids(lm: Loaded) -> set[int]:
    ids = lm.model.generation_config.eos_token_id
    if ids is None:
        ids = lm.tokenizer.eos_token_id
    return set(ids) if isinstance(ids, list) else {ids}
