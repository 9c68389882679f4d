"""Committing the background refresher's refreshed grants many to a transaction.

Each refresh hands its write (``tokens.repository.TokenWrite``) here and waits until it is
committed, so a rotated refresh token is still stored before its refresh counts as done. The
writes that finish while a transaction is being committed wait for the next one, which takes them
all: a commit per batch instead of per refresh (on SQLite one writer instead of many queueing
for the single write lock; on PostgreSQL one WAL flush per batch), and no delay when refreshes
are few (a lone write is committed at once). The batch goes through ``tokens.repository.
write_tokens``, the same compare-and-swap a caller's refresh is written with.

A batch that fails is written again one write at a time, so one bad row cannot take the others'
rotated tokens with it; a write that still fails fails its own refresh, as a commit would.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from personal_connectors.tokens.repository import TokenWrite, write_tokens

logger = logging.getLogger(__name__)

# Bounds one transaction (its statements and its hold on SQLite's write lock).
MAX_BATCH = 64


class BatchedTokenWriter:
    """A ``tokens.refresh.TokenWriter`` that commits the writes waiting together in one go."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, parallel: int = 1) -> None:
        """``parallel``: transactions at a time (one on SQLite, whose writers queue anyway;
        on PostgreSQL a second overlaps one batch's round trips and WAL flush with the next)."""
        self.sessions = sessions
        self.parallel = parallel
        self._waiting: list[tuple[TokenWrite, asyncio.Future[bool]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, write: TokenWrite) -> bool:
        """Whether ``write`` won its compare-and-swap, once it is committed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((write, done))
        # A task that is done took its last look at the queue before this write came (done
        # callbacks run later, so the set is pruned here, not by them).
        self._tasks = {task for task in self._tasks if not task.done()}
        if len(self._tasks) < self.parallel:
            self._tasks.add(asyncio.create_task(self._commit_waiting()))
        # Shielded: a refresh cancelled while it waits does not take its write out of a batch
        # already being committed (the write, not the waiting, is what must not be lost).
        return await asyncio.shield(done)

    async def close(self) -> None:
        """Wait for the writes already handed over (on shutdown, after the refreshes)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            won: list[bool] | None = None  # set once write_tokens has committed
            try:
                async with self.sessions() as session:
                    won = await write_tokens(session, [write for write, _ in batch])
            except Exception:
                logger.exception("a batch of %d refreshed tokens failed; writing each", len(batch))
                await self._commit_one_by_one(batch)
                continue
            except BaseException:
                # Cancelled (the loop is being torn down), possibly while the session closed
                # after the commit (SQLAlchemy finishes the close, then re-raises): no refresh
                # may wait forever.
                self._settle(batch, won)
                self._settle(self._waiting, None)
                self._waiting = []
                raise
            self._settle(batch, won)

    @staticmethod
    def _settle(
        writes: list[tuple[TokenWrite, asyncio.Future[bool]]], won: list[bool] | None
    ) -> None:
        """Answer each write's waiter: whether it won, or (``won`` None: the writing stopped
        before it was known) an error."""
        for index, (_, done) in enumerate(writes):
            if done.done():
                continue
            if won is not None:
                done.set_result(won[index])
            else:
                done.set_exception(RuntimeError("the write was interrupted; it may be stored"))

    async def _commit_one_by_one(
        self, batch: list[tuple[TokenWrite, asyncio.Future[bool]]]
    ) -> None:
        for write, done in batch:
            try:
                async with self.sessions() as session:
                    (result,) = await write_tokens(session, [write])
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(result)
