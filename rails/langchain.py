"""A LangChain Runnable that runs the proxy's own pipeline in-process around any chat model.

    guarded = GuardedChat(engine, ChatOpenAI(...), triage=stage)
    guarded.invoke("hello")            # -> AIMessage; blocked answers carry finish_reason=content_filter
    async for chunk in guarded.astream(messages): ...   # output rails in windows, as in the proxy

The LangChain model is the pipeline's chat model (`_LangChainModel`): triage, input rails, output rails (text
and tool calls) and flags are exactly the proxy's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

from guard.domain import BLOCKED, Answer, Message, ModelReply, StreamEvent, ToolCall, Verbatim
from guard.pipeline import Completed, Exchange, Pipeline, RailDecision, Streamed, screener
from guard.wire import ChatCompletionRequest

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class GuardedChat(Runnable[Any, BaseMessage]):
    def __init__(
        self,
        engine: Any,
        model: Runnable[Any, BaseMessage],
        *,
        triage: Any | None = None,
        tenant: str = "langchain",
        profile: str | None = None,
    ) -> None:
        self.engine = engine  # a RailsEngine or a RailsHolder
        self.model, self.triage, self.tenant, self.profile = model, triage, tenant, profile

    def _pipeline(self) -> Pipeline:
        return screener(self.triage, self.engine)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        return asyncio.run(self.ainvoke(input, config, **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        ex = Exchange.of(_to_domain(input), tenant=self.tenant, profile=self.profile)
        model = _LangChainModel(self.model, ex.messages, config, kwargs)
        done = await self._pipeline().handle(ex, model)
        assert isinstance(done, Completed)
        answer = done.answers[0]
        meta = {"finish_reason": answer.finish_reason, "guard": _meta(ex.decisions, ex)}
        if answer.blocked or model.reply is None:
            return AIMessage(content=answer.text, response_metadata=meta)
        return AIMessage(content=answer.text, tool_calls=model.reply.tool_calls, response_metadata=meta)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[BaseMessage]:
        async def collect() -> list[BaseMessage]:
            return [chunk async for chunk in self.astream(input, config, **kwargs)]

        yield from asyncio.run(collect())

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        ex = Exchange.of(_to_domain(input), tenant=self.tenant, profile=self.profile, stream=True)
        streamed = await self._pipeline().handle(ex, _LangChainModel(self.model, ex.messages, config, kwargs))
        assert isinstance(streamed, Streamed)
        async for delta in streamed:
            if isinstance(delta, Verbatim) or delta.index != 0:
                continue  # (a LangChain model has no wire bytes to relay)
            meta: dict[str, Any] = {}
            if delta.finish_reason is not None:
                meta = {"finish_reason": delta.finish_reason}
                if delta.finish_reason == BLOCKED:
                    meta["guard"] = _meta(ex.decisions)
            if delta.text or meta:
                yield AIMessageChunk(content=delta.text, response_metadata=meta)


class _LangChainModel:
    """A LangChain chat model as the pipeline's `ChatModel`."""

    name = "langchain"
    version = None

    def __init__(
        self,
        model: Runnable[Any, BaseMessage],
        messages: list[Message],
        config: RunnableConfig | None,
        kwargs: dict[str, Any],
    ) -> None:
        self.model, self.messages, self.config, self.kwargs = model, messages, config, kwargs
        self.reply: AIMessage | None = None

    async def complete(self, request: ChatCompletionRequest | None, messages: list[Message] | None) -> ModelReply:
        reply = await self.model.ainvoke(_to_langchain(messages or self.messages), self.config, **self.kwargs)
        self.reply = reply if isinstance(reply, AIMessage) else None
        calls = tuple(ToolCall(c["name"], json.dumps(c["args"]), c.get("id")) for c in getattr(reply, "tool_calls", []))
        finish = "tool_calls" if calls else "stop"
        return ModelReply([Answer(text=_text(reply.content), tool_calls=calls, finish_reason=finish)])

    async def stream(
        self, request: ChatCompletionRequest | None, messages: list[Message] | None
    ) -> AsyncIterator[StreamEvent]:
        async for piece in self.model.astream(_to_langchain(messages or self.messages), self.config, **self.kwargs):
            yield StreamEvent.of_text(_text(piece.content))
        yield StreamEvent.of_text(finish_reason="stop")


def _text(content: Any) -> str:
    return content if isinstance(content, str) else str(content)


def _to_domain(input: Any) -> list[Message]:
    if isinstance(input, str):
        return [Message.user(input)]
    if isinstance(input, PromptValue):
        input = input.to_messages()
    return [Message(_ROLES.get(m.type, "user"), _text(m.content)) for m in input]


def _to_langchain(messages: list[Message]) -> list[BaseMessage]:
    kinds: dict[str, type[BaseMessage]] = {"system": SystemMessage, "assistant": AIMessage}
    return [kinds.get(m.role, HumanMessage)(content=m.text) for m in messages]


def _meta(decisions: list[RailDecision], ex: Exchange | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"decisions": [(d.rail, d.stage, d.result, d.mode) for d in decisions]}
    if ex is not None:
        out["flags"] = sorted(ex.flags)
    return out
