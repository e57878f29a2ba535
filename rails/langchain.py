"""A LangChain Runnable that runs our rails in-process around any chat model.

    guarded = GuardedChat(engine, ChatOpenAI(...), triage=stage)
    guarded.invoke("hello")            # -> AIMessage; blocked answers carry finish_reason=content_filter
    async for chunk in guarded.astream(messages): ...   # output rails in windows, as in the proxy
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

from guard.pipeline import Exchange, RailDecision
from guard.wire import ChatCompletionRequest, ChatMessage
from rails.engine import RailsEngine

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class GuardedChat(Runnable[Any, BaseMessage]):
    def __init__(self, engine: Any, model: Runnable[Any, BaseMessage], *, triage: Any | None = None,
                 tenant: str = "langchain", profile: str | None = None) -> None:
        self.engine: RailsEngine = engine  # a RailsEngine or a RailsHolder
        self.model, self.triage, self.tenant, self.profile = model, triage, tenant, profile

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        return asyncio.run(self.ainvoke(input, config, **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        ex = await self._screen(input)
        verdict = await self.engine.check_input(ex)
        if verdict.block is not None:
            return _blocked(verdict.block, verdict.decisions)
        reply = await self.model.ainvoke(_to_langchain(verdict.messages or ex.request.messages), config, **kwargs)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        out = await self.engine.check_output(ex, text)
        decisions = verdict.decisions + out.decisions
        if out.block is not None:
            return _blocked(out.block, decisions)
        final = (out.text if out.text is not None else text) + (verdict.disclaimer or "")
        return AIMessage(content=final, response_metadata={"finish_reason": "stop", "guard": _meta(decisions, ex)})

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[BaseMessage]:
        async def collect() -> list[BaseMessage]:
            return [chunk async for chunk in self.astream(input, config, **kwargs)]

        yield from asyncio.run(collect())

    async def astream(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[BaseMessage]:
        ex = await self._screen(input)
        verdict = await self.engine.check_input(ex)
        if verdict.block is not None:
            yield _blocked(verdict.block, verdict.decisions, chunk=True)
            return
        guard = self.engine.stream_guard(ex)
        async for piece in self.model.astream(_to_langchain(verdict.messages or ex.request.messages), config,
                                              **kwargs):
            step = await guard.feed(piece.content if isinstance(piece.content, str) else str(piece.content))
            if step.release:
                yield AIMessageChunk(content=step.release)
            if step.block is not None:
                yield _blocked(step.block, step.decisions, chunk=True)
                return
        step = await guard.finish()
        if step.block is not None:
            yield _blocked(step.block, step.decisions, chunk=True)
            return
        tail = step.release + (verdict.disclaimer or "")
        yield AIMessageChunk(content=tail, response_metadata={"finish_reason": "stop"})

    async def _screen(self, input: Any) -> Exchange:
        messages = _to_wire(input)
        ex = Exchange(id=uuid.uuid4().hex, tenant=self.tenant, profile=self.profile,
                      request=ChatCompletionRequest(model="langchain", messages=messages))
        if self.triage is not None:
            ex.triage = await self.triage.classify(ex) if hasattr(self.triage, "classify") else \
                await self.triage.score_text(messages[-1].text)
        return ex


def _to_wire(input: Any) -> list[ChatMessage]:
    if isinstance(input, str):
        return [ChatMessage(role="user", content=input)]
    if isinstance(input, PromptValue):
        input = input.to_messages()
    return [ChatMessage(role=_ROLES.get(m.type, "user"), content=m.content if isinstance(m.content, str)
                        else str(m.content)) for m in input]


def _to_langchain(messages: list[ChatMessage]) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "assistant": AIMessage}
    return [kinds.get(m.role, HumanMessage)(content=m.text) for m in messages]


def _meta(decisions: list[RailDecision], ex: Exchange | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"decisions": [(d.rail, d.stage, d.result, d.mode) for d in decisions]}
    if ex is not None:
        out["flags"] = sorted(ex.flags)
    return out


def _blocked(decision: RailDecision, decisions: list[RailDecision], chunk: bool = False) -> BaseMessage:
    cls = AIMessageChunk if chunk else AIMessage
    return cls(content=decision.message or "I'm sorry, but I can't help with that.",
               response_metadata={"finish_reason": "content_filter", "guard": _meta(decisions)})
