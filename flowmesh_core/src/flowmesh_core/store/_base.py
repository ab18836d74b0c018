"""The connection, key space, Lua scripts and error conversion every store part shares.

Errors from redis-py are converted here into StoreUnavailableError; callers never see a
redis exception. The store holds no state of its own: everything it knows is in Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from hashlib import sha1
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.exceptions import NoScriptError

from flowmesh_core.errors import FlowMeshError, StoreUnavailableError
from flowmesh_core.store._lua import SCRIPTS, script_source
from flowmesh_core.store.connection import embedded_server, is_embedded
from flowmesh_core.store.keys import KeySpace

__all__ = ["StoreBase", "redact", "strings"]

ScriptCall = tuple[str, Sequence[str], Sequence[Any]]
"""One script call: (script name, keys, args)."""


def strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as ``dict[str, str]`` (clients decode responses; this narrows types)."""
    return {str(k): str(v) for k, v in raw.items()}


def _sha1(source: str) -> str:
    return sha1(source.encode(), usedforsecurity=False).hexdigest()


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class StoreBase:
    """What every part of the store builds on."""

    def __init__(
        self, client: aioredis.Redis, keys: KeySpace, url: str, state_dir: Path | None = None
    ) -> None:
        self._redis = client
        self.keys = keys
        self.url = url
        self.state_dir = state_dir
        self.shown_url = redact(url)
        self._sources = {name: script_source(name, keys) for name in SCRIPTS}
        self._shas = {name: _sha1(source) for name, source in self._sources.items()}

    @property
    def embedded(self) -> bool:
        """Whether this store is the embedded server FlowMesh starts by itself."""
        return is_embedded(self.url)

    @property
    def redis(self) -> aioredis.Redis:
        """The client, for stream reads that block (workers, the applier)."""
        return self._redis

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Convert redis-py errors raised inside into StoreUnavailableError."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if self.embedded:
                raise self._restart_embedded(exc) from exc
            raise StoreUnavailableError(
                f"Redis at {self.shown_url} does not answer ({exc}); start it, or point "
                "FLOWMESH_REDIS_URL at one that runs (memory:// for the embedded store)"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailableError(
                f"Redis at {self.shown_url} refused a command: {exc}"
            ) from exc

    def _restart_embedded(self, exc: Exception) -> StoreUnavailableError:
        """The embedded server stopped under us (killed, crashed): start it again from its
        data, and say so. The caller's command did not run; the next one will."""
        server = embedded_server(self.url, self.state_dir)
        try:
            server.ensure()
        except FlowMeshError as failed:
            return StoreUnavailableError(
                f"the embedded store stopped ({exc}) and could not be restarted: {failed}"
            )
        return StoreUnavailableError(
            f"the embedded store had stopped ({exc}); it was restarted from its data in "
            f"{server.dir}; retry"
        )

    async def run_script(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of FlowMesh's Lua scripts (one round trip)."""
        (reply,) = await self.run_scripts([(script, keys, args)])
        return reply

    async def run_scripts(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run many script calls in one round trip, in order; their replies.

        Each call is atomic on its own (calls of other clients may come in between).
        Scripts run by hash; a server that does not know one (restarted, or its script
        cache flushed) answers NOSCRIPT for that call alone, which therefore did
        nothing: the scripts are loaded and exactly those calls sent again.
        """
        if not calls:
            return []
        replies = await self._evalsha_all(calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            await self.load_scripts()
            again = await self._evalsha_all([calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                async with self.guard():
                    raise reply
        return replies

    async def _evalsha_all(self, calls: Sequence[ScriptCall]) -> list[Any]:
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(self._shas[script], len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def create_group(self, stream: str, group: str) -> bool:
        """Create ``group`` on ``stream`` (and the stream) unless it exists, in one step;
        True if it was created now (where one existed before, Redis lost its data)."""
        return bool(await self.run_script("ensure_group", [stream], [group]))

    async def load_scripts(self) -> None:
        """Load every FlowMesh script into the server's script cache."""
        async with self.guard(), self._redis.pipeline(transaction=False) as pipe:
            for source in self._sources.values():
                pipe.script_load(source)
            await pipe.execute()

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers."""
        async with self.guard():
            await self._redis.ping()

    async def server_version(self) -> str:
        """The Redis server's version, or what the embedded store is."""
        async with self.guard():
            info: dict[str, Any] = await self._redis.info("server")
        version = str(info.get("valkey_version") or info.get("redis_version", "unknown"))
        if self.embedded:
            server = embedded_server(self.url, self.state_dir)
            return f"embedded (Valkey {version}, data in {server.data_dir})"
        return version

    async def check_capabilities(self) -> None:
        """Raise StoreUnavailableError unless this Redis runs our scripts and streams.

        Compiles every FlowMesh Lua script on the server and exercises the stream
        commands that assignments need (consumer groups, XAUTOCLAIM: Redis 6.2+), on a
        scratch key that is deleted afterwards.
        """
        probe = self.keys.probe()
        async with self.guard():
            for source in self._sources.values():
                await self._redis.script_load(source)
            try:
                await self._redis.xadd(probe, {"probe": "1"})
                await self._redis.xgroup_create(probe, "probe", id="0")
                await self._redis.xreadgroup("probe", "c", {probe: ">"}, count=1)
                await self._redis.xautoclaim(probe, "probe", "c", min_idle_time=0)
            finally:
                await self._redis.delete(probe)

    async def purge(self) -> int:
        """Delete every key under this store's prefix; the count deleted.

        For scratch prefixes only (tests, the doctor's round trip): on the production
        prefix this erases the action cache, lineage and every queue.
        """
        deleted = 0
        async with self.guard():
            async for key in self._redis.scan_iter(match=self.keys.pattern(), count=1000):
                deleted += await self._redis.delete(key)
        return deleted

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
