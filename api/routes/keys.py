"""``/v1/keys``: create (the key is shown once), list and revoke API keys; admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import needs
from api.deps import Plane
from durable_sessions.errors import (
    ConfigurationError,
    KeyExists,
    KeyNotFound,
    UniquenessViolation,
    UnknownContract,
)
from durable_sessions.hosting.apikeys import digest, key_prefix, new_key
from durable_sessions.model.access import KEY_ROLES, Permission, Role
from durable_sessions.model.records import KeyRecord, utcnow

router = APIRouter(tags=["keys"], dependencies=[needs(Permission.MANAGE_KEYS)])

KeyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]


class CreateKey(BaseModel):
    """``POST /v1/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: KeyName
    role: Role = Field(description="admin, operator, sender or reader")
    contract: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="The one contract the key may act on (every contract if absent)."
    )


class KeyOut(BaseModel):
    """An API key as listed: never the key, only its prefix."""

    name: str
    role: Role
    contract: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    """Updated at most once a minute."""

    @classmethod
    def of(cls, key: KeyRecord) -> KeyOut:
        """The view of a stored key."""
        return cls(
            name=key.name,
            role=key.role,
            contract=key.contract,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
        )


class KeyCreated(KeyOut):
    """A key just created, with the key itself: shown this once, stored only as a digest."""

    key: str


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(body: CreateKey, plane: Plane) -> KeyCreated:
    """Create a key with a role, optionally scoped to one contract; answers with it once."""
    if body.role not in KEY_ROLES:
        roles = ", ".join(KEY_ROLES)
        raise ConfigurationError(f"a key's role is one of {roles}, not {body.role}")
    contracts = {e.contract.name for e in plane.endpoints.values()}
    if body.contract is not None and body.contract not in contracts:
        raise UnknownContract(f"no endpoint here serves contract {body.contract!r}")
    key = new_key()
    prefix = key_prefix(key)
    assert prefix is not None
    record = KeyRecord(body.name, body.role, prefix, digest(key), utcnow(), body.contract)
    try:
        async with plane.store.transaction() as uow:
            if await uow.keys.get(body.name) is not None:
                raise KeyExists(f"a key named {body.name!r} exists; revoke it first")
            await uow.keys.add(record)
    except UniquenessViolation:
        raise KeyExists(f"a key named {body.name!r} exists; revoke it first") from None
    return KeyCreated(**KeyOut.of(record).model_dump(), key=key)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(plane: Plane) -> list[KeyOut]:
    """Every stored key (the configured admin keys of ``DS_API_KEYS`` are not listed)."""
    async with plane.store.snapshot() as uow:
        return [KeyOut.of(k) for k in await uow.keys.all()]


@router.delete("/keys/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(name: Annotated[str, Path(max_length=100)], plane: Plane) -> Response:
    """Revoke a key: every control plane refuses it from the next request on."""
    async with plane.store.transaction() as uow:
        removed = await uow.keys.remove(name)
    if not removed:
        raise KeyNotFound(f"no API key is named {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
