"""AccountBudget (rtc_recording.cloud.budget) with the write-ahead between grant and send, as clients.py
does: while the apiserver is slow (the first second) each write-ahead takes 2.5 s, then 20 ms.
How many requests reach the service in the busiest 1 s window (the vendor allows 50)?"""

import asyncio
import time

from rtc_recording.cloud.budget import AccountBudget, Priority


async def main(slow: float) -> None:
    budget = AccountBudget()
    start = time.monotonic()
    sent: list[float] = []

    async def call() -> None:
        slot = await budget.acquire(Priority.START)
        congested = time.monotonic() - start < 1.0
        await asyncio.sleep(slow if congested else 0.02)  # the write-ahead PATCH (before_send)
        budget.sending(slot)  # the Start leaves now
        sent.append(time.monotonic())
        await asyncio.sleep(0.05)  # answered 50 ms later
        budget.answered(slot)

    await asyncio.gather(*(call() for _ in range(300)))
    worst = max(sum(1 for t in sent if s <= t < s + 1.0) for s in sent)
    print(f"write-ahead {slow:.1f} s while congested: busiest 1 s window at the service = {worst} requests")


for slow in (0.02, 0.5, 1.0, 1.5, 2.5):
    asyncio.run(main(slow))
