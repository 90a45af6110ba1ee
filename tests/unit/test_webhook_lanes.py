"""When the dispatcher may attempt a delivery at once, and when it hands it to the worker."""

from __future__ import annotations

from services.webhooks.courier import PROMPT_LINE_SECONDS, STALL_SECONDS, Lane


def test_a_healthy_lane_takes_prompt_attempts_until_its_line_is_long() -> None:
    lane = Lane(concurrency=8, rate_limit=None)
    lane.observe(0.01, succeeded=True)
    lane.latency = 0.01  # an endpoint answering in 10 ms
    assert lane.prompt
    # 8 slots at 10 ms each: 800/s, so 5 s of line is 4,000 waiting.
    lane.waiting = int(800 * PROMPT_LINE_SECONDS) - 1
    assert lane.prompt
    lane.waiting = int(800 * PROMPT_LINE_SECONDS)
    assert not lane.prompt


def test_a_failing_or_slow_endpoint_gets_no_prompt_attempts() -> None:
    lane = Lane(concurrency=8, rate_limit=None)
    lane.observe(0.01, succeeded=False)
    assert not lane.prompt
    lane.observe(0.01, succeeded=True)
    assert lane.prompt
    lane.latency = 15.0  # timing out: 8 slots get through ~0.5/s
    lane.waiting = 8
    assert not lane.prompt


def test_a_rate_limit_shortens_the_prompt_line() -> None:
    lane = Lane(concurrency=8, rate_limit=10)
    lane.latency = 0.001
    lane.waiting = int(10 * PROMPT_LINE_SECONDS)
    assert not lane.prompt
    lane.waiting = 8
    assert lane.prompt


async def test_a_lane_whose_every_slot_is_stuck_is_stalled_and_takes_no_prompt_work() -> None:
    lane = Lane(concurrency=2, rate_limit=None)
    lane.latency = 0.002  # its estimate still says fast
    first, second = await lane.enter(), await lane.enter()
    assert first is not None and second is not None
    assert lane.prompt and not lane.stalled  # both just started
    for token in (first, second):
        lane._running[token] -= STALL_SECONDS + 0.5  # both have hung for a while
    assert lane.stalled and not lane.prompt
    # A prompt attempt waits for a slot only so long, then leaves it to the worker.
    assert await lane.enter(wait=0.05) is None
    assert lane.waiting == 0
    lane.leave(first)
    assert not lane.stalled
    third = await lane.enter(wait=0.05)
    assert third is not None
