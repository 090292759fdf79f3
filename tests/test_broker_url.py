"""Broker URLs: query credentials move into the userinfo (the one form kombu parses and redacts)."""

from __future__ import annotations

import redis

from costserve.run.broker_url import normalize_broker_url, redact_url


def test_query_credentials_move_into_the_userinfo_and_are_redacted() -> None:
    url = "redis://cache.internal:6380/2?password=p%40ss:w/rd&socket_timeout=5"
    normal = normalize_broker_url(url)
    assert normal == "redis://:p%40ss%3Aw%2Frd@cache.internal:6380/2?socket_timeout=5"
    kwargs = redis.connection.parse_url(normal)  # redis-py reads back exactly the password it was given
    assert kwargs["password"] == "p@ss:w/rd" and kwargs["port"] == 6380 and kwargs["db"] == 2
    assert "p%40ss" not in redact_url(url) and "p@ss" not in redact_url(url) and ":***@" in redact_url(url)
    assert normalize_broker_url("redis://u@[::1]:6379/0?password=x") == "redis://u:x@[::1]:6379/0"
    assert normalize_broker_url("redis+socket:///run/redis.sock") == "redis+socket:///run/redis.sock"
