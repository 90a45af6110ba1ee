"""When the dispatcher may attempt a delivery at once, and when it hands it to the worker."""

from __future__ import annotations

from services.webhooks.courier import PROMPT_LINE_SECONDS, Lane


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
