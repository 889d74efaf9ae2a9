"""One live runner per campaign: the store's lease (pure store logic here; processes in test_resume_kill)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tasks.errors import CampaignBusyError
from tasks.lease import CampaignLease, holder_alive, live_lease, runner_name
from tasks.seeds import SeedSet
from tasks.store import Store
from tests.conftest import micro_config


@pytest.fixture
def campaign(tmp_path):
    cfg = micro_config(tmp_path)
    store = Store(cfg.store_url())
    return store, store.create_campaign(cfg, SeedSet(known_phases=[], templates=[]))


def test_a_lease_is_held_renewed_released_and_expires(campaign):
    store, cid = campaign
    token = store.acquire_lease(cid, "hostA:1", ttl_s=0.5)
    assert token and store.acquire_lease(cid, "hostB:2", ttl_s=10) is None  # live: refused
    assert store.lease(cid)[0] == "hostA:1" and store.renew_lease(cid, token, 0.5)
    assert not store.renew_lease(cid, "not-the-token", 10)
    time.sleep(0.6)
    assert store.lease(cid) is None  # expired: the runner stopped renewing
    other = store.acquire_lease(cid, "hostB:2", ttl_s=10)
    assert other and not store.renew_lease(cid, token, 10)  # the old holder learns it lost the lease
    store.release_lease(cid, token)  # a stale token releases nothing
    assert store.lease(cid)[0] == "hostB:2"
    store.release_lease(cid, other)
    assert store.lease(cid) is None


def test_the_context_refuses_a_second_runner_and_takes_over_from_a_dead_one(campaign):
    store, cid = campaign
    with CampaignLease(store, cid, ttl_s=60):
        assert live_lease(store, cid)[0] == runner_name()
        with pytest.raises(CampaignBusyError, match=f"being run by {runner_name()}"):
            CampaignLease(store, cid, ttl_s=60).__enter__()
    assert store.lease(cid) is None  # released on exit
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{socket.gethostname()}:{dead.pid}"
    assert not holder_alive(owner) and holder_alive("elsewhere:1") and holder_alive(runner_name())
    store.acquire_lease(cid, owner, ttl_s=600)  # a runner of this host that was killed: no 10-minute wait
    assert live_lease(store, cid) is None and store.lease(cid)[0] == owner
    with CampaignLease(store, cid, ttl_s=60):
        assert store.lease(cid)[0] == runner_name()
    store.acquire_lease(cid, "elsewhere:1", ttl_s=600)  # a runner on another host: alive until it expires
    with pytest.raises(CampaignBusyError, match="elsewhere:1"):
        CampaignLease(store, cid, ttl_s=60).__enter__()
