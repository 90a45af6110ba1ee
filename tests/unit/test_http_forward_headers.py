"""What the stable address passes on between clients and releases."""

from multidict import CIMultiDict

from libs.http_forward import end_to_end_headers


def test_hop_by_hop_headers_and_those_connection_names_are_dropped() -> None:
    headers = CIMultiDict(
        [
            ("Host", "shop.example.com"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("X-Secret-Hop", "1"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Authorization", "Bearer t"),
        ]
    )
    kept = end_to_end_headers(headers)
    assert list(kept.items()) == [
        ("Host", "shop.example.com"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Authorization", "Bearer t"),
    ]
