"""Accounts: API keys (stored as HMAC digests), the caller a request acts as, and per-key rate limits.

Every door authenticates once (REST and MCP from a header, the CLI as the machine's own admin) and hands the
resulting `Caller` to the application layer, which checks scopes and tenants in one place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from kernel.errors import AdgraphError
from service.db import ApiKey, utcnow
from service.store import JobStore

SCOPES = ("submit", "read", "admin")
"""`read`: see the tenant's jobs and files; `submit`: also make, cancel, resume and branch them;
`admin`: every tenant's, the keys, /metrics and /v1/system."""
LOCAL_TENANT = "local"
_KEY = re.compile(r"^adg_([0-9a-f]{12})_([A-Za-z0-9_-]{20,64})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CACHE_S = 2.0
"""How long a key row (and "are there any keys") is trusted without a read: a revoke lands within it."""


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: a tenant, what it may do, and the key it came with (None: no key)."""

    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None
    rate: str | None = None
    max_running: int | None = None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def require(self, scope: str) -> None:
        """FORBIDDEN unless this caller has `scope` (admin has every scope; submit includes read)."""
        if scope not in self.scopes and not self.admin and not (scope == "read" and "submit" in self.scopes):
            raise AdgraphError(
                "FORBIDDEN",
                f"this key may {', '.join(sorted(self.scopes)) or 'do nothing'}; {scope!r} is needed",
                scope=scope,
            )

    def sees(self, tenant: str) -> bool:
        return self.admin or tenant == self.tenant


LOCAL = Caller(LOCAL_TENANT, frozenset(SCOPES))
"""The machine's own user: the CLI working on the database directly, and an open server (no keys yet)."""


def server_secret(settings: Any) -> bytes:
    """The HMAC key for API-key digests: ADGRAPH_SECRET, else a random one kept in the data dir (0600).
    Servers on several machines sharing a database must share ADGRAPH_SECRET."""
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        # written whole under another name, then linked into place: two processes starting at once get
        # the same secret (the second's link fails, and it reads the first's), and none reads a half file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise AdgraphError(
            "INTERNAL", "secret.key in the data dir is empty or short: delete it (all keys must be remade)"
        )
    return secret.encode()


