"""The gate that keeps Kafka transaction boundaries between batches (``streams.transactions``)."""

from __future__ import annotations

import asyncio

from streams.transactions import BatchGate


def test_a_commit_waits_for_the_batches_under_way_and_holds_new_ones_back() -> None:
    async def scenario() -> list[str]:
        gate, log = BatchGate(), []
        release = asyncio.Event()

        async def batch(name: str, wait: asyncio.Event | None = None) -> None:
            async with gate.batch():
                log.append(f"{name} start")
                if wait is not None:
                    await wait.wait()
                await asyncio.sleep(0)
                log.append(f"{name} end")

        async def commit() -> None:
            async with gate.between_batches():
                log.append("commit start")
                await asyncio.sleep(0.01)
                log.append("commit end")

        first = asyncio.create_task(batch("a", release))
        await asyncio.sleep(0)
        committing = asyncio.create_task(commit())
        await asyncio.sleep(0)
        second = asyncio.create_task(batch("b"))
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(first, committing, second)
        return log

    assert asyncio.run(scenario()) == [
        "a start",
        "a end",
        "commit start",
        "commit end",
        "b start",
        "b end",
    ]


def test_batches_run_side_by_side_and_commits_one_at_a_time() -> None:
    async def scenario() -> tuple[int, int]:
        gate = BatchGate()
        inside = {"batches": 0, "commits": 0}
        peaks = {"batches": 0, "commits": 0}

        async def enter(kind: str) -> None:
            inside[kind] += 1
            peaks[kind] = max(peaks[kind], inside[kind])
            await asyncio.sleep(0.005)
            assert inside["batches"] == 0 or inside["commits"] == 0
            inside[kind] -= 1

        async def batch() -> None:
            async with gate.batch():
                await enter("batches")

        async def commit() -> None:
            async with gate.between_batches():
                await enter("commits")

        await asyncio.gather(*(batch() for _ in range(5)), commit(), commit(), batch())
        return peaks["batches"], peaks["commits"]

    batches_at_once, commits_at_once = asyncio.run(scenario())
    assert batches_at_once == 5
    assert commits_at_once == 1
