"""Declared resources against what the provider reports, matched by type and
DeployForge id."""

from __future__ import annotations

from services.drift.aws import Observed
from services.drift.compare import Declared, compare

SERVER = Declared(
    resource_id="res_srv",
    resource_type="server",
    desired={"instance_type": "t3.micro", "tags": {"team": "web"}},
)


def _server(instance_type: str) -> Observed:
    return Observed(
        resource_type="server",
        provider_id="i-1",
        deployforge_id="res_srv",
        environment_id="env_1",
        attributes={"instance_type": instance_type, "state": "running", "tags": {"team": "web"}},
    )


# AWS tags a server's root volume with the server's own tags (TagSpecifications).
ROOT_VOLUME = Observed(
    resource_type="volume",
    provider_id="vol-1",
    deployforge_id="res_srv",
    environment_id="env_1",
    attributes={"size": 8, "volume_type": "gp3", "tags": {"team": "web"}},
)


def test_a_server_is_compared_with_itself_not_with_its_root_volume() -> None:
    # given a server as declared, and its root volume carrying its id
    # when the environment is compared, in either order the reader may list them
    for observed in ([_server("t3.micro"), ROOT_VOLUME], [ROOT_VOLUME, _server("t3.micro")]):
        found = compare([SERVER], observed, environment_id="env_1")
        # then nothing drifted, and the root volume is not "unexpected"
        assert found == []


def test_a_server_resized_out_of_band_is_changed_at_its_instance_type() -> None:
    found = compare([SERVER], [ROOT_VOLUME, _server("t3.large")], environment_id="env_1")
    [one] = found
    assert (one.finding.kind, one.resource_id) == ("changed", "res_srv")
    [difference] = one.finding.differences
    assert (difference.pointer, difference.expected, difference.actual) == (
        "/instance_type",
        "t3.micro",
        "t3.large",
    )
