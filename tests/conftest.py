"""Shared test set-up: one thread, no network, and each quick claim run once per session.

Tests run many tiny steps: one intra-op thread is far faster than two on a shared 2-core machine.
No test may use the network: a connection to any address but the loopback raises `NetworkUsedInTest`
(loopback stays open for the gloo tests of engine/distributed).
"""

import ipaddress
import os
import socket

import pytest
import torch

torch.set_num_threads(1)

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkUsedInTest(RuntimeError):
    """A test tried to reach a non-loopback address: tests must pass on a machine without a network."""


def _is_local(host: str | None) -> bool:
    if not host or host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False                                  # a host name: resolving it would already use the network
    return ip.is_loopback or ip.is_unspecified


def _guard(method, address_arg: int):
    """`method` (connect, sendto, ...) refusing a non-local `args[address_arg]`."""

    def guarded(self, *args):
        address = args[address_arg] if args else None
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) \
                and not _is_local(address[0]):
            raise NetworkUsedInTest(f"a test tried to reach {address[0]}:{address[1]}; tests must not use the "
                                    "network (only the loopback address)")
        return method(self, *args)

    guarded.__name__ = method.__name__
    return guarded


def _is_name(host: str | None) -> bool:
    """A host name other than localhost, which only a DNS query can resolve (an IP address needs none)."""
    try:
        ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        return not _is_local(host)
    return False


def _guard_lookup(lookup):
    def guarded(host, *args, **kw):
        if _is_name(host.decode() if isinstance(host, bytes) else host):
            raise NetworkUsedInTest(f"a test tried to look up {host!r}; tests must not use the network")
        return lookup(host, *args, **kw)

    return guarded


socket.socket.connect = _guard(socket.socket.connect, 0)
socket.socket.connect_ex = _guard(socket.socket.connect_ex, 0)
socket.socket.sendto = _guard(socket.socket.sendto, -1)
socket.getaddrinfo = _guard_lookup(socket.getaddrinfo)


@pytest.fixture
def fixed_batch_losses():
    """`run(loss_fn, optimizer, steps)`: `steps` optimizer steps on `loss_fn()` (one fixed batch); the losses."""

    def run(loss_fn, optimizer, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            loss = loss_fn()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    return run


@pytest.fixture(scope="session")
def quick_claim(tmp_path_factory):
    """`quick_claim(slug, name, data="fallback")`: the record of the claim's quick run, run once per session.

    `data="fallback"` runs with `ARCHZOO_DATA_DIR` pointing at an empty folder, so that every file-backed
    dataset is missing and the claim runs on its fallback (what a fresh machine sees); `data="real"`
    runs with the environment as it is. The record's files are in the folder of `record["path"]`.
    Tests of one paper's quick-claim metrics take their record from here instead of running it again.
    """
    from archzoo.engine.claims import run_claim

    records = {}

    def run(slug: str, name: str, data: str = "fallback") -> dict:
        if data not in ("fallback", "real"):
            raise ValueError(f"data must be 'fallback' or 'real', got {data!r}")
        if (slug, name, data) not in records:
            out = tmp_path_factory.mktemp(f"{data}-{slug}")
            with pytest.MonkeyPatch.context() as mp:
                if data == "fallback":
                    mp.setenv("ARCHZOO_DATA_DIR", str(tmp_path_factory.mktemp("no-data")))
                records[slug, name, data] = run_claim(slug, name, "quick", out_dir=out, progress=False)
        return records[slug, name, data]

    return run


# `make test-reference` sets ARCHZOO_REFERENCES=required: a reference test that skips because its reference package
# is missing then fails, except timm's (timm pulls a CUDA torch through torchvision, so it is never installed here).
OPTIONAL_REFERENCES = ("timm",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("reference") is not None \
            and os.environ.get("ARCHZOO_REFERENCES") == "required":
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(name in reason for name in OPTIONAL_REFERENCES):
            report.outcome, report.longrepr = "failed", f"reference required but skipped: {reason}"
