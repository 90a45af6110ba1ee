"""How long a crashed instance waits before it is restarted, and what its record holds."""

from pathlib import Path

import msgspec
import pytest

from services.deploy.instances import InstanceSpec, InstanceState
from services.deploy.supervisor import BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_UPTIME, restart_delay


def test_delays_double_from_half_a_second_up_to_ten() -> None:
    delays: list[float] = []
    delay: float | None = None
    for _ in range(8):
        delay = restart_delay(delay, uptime=1.0)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert (BACKOFF_FIRST, BACKOFF_MAX) == (0.5, 10.0)


def test_a_crash_after_a_healthy_stretch_starts_the_backoff_over() -> None:
    assert restart_delay(8.0, uptime=HEALTHY_UPTIME) == BACKOFF_FIRST
    assert restart_delay(8.0, uptime=HEALTHY_UPTIME - 1) == BACKOFF_MAX


def test_the_command_digest_tells_changed_commands_apart() -> None:
    def spec(*argv: str) -> InstanceSpec:
        return InstanceSpec(
            instance_id="rel_1-0", release_id="rel_1", argv=argv, cwd=Path("/srv"), port=8000
        )

    assert spec("python", "app.py").argv_hash == spec("python", "app.py").argv_hash
    assert spec("python", "app.py").argv_hash != spec("python", "app.py", "--debug").argv_hash
    # Joining arguments would make these two equal.
    assert spec("a b", "c").argv_hash != spec("a", "b c").argv_hash


@pytest.mark.parametrize("instance_id", ["", "../escape", "a/b", ".hidden", "x" * 200])
def test_instance_ids_must_be_safe_file_names(instance_id: str) -> None:
    with pytest.raises(ValueError, match="safe file name"):
        InstanceSpec(instance_id=instance_id, release_id="r", argv=("x",), cwd=Path("/"), port=1)


def test_the_state_record_round_trips_and_holds_no_environment() -> None:
    state = InstanceState(
        instance_id="rel_1-0",
        release_id="rel_1",
        pid=1234,
        pgid=1234,
        port=8000,
        started_at=1_700_000_000.5,
        create_time=1_700_000_000.4,
        restarts=2,
        argv_hash="ab" * 32,
    )
    encoded = msgspec.json.encode(state)
    assert msgspec.json.decode(encoded, type=InstanceState) == state
    assert b"env" not in encoded
