"""Knot DNS (Debian's `knot` package) as an authoritative server that takes RFC 2136
updates signed with a TSIG key, for one zone the test names."""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import tempfile
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from libs.embedded import free_port
from tests.challtestsrv import require_binary

KEY_NAME = "deployforge-test"


class Knot:
    def __init__(self, zone: str, records: list[str]) -> None:
        """`records`: zone-file lines (relative names), e.g. `"*.apps 60 A 127.0.0.1"`."""
        self.zone = zone
        self.records = records
        self.port = free_port()
        self.key_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self._dir = Path(tempfile.mkdtemp(prefix="knot-"))
        self._process: asyncio.subprocess.Process | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        binary = require_binary("knotd", package="knot")
        (self._dir / "db").mkdir()  # the journal that dynamic updates are written to
        zone_file = self._dir / f"{self.zone}.zone"
        zone_file.write_text(
            f"$ORIGIN {self.zone}.\n$TTL 60\n"
            f"@ SOA ns.{self.zone}. admin.{self.zone}. 1 3600 600 86400 60\n"
            f"@ NS ns.{self.zone}.\nns A 127.0.0.1\n" + "\n".join(self.records) + "\n"
        )
        (self._dir / "knot.conf").write_text(
            f"""server:
    rundir: "{self._dir}"
    listen: 127.0.0.1@{self.port}
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {self.key_secret}
acl:
  - id: update
    key: {KEY_NAME}
    action: update
database:
    storage: "{self._dir}/db"
control:
    listen: "{self._dir}/knot.sock"
log:
  - target: stdout
    any: info
zone:
  - domain: {self.zone}
    storage: "{self._dir}"
    file: "{self.zone}.zone"
    acl: update
    zonefile-sync: -1
"""
        )
        log = (self._dir / "knot.log").open("wb")
        self._process = await asyncio.create_subprocess_exec(
            binary, "-c", str(self._dir / "knot.conf"), stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        log.close()
        for _ in range(200):
            try:
                query = dns.message.make_query(f"{self.zone}.", dns.rdatatype.SOA)
                response = await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                if response.answer:
                    return
            except (TimeoutError, OSError, dns.exception.DNSException):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"knotd did not start: {(self._dir / 'knot.log').read_text()}")

    async def set_txt(self, name: str, value: str) -> None:
        """What a domain's owner does: a TXT record, by a signed update."""
        keyring = dns.tsigkeyring.from_text({KEY_NAME: self.key_secret})
        update = dns.update.UpdateMessage(f"{self.zone}.", keyring=keyring)
        update.replace(f"{name}.", 60, "TXT", f'"{value}"')
        response = await dns.asyncquery.tcp(update, "127.0.0.1", port=self.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())

    async def txt(self, name: str) -> list[str]:
        query = dns.message.make_query(f"{name}.", dns.rdatatype.TXT)
        response = await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=5)
        return [b"".join(r.strings).decode() for rrset in response.answer for r in rrset]

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
