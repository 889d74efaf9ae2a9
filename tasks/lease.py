"""One live runner per campaign: a lease in the store (tasks/store/lease_repo.py), renewed by a heartbeat.

``with CampaignLease(store, cid, ttl_s):`` takes the campaign's lease or raises :class:`CampaignBusyError`
naming the runner that holds it; a thread renews it every ``ttl_s / 4`` seconds while the block runs and it is
released at the end. A runner killed without cleanup stops renewing, so its lease expires after ``ttl_s`` and
another runner may take over (``matloop status`` shows such a campaign as ``interrupted``). If a heartbeat
finds the lease taken by someone else (this process stalled for longer than ``ttl_s``), :func:`check_lease`
raises at the next round boundary instead of running the round twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from tasks.errors import CampaignBusyError

log = logging.getLogger(__name__)
_LOST: set[str] = set()  # campaigns whose lease this process lost while running them


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CampaignLease:
    def __init__(self, store, campaign_id: str, ttl_s: float) -> None:
        self.store, self.cid, self.ttl_s = store, campaign_id, ttl_s
        self.token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CampaignLease:
        self.token = self.store.acquire_lease(self.cid, runner_name(), self.ttl_s)
        if self.token is None:
            held = self.store.lease(self.cid)
            if held is not None and not holder_alive(held[0]):  # died on this host: no need to wait for expiry
                self.token = self.store.take_over_lease(self.cid, held[0], runner_name(), self.ttl_s)
        if self.token is None:
            held = live_lease(self.store, self.cid)
            owner, expires = held if held is not None else ("another runner", time.time() + self.ttl_s)
            raise CampaignBusyError(self.cid, owner, max(expires - time.time(), 0.0))
        _LOST.discard(self.cid)
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.cid}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                if not self.store.renew_lease(self.cid, self.token, self.ttl_s):
                    _LOST.add(self.cid)
                    log.error("campaign %s: its lease was taken by another runner; stopping at the next round",
                              self.cid)
                    return
            except Exception as exc:  # a store hiccup: try again at the next beat (the lease lasts ttl_s)
                log.warning("campaign %s: lease renewal failed (%s); retrying", self.cid, exc)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.token is not None and self.cid not in _LOST:
            self.store.release_lease(self.cid, self.token)


def holder_alive(owner: str) -> bool:
    """False only for a runner of this host whose process is gone; a runner elsewhere counts as alive until
    its lease expires."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def live_lease(store, campaign_id: str) -> tuple[str, float] | None:
    """``(owner, expires_at)`` of a runner that holds the campaign now (None: nobody, or a dead local one)."""
    held = store.lease(campaign_id)
    return held if held is not None and holder_alive(held[0]) else None


def check_lease(campaign_id: str) -> None:
    """Raise :class:`CampaignBusyError` if this process lost the campaign's lease while running it."""
    if campaign_id in _LOST:
        raise CampaignBusyError(campaign_id, "another runner (this one stalled past its lease)", 0.0)
