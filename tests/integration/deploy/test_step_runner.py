"""Steps run real processes: output streamed line by line, and cancel leaves nothing behind."""

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from services.deploy.runner import StepCancelled, StepTimedOut, parse_command, run_step

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
# A step whose child leaves a sleeping grandchild behind, and says the grandchild's pid.
SPAWNS_GRANDCHILD = (
    "import subprocess, sys, time;"
    " g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    " open(sys.argv[1], 'w').write(str(g.pid)); print('started', flush=True); time.sleep(60)"
)
IGNORES_SIGTERM = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " g = subprocess.Popen([sys.executable, '-c', 'import signal, time;"
    " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
    " open(sys.argv[1], 'w').write(str(g.pid)); print('started', flush=True); time.sleep(60)"
)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.seen = asyncio.Event()

    async def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.seen.set()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def wait_for_file(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.02)
    return int(path.read_text())


async def test_stdout_and_stderr_lines_arrive_in_order_with_the_exit_code(tmp_path: Path) -> None:
    out = Lines()
    code = (
        "import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True);"
        " print('three', flush=True); sys.exit(3)"
    )
    result = await run_step([sys.executable, "-c", code], cwd=tmp_path, env=ENV, on_line=out)
    assert result == 3
    assert out.lines == ["one", "two", "three"]


async def test_the_step_gets_exactly_the_environment_and_directory_given(tmp_path: Path) -> None:
    os.environ["DEPLOYFORGE_TEST_AGENT_SECRET"] = "s3cret"
    try:
        out = Lines()
        code = "import os; print(sorted(os.environ)); print(os.getcwd())"
        env = {**ENV, "BUILD_ID": "42"}
        assert await run_step([sys.executable, "-c", code], cwd=tmp_path, env=env, on_line=out) == 0
    finally:
        del os.environ["DEPLOYFORGE_TEST_AGENT_SECRET"]
    names = out.lines[0]
    assert "BUILD_ID" in names
    assert "DEPLOYFORGE_TEST_AGENT_SECRET" not in names
    assert out.lines[1] == str(tmp_path)


async def test_shell_metacharacters_in_a_command_are_inert(tmp_path: Path) -> None:
    out = Lines()
    argv = parse_command("echo built; touch canary && touch canary2 | cat $(touch canary3)")
    assert await run_step(argv, cwd=tmp_path, env=ENV, on_line=out) == 0
    assert out.lines == ["built; touch canary && touch canary2 | cat $(touch canary3)"]
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_program_fails_like_in_a_shell(tmp_path: Path) -> None:
    out = Lines()
    code = await run_step(["no-such-program-here"], cwd=tmp_path, env=ENV, on_line=out)
    assert code == 127
    assert "no-such-program-here" in out.lines[0]


async def test_cancel_kills_the_whole_group_grandchildren_included(tmp_path: Path) -> None:
    out, cancel = Lines(), asyncio.Event()
    pid_file = tmp_path / "grandchild.pid"
    step = asyncio.create_task(
        run_step(
            [sys.executable, "-c", SPAWNS_GRANDCHILD, str(pid_file)],
            cwd=tmp_path,
            env=ENV,
            on_line=out,
            cancel=cancel,
        )
    )
    grandchild = await wait_for_file(pid_file)
    await out.seen.wait()
    assert alive(grandchild)
    started = time.monotonic()
    cancel.set()
    with pytest.raises(StepCancelled):
        await step
    assert time.monotonic() - started < 5
    assert not alive(grandchild)


async def test_processes_ignoring_sigterm_are_killed_within_five_seconds(tmp_path: Path) -> None:
    out, cancel = Lines(), asyncio.Event()
    pid_file = tmp_path / "grandchild.pid"
    step = asyncio.create_task(
        run_step(
            [sys.executable, "-c", IGNORES_SIGTERM, str(pid_file)],
            cwd=tmp_path,
            env=ENV,
            on_line=out,
            cancel=cancel,
        )
    )
    grandchild = await wait_for_file(pid_file)
    await out.seen.wait()
    started = time.monotonic()
    cancel.set()
    with pytest.raises(StepCancelled):
        await step
    assert 2.5 < time.monotonic() - started < 5
    assert not alive(grandchild)


async def test_a_step_running_past_its_timeout_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="timed out after 1s"):
        await run_step(
            [sys.executable, "-c", SPAWNS_GRANDCHILD, str(pid_file)],
            cwd=tmp_path,
            env=ENV,
            on_line=Lines(),
            timeout=1.0,
        )
    assert time.monotonic() - started < 3
    assert not alive(int(pid_file.read_text()))


async def test_processes_a_finished_step_left_behind_are_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "background.pid"
    code = (
        "import subprocess, sys; g = subprocess.Popen([sys.executable, '-c',"
        " 'import time; time.sleep(60)']); open(sys.argv[1], 'w').write(str(g.pid))"
    )
    started = time.monotonic()
    result = await run_step(
        [sys.executable, "-c", code, str(pid_file)], cwd=tmp_path, env=ENV, on_line=Lines()
    )
    assert result == 0
    # The background process held the output pipe open: the step did not wait for it.
    assert time.monotonic() - started < 5
    assert not alive(int(pid_file.read_text()))


async def test_cancelling_the_task_running_a_step_kills_its_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    step = asyncio.create_task(
        run_step(
            [sys.executable, "-c", SPAWNS_GRANDCHILD, str(pid_file)],
            cwd=tmp_path,
            env=ENV,
            on_line=Lines(),
        )
    )
    grandchild = await wait_for_file(pid_file)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert not alive(grandchild)


async def test_a_failing_output_sink_ends_the_step_instead_of_hanging_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"

    async def broken(_line: str) -> None:
        raise ConnectionError("log stream is gone")

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="log stream is gone"):
        await run_step(
            [sys.executable, "-c", SPAWNS_GRANDCHILD, str(pid_file)],
            cwd=tmp_path,
            env=ENV,
            on_line=broken,
        )
    assert time.monotonic() - started < 5
    assert not alive(int(pid_file.read_text()))
