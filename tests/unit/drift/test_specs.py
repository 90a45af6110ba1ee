"""Infrastructure specs are checked at the door, each refusal naming its field."""

from __future__ import annotations

import pytest

from libs.errors import ValidationFailed
from services.drift import specs


def test_specs_are_checked_at_the_door_naming_the_field() -> None:
    cases = [
        ("server", {"instance_type": "huge!"}, "$.specs.instance_type"),
        ("server", {"instance_type": "t3.small", "extra": 1}, "$.specs"),
        ("security_group", {"ingress": [{"from_port": 22, "to_port": 22, "cidrs": ["nope"]}]},
         "$.specs.ingress[0].cidrs[0]"),
        ("security_group", {"ingress": [{"from_port": 90, "to_port": 80}]},
         "$.specs.ingress[0].from_port"),
        ("volume", {"size": 0}, "$.specs.size"),
        ("bucket", {"name": "Not_A_Bucket"}, "$.specs.name"),
        ("database", {}, "$.type"),
    ]  # fmt: skip
    for kind, body, field in cases:
        with pytest.raises(ValidationFailed) as caught:
            specs.check(kind, body)
        assert caught.value.details.get("field", "").startswith(field), (kind, body, caught.value)
