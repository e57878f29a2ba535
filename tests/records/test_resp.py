"""The lean Redis connection of the request path (`guard.resp`), against the real Redis on 127.0.0.1 and a
server that never answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aredis
from support.localredis import REDIS_URL, needs_redis

from guard.resp import Connection, ReplyError, _Protocol


async def test_replies_of_every_kind_are_parsed_even_when_they_arrive_a_byte_at_a_time() -> None:
    wire = b"+OK\r\n:-5\r\n$-1\r\n$5\r\na\r\nb!\r\n*2\r\n*1\r\n:1\r\n-ERR bad\r\n*-1\r\n*0\r\n"
    proto = _Protocol()
    future = asyncio.get_running_loop().create_future()
    proto.waiting.append((6, [], future))
    for i in range(len(wire)):
        proto.data_received(wire[i : i + 1])
    ok, minus_five, null, text, nested, null_array = await future
    assert (ok, minus_five, null, text, null_array) == (b"OK", -5, None, b"a\r\nb!", None)
    assert nested[0] == [1] and isinstance(nested[1], ReplyError) and str(nested[1]) == "ERR bad"
    second = asyncio.get_running_loop().create_future()
    proto.waiting.append((1, [], second))
    proto.data_received(b"")  # the rest of the stream is still buffered
    assert await second == [[]]


@needs_redis
async def test_a_pipeline_goes_to_the_urls_database_and_error_replies_take_their_commands_place() -> None:
    key = f"guard:test:{uuid.uuid4().hex}"
    conn = Connection(REDIS_URL)
    replies = await conn.execute([("SET", key, "x"), ("INCR", key), ("GET", key), ("EXPIRE", key, 60)])
    assert replies[0] == b"OK" and isinstance(replies[1], ReplyError) and replies[2:] == [b"x", 1]
    client = aredis.Redis.from_url(REDIS_URL)  # database 5, as the URL says
    assert await client.get(key) == b"x"
    await client.aclose()
    await conn.aclose()


@needs_redis
async def test_a_refused_password_is_a_connection_error_naming_what_redis_said() -> None:
    conn = Connection("redis://:wrong-password@127.0.0.1:6379/5")
    with pytest.raises(ConnectionError, match=r"Redis refused the connection: .*AUTH"):
        await conn.execute([("PING",)])


async def test_a_server_that_never_answers_times_out_and_the_next_call_connects_again() -> None:
    accepted = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read()  # reads, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = Connection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
    for _ in range(2):
        with pytest.raises(TimeoutError, match=r"did not answer in 0\.2 s"):
            await conn.execute([("PING",)])
    assert accepted == 2
    await conn.aclose()
    server.close()
