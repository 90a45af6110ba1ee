"""The supervisor behind `deployforge up`, driving real Python child processes."""

import asyncio
import io
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable

import pytest

from deployforge.supervisor import Supervisor

SLEEPER = "import time; print('up', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); time.sleep(60)"
)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_output_lines_are_prefixed_with_the_child_name() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    code = "import sys; print('hello'); print('oops', file=sys.stderr); print('bye')"
    supervisor.add("auth", [sys.executable, "-c", code], restart=False)
    await supervisor.start_all()
    await eventually(lambda: "supervisor | auth exited with code 0" in out.getvalue())
    await supervisor.stop()

    lines = out.getvalue().splitlines()
    assert lines[:3] == ["auth | hello", "auth | oops", "auth | bye"]
    assert supervisor.restarts["auth"] == 0


async def test_a_killed_child_is_restarted() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    supervisor.add("auth", [sys.executable, "-c", SLEEPER])
    await supervisor.start("auth")
    await eventually(lambda: "auth | up" in out.getvalue())
    first = supervisor.pid("auth")
    assert first is not None

    os.kill(first, signal.SIGKILL)
    await eventually(lambda: supervisor.restarts["auth"] == 1)
    await eventually(lambda: out.getvalue().count("auth | up") == 2)

    assert "supervisor | auth exited with code -9, restarting in 0.5s" in out.getvalue()
    second = supervisor.pid("auth")
    assert second is not None
    assert second != first
    await supervisor.stop()
    assert supervisor.pid("auth") is None
    assert not alive(second)


async def test_restart_delay_doubles_while_a_child_keeps_crashing() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    supervisor.add("deploy", [sys.executable, "-c", "raise SystemExit(3)"])
    await supervisor.start("deploy")
    await eventually(lambda: "restarting in 1s" in out.getvalue())
    await supervisor.stop()

    notices = [line for line in out.getvalue().splitlines() if line.startswith("supervisor |")]
    assert notices[:2] == [
        "supervisor | deploy exited with code 3, restarting in 0.5s",
        "supervisor | deploy exited with code 3, restarting in 1s",
    ]


async def test_stop_kills_a_child_that_ignores_sigterm_within_the_timeout() -> None:
    out = io.StringIO()
    supervisor = Supervisor(stop_timeout=1.0, out=out)
    supervisor.add("stubborn", [sys.executable, "-c", STUBBORN])
    supervisor.add("polite", [sys.executable, "-c", SLEEPER])
    await supervisor.start_all()
    # Wait for both to print, so the stubborn one has installed its handler.
    await eventually(lambda: "stubborn | up" in out.getvalue() and "polite | up" in out.getvalue())
    pids = [supervisor.pid("stubborn"), supervisor.pid("polite")]
    waiter = asyncio.create_task(supervisor.run_until_stopped())

    started = time.monotonic()
    await supervisor.stop()
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 2.5
    assert all(pid is not None and not alive(pid) for pid in pids)
    await asyncio.wait_for(waiter, 1)
    assert supervisor.restarts == {"stubborn": 0, "polite": 0}
    assert "restarting" not in out.getvalue()


async def test_children_stop_in_reverse_start_order() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    on_term = (
        "import signal, sys, time\n"
        "def bye(*_): print('bye', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    for name in ["nats", "auth", "gateway"]:
        supervisor.add(name, [sys.executable, "-c", on_term])
    await supervisor.start_all()
    await eventually(lambda: out.getvalue().count("| up") == 3)
    await supervisor.stop()

    byes = [line.split(" |")[0] for line in out.getvalue().splitlines() if line.endswith("| bye")]
    assert byes == ["gateway", "auth", "nats"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")
async def test_a_child_can_run_as_another_user_without_roots_groups() -> None:
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    nobody = pwd.getpwnam("nobody")
    as_nobody = (nobody.pw_uid, nobody.pw_gid)
    supervisor.add("uid", ["id", "-u"], restart=False, user=as_nobody)
    supervisor.add("groups", ["id", "-G"], restart=False, user=as_nobody)
    await supervisor.start_all()
    await eventually(lambda: out.getvalue().count("exited with code") == 2)
    await supervisor.stop()
    lines = out.getvalue().splitlines()
    assert f"uid | {nobody.pw_uid}" in lines
    assert f"groups | {nobody.pw_gid}" in lines  # not root's group 0 as well