def _digest(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    if not scopes or set(scopes) - set(SCOPES):
        raise AdgraphError(
            "INVALID_INPUT", f"scopes {text!r}: choose from {', '.join(SCOPES)}", field="scope"
        )
    return scopes


def check_rate(rate: str | None) -> str | None:
    from limits import parse_many

    if rate is None:
        return None
    try:
        parse_many(rate)
    except ValueError:
        raise AdgraphError("INVALID_INPUT", f"rate {rate!r}: write it like 60/minute or 10/second") from None
    return rate


class Accounts:
    def __init__(self, store: JobStore, settings: Any) -> None:
        self.store, self.settings = store, settings
        self._secret: bytes | None = None
        self._rows: dict[str, tuple[float, ApiKey | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = server_secret(self.settings)
        return self._secret

    # -- keys ----------------------------------------------------------------------------------------

    async def create(
        self, tenant: str, scopes: list[str], *, rate: str | None = None, max_running: int | None = None
    ) -> tuple[str, ApiKey]:
        """A new key for `tenant`: (the key, shown once; its row, holding only the digest)."""
        if not _TENANT.match(tenant):
            raise AdgraphError(
                "INVALID_INPUT", f"tenant {tenant!r}: 1-64 letters, digits, '.', '_' or '-'", field="tenant"
            )
        if max_running is not None and max_running < 1:
            raise AdgraphError("INVALID_INPUT", "max-running must be at least 1", field="max_running")
        key_id = secrets.token_hex(6)
        key = f"adg_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            id=key_id,
            tenant=tenant,
            scopes=parse_scopes(",".join(scopes)),
            rate=check_rate(rate),
            max_running=max_running,
            digest=_digest(self.secret, key),
            created_at=utcnow(),
        )
        async with self.store.sessions.begin() as s:
            s.add(row)
        self._any = (0.0, True)
        return key, row

    async def list(self) -> list[ApiKey]:
        async with self.store.sessions() as s:
            return list((await s.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())

    async def revoke(self, key_id: str) -> ApiKey:
        async with self.store.sessions.begin() as s:
            res = await s.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            row = await s.get(ApiKey, key_id)
        if row is None:
            raise AdgraphError("NOT_FOUND", f"no key {key_id!r} (adgraph keys list shows them)")
        if res.rowcount != 1 and row.revoked_at is None:  # pragma: no cover - a race with another revoke
            raise AdgraphError("INVALID_INPUT", f"key {key_id} could not be revoked")
        self._rows.pop(key_id, None)
        return row

    # -- requests ------------------------------------------------------------------------------------

    async def open(self) -> bool:
        """Whether requests need no key: ADGRAPH_AUTH=open, or `auto` while no key exists yet."""
        if self.settings.auth == "open":
            return True
        if self.settings.auth == "required":
            return False
        return not await self.any_keys()

    async def any_keys(self) -> bool:
        at, seen = self._any
        if seen or time.monotonic() - at > _CACHE_S:  # once a key exists it is never "no keys" again
            if not seen:
                rows = await self.store._rows(select(func.count()).select_from(ApiKey))
                seen = bool(rows[0][0])
            self._any = (time.monotonic(), seen)
        return seen

    async def authenticate(self, key: str | None) -> Caller:
        """The caller for a request carrying `key` (None: no key): UNAUTHENTICATED unless the key is one of
        ours and not revoked, or no key is needed (see `open`)."""
        if key is None:
            if await self.open():
                return LOCAL
            raise AdgraphError(
                "UNAUTHENTICATED",
                "this server needs an API key: send Authorization: Bearer KEY (or x-api-key: KEY); "
                "an administrator makes one with `adgraph keys create --tenant NAME`",
            )
        m = _KEY.match(key)
        row = await self._row(m.group(1)) if m else None
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.digest, _digest(self.secret, key))
        ):
            raise AdgraphError(
                "UNAUTHENTICATED", "the API key is not valid (revoked, mistyped or never issued)"
            )
        return Caller(row.tenant, frozenset(row.scopes), row.id, row.rate, row.max_running)

    async def _row(self, key_id: str) -> ApiKey | None:
        cached = self._rows.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < _CACHE_S:
            return cached[1]
        rows = await self.store._rows(select(ApiKey.__table__).where(ApiKey.id == key_id))
        row = ApiKey(**rows[0]._mapping) if rows else None
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[key_id] = (time.monotonic(), row)
        return row


class RateLimiter:
    """Requests per key in a moving window (`limits`): in memory by default, in Redis when
    ADGRAPH_RATE_LIMIT_STORAGE is redis://… (then every API process shares the count)."""

    def __init__(self, storage_url: str, default_rate: str) -> None:
        from limits import parse_many
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        options = {"implementation": "redispy"} if "redis" in url else {}
        self._limiter = MovingWindowRateLimiter(storage_from_string(url, **options))
        self._parse = parse_many
        self.default = check_rate(default_rate)
        self._parsed: dict[str, Any] = {}

    async def hit(self, caller: Caller) -> None:
        """Count one request of `caller`'s key; RATE_LIMITED with a `retry_after` once over its rate."""
        if caller.key_id is None:
            return
        rate = caller.rate or self.default
        if rate is None:
            return
        items = self._parsed.get(rate) or self._parsed.setdefault(rate, self._parse(rate))
        for item in items:
            if not await self._limiter.hit(item, caller.key_id):
                stats = await self._limiter.get_window_stats(item, caller.key_id)
                wait = max(1, int(stats.reset_time - time.time() + 0.999))
                raise AdgraphError(
                    "RATE_LIMITED",
                    f"this key may send {item}; try again in {wait} s",
                    retry_after=wait,
                    rate=str(item),
                )


def utc(ts: dt.datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def startup_check(settings: Any, host: str) -> str | None:
    """Before a server listens on `host`: refuse to serve an open API beyond this machine; else the
    warning to print, if it will be open. Secure by default: open only on loopback until a key exists."""
    from service.db import make_engine, migrate

    if settings.auth == "open":
        return f"ADGRAPH_AUTH=open: every request to {host} is served without a key, as an administrator"
    if settings.auth == "required":
        return None
    engine = make_engine(settings.database)
    store = JobStore(engine)
    try:
        await migrate(engine)
        has_keys = await Accounts(store, settings).any_keys()
    finally:
        store.close()
        await engine.dispose()
    if has_keys:
        return None
    if not is_loopback(host):
        raise AdgraphError(
            "FORBIDDEN",
            f"no API key exists, so a server on {host} would be open to anyone who reaches it: create one "
            "with `adgraph keys create --tenant NAME` (then every request needs a key), or serve on "
            "127.0.0.1, or set ADGRAPH_AUTH=open if this network is trusted",
            setting="ADGRAPH_AUTH",
        )
    return (
        "no API key exists yet: this server is open (loopback only, everyone is administrator) until "
        "`adgraph keys create --tenant NAME` makes one; from then on every request needs a key"
    )
