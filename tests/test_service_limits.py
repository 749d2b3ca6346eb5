"""The failed-token limit on its own: thread-safe, bounded, O(1), per IPv4 address or
IPv6 /64. Pure: no I/O."""

import threading
import time

import pytest

from engine.config import Settings
from engine.service.limits import FailureLimit, client_key


def test_eight_threads_hammering_the_limit_raise_nothing_and_keep_it_bounded():
    limit = FailureLimit(per_minute=5, max_clients=1_000)
    errors: list[BaseException] = []

    def hammer(worker: int) -> None:
        try:
            for i in range(5_000):
                client = f"127.{worker}.{i // 250}.{i % 250}"
                limit.fail(client)
                limit.blocked(client)
                limit.blocked(f"127.0.0.{i % 7}")
        except BaseException as exc:  # any error at all is the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(limit) == 1_000


def test_the_limit_costs_the_same_at_fifty_thousand_clients():
    limit = FailureLimit(per_minute=10)
    for i in range(50_000):
        limit.fail(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    started = time.perf_counter()
    for i in range(1_000):
        limit.fail(f"11.0.{i // 256}.{i % 256}")
        limit.blocked("10.0.0.1")
    per_call = (time.perf_counter() - started) / 2_000
    assert per_call < 0.0005, f"{per_call * 1e6:.0f} µs a call"
    assert len(limit) == 50_000


def test_a_failure_blocks_after_the_limit_and_clears_after_a_minute():
    now = [1000.0]
    limit = FailureLimit(per_minute=2, clock=lambda: now[0])
    assert limit.blocked("a") is None
    limit.fail("a")
    limit.fail("a")
    assert limit.blocked("a") == 60
    assert limit.blocked("b") is None
    now[0] += 60.5
    assert limit.blocked("a") is None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one bucket
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_key_is_the_ipv4_address_or_the_ipv6_64(host, key):
    assert client_key(host) == key


def test_the_proxies_to_believe_come_from_the_environment(tmp_path):
    base = {"HERALD_VAR": str(tmp_path), "HERALD_SECRET": "s" * 16}
    assert Settings.from_env(base).forwarded_allow_ips == "127.0.0.1"
    env = {**base, "HERALD_FORWARDED_ALLOW_IPS": "10.0.0.2, 10.1.0.0/16"}
    assert Settings.from_env(env).forwarded_allow_ips == "10.0.0.2, 10.1.0.0/16"
