"""Private keys at rest: sealed with the master key in a KV bucket (`<ns>_domains_keys`).

- `account.<digest of the directory URL>`: the installation's ACME account on
  that CA (its key and URL), one for all organizations;
- `pending.<domain_id>`: the key of the certificate being ordered, written
  before the order is opened, so that a resumed order finalizes with the same
  key; removed once the certificate is served.

The served certificates' keys live, sealed the same way, in the edge bucket
entries the edge loads. No key is ever in an event, a response or a log line.
Back this bucket up with the NATS data (docs/operations.md): losing it means a
new ACME account and new certificates, nothing worse.
"""

from __future__ import annotations

import contextlib
import hashlib

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.crypto import SecretBox
from libs.kv import bucket_name as named_bucket
from libs.kv import file_bucket
from services.edge.table import KEY_PURPOSE

ACCOUNT_PURPOSE = "acme-account-key"


class Account(msgspec.Struct, frozen=True, kw_only=True):
    sealed_key: str
    uri: str


class PendingKey(msgspec.Struct, frozen=True, kw_only=True):
    sealed_key: str


def bucket_name(namespace: str) -> str:
    return named_bucket(namespace, "domains_keys")


async def bucket(js: JetStreamContext, namespace: str, replicas: int = 1) -> KeyValue:
    return await file_bucket(js, bucket_name(namespace), replicas)


class KeyStore:
    def __init__(self, kv: KeyValue, box: SecretBox) -> None:
        self.kv = kv
        self.box = box

    @staticmethod
    def _account_key(directory_url: str) -> str:
        return "account." + hashlib.sha256(directory_url.encode()).hexdigest()[:32]

    async def account(self, directory_url: str) -> tuple[bytes, str] | None:
        """The account's key (PEM) and URL on that directory, if one was made."""
        try:
            entry = await self.kv.get(self._account_key(directory_url))
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        account = msgspec.json.decode(entry.value, type=Account)
        return self.box.open(account.sealed_key, purpose=ACCOUNT_PURPOSE), account.uri

    async def keep_account(self, directory_url: str, key_pem: bytes, uri: str) -> bool:
        """Keep a new account; False if another replica kept one first (use that one)."""
        account = Account(sealed_key=self.box.seal(key_pem, purpose=ACCOUNT_PURPOSE), uri=uri)
        try:
            await self.kv.create(self._account_key(directory_url), msgspec.json.encode(account))
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def pending(self, domain_id: str) -> bytes | None:
        try:
            entry = await self.kv.get(f"pending.{domain_id}")
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        pending = msgspec.json.decode(entry.value, type=PendingKey)
        return self.box.open(pending.sealed_key, purpose=KEY_PURPOSE)

    async def keep_pending(self, domain_id: str, key_pem: bytes) -> None:
        pending = PendingKey(sealed_key=self.box.seal(key_pem, purpose=KEY_PURPOSE))
        await self.kv.put(f"pending.{domain_id}", msgspec.json.encode(pending))

    async def drop_pending(self, domain_id: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.kv.delete(f"pending.{domain_id}")
