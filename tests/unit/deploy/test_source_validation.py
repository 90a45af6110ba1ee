"""Which repository URLs and refs a deployment may name: everything else never reaches git."""

import pytest

from libs.errors import ValidationFailed
from services.deploy.source import validate_ref, validate_repository


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/shop.git",
        "http://git.internal:8080/acme/shop",
        "https://user@git.example.com/acme/shop.git",
        "file:///srv/git/shop.git",
        "/srv/git/shop",
        "/srv/git/odd:name",
    ],
)
def test_http_file_urls_and_absolute_paths_are_accepted(url: str) -> None:
    assert validate_repository(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "foo::bar",
        "git+ssh::host",
        "ssh://git@github.com/acme/shop.git",
        "git@github.com:acme/shop.git",
        "git://github.com/acme/shop.git",
        "--upload-pack=touch /tmp/pwned",
        "-u/tmp/x",
        "relative/path",
        "./shop",
        "https:///no-host",
        "https://-oProxyCommand=x/repo",
        "file://otherhost/srv/git",
        "https://example.com/a b",
        "https://example.com/a\nb",
        "/srv/git/\x00shop",
        "https://example.com/" + "a" * 3000,
    ],
)
def test_transport_helpers_ssh_option_like_and_odd_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_repository(url)
    assert caught.value.details["field"] == "$.repository_url"


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "feature/new-checkout",
        "v1.2.3",
        "refs/heads/main",
        "HEAD",
        "0123456789abcdef0123456789abcdef01234567",
        "release_2024-01",
    ],
)
def test_branches_tags_and_commits_are_accepted(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "-main",
        "--upload-pack=touch /tmp/pwned",
        "+main",
        "main:refs/heads/evil",
        "a..b",
        "main@{1}",
        "@",
        "has space",
        "tab\there",
        "semi;colon space",
        "$(touch canary)",
        "main~1",
        "main^",
        "what?",
        "glob*",
        "br[ack",
        "back\\slash",
        "ends.lock",
        "dir/ends.lock/x",
        "trailing/",
        "/leading",
        "double//slash",
        ".hidden",
        "dir/.hidden",
        "trailing.",
        "x" * 256,
        "new\nline",
    ],
)
def test_option_like_and_malformed_refs_are_rejected(ref: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_ref(ref)
    assert caught.value.details["field"] == "$.ref"
