"""Who is asking: server-issued, signed voter ids and the client's address.

A voter id is ``<nonce>.<signature>``: 16 random bytes and an HMAC-SHA256 of them under the
server's voter secret (both base64url). Only the server can mint one, so a client cannot pick
another voter's id, nor make up fresh ones faster than the per-address limit on new voters
allows. The secret comes from ``ARENA_VOTER_SECRET`` (give every process and host the same
value) or from ``$ARENA_HOME/voter-secret``, created once with a random key; processes that
share ``ARENA_HOME`` share that file.

Client addresses are only used as limit keys, and only as an HMAC under the same secret, so
the database never holds an address in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from arena.errors import Forbidden, UserError
from arena.settings import Settings

__all__ = [
    "SECRET_FILE",
    "VoterIds",
    "address_key",
    "client_address",
    "issue_voter_id",
    "limit_address",
    "verify_voter_id",
    "voter_secret",
]

SECRET_FILE = "voter-secret"
_NONCE_BYTES = 16
MIN_SECRET_BYTES = 32
_SECRETS: dict[tuple[str, str], bytes] = {}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _read_or_create(path: Path) -> bytes:
    """The key in ``path``, created (mode 0600, exclusively) when absent; a file that does not
    hold a whole key (empty, truncated, not hex) is refused, never used."""
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise UserError(f"{path} does not hold a hex key; delete it to make a new one") from None
    else:
        if len(key) < MIN_SECRET_BYTES:
            raise UserError(
                f"{path} holds a {len(key)}-byte key; at least {MIN_SECRET_BYTES} bytes are "
                "needed (an empty or truncated file?); delete it to make a new one"
            )
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_or_create(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def voter_secret(settings: Settings) -> bytes:
    """The key that signs voter ids (from the settings, else ``$ARENA_HOME/voter-secret``)."""
    if settings.voter_secret is not None:
        given = settings.voter_secret.get_secret_value().encode()
        if len(given) < MIN_SECRET_BYTES:
            raise UserError(
                f"ARENA_VOTER_SECRET is {len(given)} bytes; at least {MIN_SECRET_BYTES} are "
                "needed (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return given
    # Keyed by the absolute path (no symlink resolution: that costs a syscall per path
    # component on every request); two spellings of one file read the same key.
    path = os.path.abspath(settings.home / SECRET_FILE)
    cache_key = ("file", path)
    if cache_key not in _SECRETS:
        _SECRETS[cache_key] = _read_or_create(Path(path))
    return _SECRETS[cache_key]


def _signature(key: bytes, nonce: str) -> str:
    return _b64(hmac.new(key, b"voter:" + nonce.encode(), hashlib.sha256).digest())


def issue_voter_id(settings: Settings) -> str:
    """A fresh voter id signed by this server."""
    nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
    return f"{nonce}.{_signature(voter_secret(settings), nonce)}"


def verify_voter_id(settings: Settings, value: str | None) -> str:
    """``value`` if it is a voter id this server signed; else a 403 that says how to get one."""
    nonce, _, signature = (value or "").partition(".")
    if (
        value is None
        or len(value) > 100
        or not nonce
        or not hmac.compare_digest(signature.encode(), _signature(voter_secret(settings), nonce)
                                   .encode())
    ):
        raise Forbidden(
            "voter id was not issued by this server; get one from POST /api/v1/voters "
            "(or the arena_voter cookie) and send it back unchanged"
        )
    return value


class VoterIds:
    """:func:`verify_voter_id` under one server's settings, remembering the ids it accepted.

    A signature, once valid, stays valid (the key never changes while the process runs), so
    a voter's later requests skip the HMAC and the key lookup: each voter sends its id on
    every request. At most ``MAX_REMEMBERED`` ids are kept; past that the memory starts over.
    """

    MAX_REMEMBERED = 65536

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._accepted: set[str] = set()

    def verify(self, value: str) -> str:
        """``value`` if this server signed it; else :func:`verify_voter_id`'s 403."""
        if value in self._accepted:
            return value
        verify_voter_id(self.settings, value)
        if len(self._accepted) >= self.MAX_REMEMBERED:
            self._accepted.clear()
        self._accepted.add(value)
        return value


def client_address(settings: Settings, peer: str | None, forwarded: Sequence[str] = ()) -> str:
    """The client's address, the one rule for the JSON API and the page: with
    ``ARENA_TRUSTED_PROXY_HEADER`` set, the rightmost entry of that header (the one the proxy
    itself added; ``forwarded`` holds every line of the header in the order received, and
    several lines read as one comma-separated list), else the connection's peer address."""
    if settings.trusted_proxy_header:
        for line in reversed(forwarded):
            last = line.split(",")[-1].strip()
            if last:
                return last
            if line.strip():
                break  # a list ending in an empty entry names no address
    return peer or "unknown"


def limit_address(settings: Settings, address: str) -> str:
    """The address as a limit counts it: an IPv6 address stands for its network of
    ``ARENA_IPV6_PREFIX`` bits (a host can pick any address of its own /64), an IPv4-mapped
    IPv6 address for its IPv4 address; anything else as given."""
    try:
        parsed = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        network = ipaddress.IPv6Network((parsed, settings.ipv6_prefix), strict=False)
        return str(network)
    return str(parsed)


def address_key(settings: Settings, address: str) -> str:
    """The limit key of an address: an HMAC, never the address itself."""
    grouped = limit_address(settings, address)
    digest = hmac.new(voter_secret(settings), b"address:" + grouped.encode(), hashlib.sha256)
    return digest.hexdigest()
