"""A health-check path is user input; it can only ever address the instance itself."""

import pytest

from libs.errors import ValidationFailed
from services.deploy.health import health_url


def test_the_url_points_at_the_instance_port_on_this_machine() -> None:
    assert health_url(8123, "/healthz?deep=1") == "http://127.0.0.1:8123/healthz?deep=1"
    assert health_url(8123) == "http://127.0.0.1:8123/"


@pytest.mark.parametrize(
    "path",
    ["", "healthz", "@evil.example/", "//evil.example/", "/a b", "/a\r\nX: y", "/\\evil", "/#x"],
)
def test_paths_that_could_leave_the_instance_are_rejected(path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        health_url(8123, path)
    assert caught.value.details["field"] == "$.health_check_path"
