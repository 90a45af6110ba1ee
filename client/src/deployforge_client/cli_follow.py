"""Following a deployment until it ends, for `deploy`, `rollback` and `pipelines run`.

Off a terminal: each log line on stdout as it comes, one line per step change on
stderr. On a terminal: a live view on stderr (the queue position, each step with a
spinner, its result and duration, the progress and the ETA) with the log lines
printed above it. Either way the stream resumes with Last-Event-ID after a broken
connection (no line twice), the timeout holds even while nothing arrives (the stream
is read in a thread), and Ctrl-C detaches, saying how to cancel."""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from deployforge_client.cli_credentials import fail
from deployforge_client.cli_output import emit_one

if TYPE_CHECKING:
    from deployforge_client import DeployForge

_END = object()


def _reader(df: DeployForge, deployment_id: str, into: queue.Queue[Any]) -> None:
    from deployforge_client._core import path

    try:
        for event in df.events(path("/v1/deployments/{}/logs", deployment_id), follow=True):
            into.put(event)
            if event.event == "end":
                break
    except Exception as exc:  # handed to the main thread, which reports it
        into.put(exc)
    into.put(_END)


def describe(change: Any) -> str:
    if not isinstance(change, dict):
        return str(change)
    step, state = change.get("step"), change.get("state")
    if step:
        return f"{step}: {state or ''} (deployment {change.get('status')})".replace(": (", " (")
    return f"deployment {change.get('status')}"


def follow(df: DeployForge, deployment_id: str, output: str, timeout: float) -> None:
    """Until the deployment ends: exit 3 unless it succeeded, 8 past `timeout`."""
    events: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_reader, args=(df, deployment_id, events), daemon=True).start()
    deadline = time.monotonic() + timeout
    live = output == "text" and sys.stdout.isatty() and sys.stderr.isatty()
    view = LiveView(df, deployment_id) if live else None
    try:
        if view is not None:
            view.start()
        while True:
            try:
                event = events.get(timeout=max(0.05, min(0.25, deadline - time.monotonic())))
            except queue.Empty:
                if view is not None:
                    view.tick()
                if time.monotonic() > deadline:
                    if view is not None:
                        view.stop()
                    fail(8, f"still running after {timeout:g} s:"
                            f" dfctl deployments wait {deployment_id}")  # fmt: skip
                continue
            if event is _END:
                break
            if isinstance(event, Exception):
                raise event
            if event.event == "log":
                line = event.data.get("line", "") if isinstance(event.data, dict) else ""
                if view is not None:
                    view.log(line)
                elif output == "text":
                    click.echo(line)
            elif event.event == "status":
                if view is not None:
                    view.changed()
                else:
                    click.echo(f"== {describe(event.data)}", err=True)
    except KeyboardInterrupt:
        if view is not None:
            view.stop()
        click.echo(
            f"\nDetached; the deployment goes on. Cancel it: dfctl deployments cancel"
            f" {deployment_id}",
            err=True,
        )
        sys.exit(130)
    final = df.deployments.wait(deployment_id, timeout=max(1.0, deadline - time.monotonic()))
    if view is not None:
        view.changed(final)
        view.stop()
    if output == "text":
        click.echo(f"{final['id']} {final['status']}", err=True)
    else:
        emit_one(final, output)
    if final["status"] != "succeeded":
        reason = final.get("failure_reason") or final["status"]
        fail(3, f"deployment {deployment_id} {final['status']}: {reason}")


class LiveView:
    """The terminal view: rich's Live on stderr, redrawn as the steps change."""

    def __init__(self, df: DeployForge, deployment_id: str) -> None:
        from rich.console import Console

        self.df, self.deployment_id = df, deployment_id
        self.console = Console(stderr=True)
        self.out = Console()  # log lines, on stdout above the view
        self.deployment: dict[str, Any] = dict(df.deployments.get(deployment_id))
        self.steps: list[dict[str, Any]] = []
        self._live: Any = None

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(self.render(), console=self.console, refresh_per_second=8,
                          transient=False)  # fmt: skip
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def log(self, line: str) -> None:
        from rich.text import Text

        if self._live is not None:
            self._live.console.print(Text(line), soft_wrap=True)
        else:
            self.out.print(Text(line))

    def tick(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def changed(self, deployment: Any = None) -> None:
        from deployforge_client._core import path

        self.deployment = dict(deployment or self.df.deployments.get(self.deployment_id))
        self.steps = list(self.df.get(path("/v1/deployments/{}/steps", self.deployment_id)))
        self.tick()

    def render(self) -> Any:
        from datetime import UTC, datetime

        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        d = self.deployment
        head = Text.assemble(("deployment ", "dim"), (d["id"], "bold"), "  ", _styled(d["status"]))
        if d.get("queue_position"):
            head.append(f"  #{d['queue_position']} in queue", style="yellow")
        table = Table.grid(padding=(0, 2))
        for step in self.steps:
            state = step.get("state", "")
            if state in ("running", "started", "in_progress"):
                mark: Any = Spinner("dots", style="cyan")
            else:
                mark = Text(
                    "✓" if state in ("success", "succeeded", "skipped") else "✗",
                    style="green" if state in ("success", "succeeded") else "red",
                )
            took = step.get("duration_seconds")
            table.add_row(
                mark,
                Text(step["name"]),
                _styled(state),
                Text(f"{took:.1f} s" if took is not None else "", style="dim"),
            )
        progress = int(d.get("progress") or 0)
        eta = ""
        if d.get("estimated_completion") and d["status"] in ("queued", "running"):
            left = datetime.fromisoformat(d["estimated_completion"]) - datetime.now(UTC)
            eta = f"  ETA {max(0, int(left.total_seconds()))} s"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=100, completed=progress, width=40),
                    Text(f"{progress}%{eta}"))  # fmt: skip
        return Group(head, table, bar)


def _styled(status: str) -> Any:
    from rich.text import Text

    colour = {"succeeded": "green", "success": "green", "failed": "red", "cancelled": "red",
              "queued": "yellow", "running": "cyan"}.get(status, "")  # fmt: skip
    return Text(status, style=colour)
