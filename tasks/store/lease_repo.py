"""Campaign leases (mixed into :class:`tasks.store.Store`): at most one live runner per campaign.

Every operation is one conditional statement, atomic on SQLite and PostgreSQL alike: a lease is taken only when
there is none or the last one expired, renewed and released only by the token that took it.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import delete, select, update

from tasks.store.engine import insert_ignore, transaction
from tasks.store.tables import LeaseRow


class LeaseRepo:
    url: str

    def acquire_lease(self, cid: str, owner: str, ttl_s: float) -> str | None:
        """A new token if the campaign had no live lease (none, or expired), else None."""
        token, now = uuid.uuid4().hex, time.time()
        with transaction(self.url) as s:
            insert_ignore(s, LeaseRow, [dict(campaign_id=cid, owner="", token="", expires_at=0.0)], ["campaign_id"])
            taken = s.execute(update(LeaseRow).where(LeaseRow.campaign_id == cid, LeaseRow.expires_at < now)
                              .values(owner=owner, token=token, expires_at=now + ttl_s)).rowcount
        return token if taken == 1 else None

    def take_over_lease(self, cid: str, from_owner: str, owner: str, ttl_s: float) -> str | None:
        """A new token if the lease is still ``from_owner``'s (a runner known to be dead), else None."""
        token = uuid.uuid4().hex
        with transaction(self.url) as s:
            taken = s.execute(update(LeaseRow).where(LeaseRow.campaign_id == cid, LeaseRow.owner == from_owner)
                              .values(owner=owner, token=token, expires_at=time.time() + ttl_s)).rowcount
        return token if taken == 1 else None

    def renew_lease(self, cid: str, token: str, ttl_s: float) -> bool:
        """Move the lease's expiry forward; False if ``token`` no longer holds it (it expired and was taken)."""
        with transaction(self.url) as s:
            return s.execute(update(LeaseRow).where(LeaseRow.campaign_id == cid, LeaseRow.token == token)
                             .values(expires_at=time.time() + ttl_s)).rowcount == 1

    def release_lease(self, cid: str, token: str) -> None:
        with transaction(self.url) as s:
            s.execute(delete(LeaseRow).where(LeaseRow.campaign_id == cid, LeaseRow.token == token))

    def lease(self, cid: str) -> tuple[str, float] | None:
        """``(owner, expires_at)`` of the campaign's live lease, None when nobody holds one."""
        with transaction(self.url) as s:
            row = s.scalar(select(LeaseRow).where(LeaseRow.campaign_id == cid, LeaseRow.expires_at >= time.time()))
            return (row.owner, row.expires_at) if row is not None else None
