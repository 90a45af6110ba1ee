"""The ACME protocol, through certbot's `acme` library. Synchronous: call it off the loop.

`AcmeClient` holds one account's connection to one directory. An order is
opened with `open_order` (its URL is what the caller records before going on)
and carried to its certificate by `complete`, which starts from whatever
state the CA says the order is in: authorizations still valid are reused,
challenges already answered are not answered again, a finalized order is only
downloaded. So `complete` after a crash resumes the same order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from services.domains.certificates import Issued

USER_AGENT = "DeployForge (acme-python)"
# Present: (identifier, the challenge, its validation), for the DNS or the edge to serve;
# withdraw: the same, once the CA is done with it.
Present = Callable[[str, messages.ChallengeBody, str], None]


class OrderInvalid(Exception):
    """The CA gave up on the order: a new one is needed."""


def new_key_pem() -> bytes:
    """A fresh P-256 private key (PEM, PKCS#8): for an account or a certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _jwk(key_pem: bytes) -> JWK:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return JWKEC(key=key)


@dataclass(frozen=True)
class AcmeConfig:
    directory_url: str
    contact_email: str = ""
    eab_kid: str = ""
    eab_hmac_key: str = ""
    # A CA bundle for the directory's TLS (pebble's own root in tests); "" uses the system's.
    ca_bundle: str = ""
    timeout: int = 30


class AcmeClient:
    def __init__(self, config: AcmeConfig, account_key_pem: bytes, account_uri: str = "") -> None:
        self.config = config
        self.key = _jwk(account_key_pem)
        verify: bool | str = config.ca_bundle or True
        self.net = client.ClientNetwork(
            self.key,
            alg=ES256,
            # requests takes a bundle's path as well as a bool
            verify_ssl=verify,  # type: ignore[arg-type]
            user_agent=USER_AGENT,
            timeout=config.timeout,
        )
        directory = client.ClientV2.get_directory(config.directory_url, self.net)
        self.acme = client.ClientV2(directory, self.net)
        if account_uri:
            self.net.account = messages.RegistrationResource(
                uri=account_uri, body=messages.Registration()
            )

    def register(self) -> str:
        """Create the account (or find the one this key has): its URL."""
        eab = None
        if self.config.eab_kid:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=self.key.public_key(),
                kid=self.config.eab_kid,
                hmac_key=self.config.eab_hmac_key,
                directory=self.acme.directory,
            )
        elif self.acme.external_account_required():
            raise errors.Error("this CA requires external account binding (set ACME_EAB_KID)")
        registration = messages.NewRegistration.from_data(
            email=self.config.contact_email or None,
            terms_of_service_agreed=True,
            external_account_binding=eab,
        )
        try:
            account = self.acme.new_account(registration)
        except errors.ConflictError as exc:  # this key has an account already
            account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            self.net.account = account
        return str(account.uri)

    def open_order(self, key_pem: bytes, names: list[str]) -> str:
        """A new order for `names`: its URL."""
        order = self.acme.new_order(crypto_util.make_csr(key_pem, names))
        assert order.uri
        return str(order.uri)

    def complete(
        self,
        order_url: str,
        key_pem: bytes,
        names: list[str],
        challenge_type: str,
        present: Present,
        withdraw: Present,
        deadline: dt.datetime,
    ) -> str:
        """Carry the order at `order_url` to its certificate: the full chain (PEM)."""
        body = messages.Order.from_json(self.acme._post_as_get(order_url).json())
        if body.status == messages.STATUS_INVALID:
            raise OrderInvalid(_problem(body.error) or "the CA marked the order invalid")
        authorizations = [
            self.acme._authzr_from_response(self.acme._post_as_get(url), uri=url)
            for url in body.authorizations
        ]
        presented: list[tuple[str, messages.ChallengeBody, str]] = []
        try:
            for authz in authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue  # still valid from an earlier order: reused
                challenge = _pick(authz, challenge_type)
                response, validation = challenge.response_and_validation(self.key)
                identifier = str(authz.body.identifier.value)
                present(identifier, challenge, validation)
                presented.append((identifier, challenge, validation))
                if challenge.status == messages.STATUS_PENDING:
                    self.acme.answer_challenge(challenge, response)
            order = messages.OrderResource(
                body=body,
                uri=order_url,
                authorizations=authorizations,
                csr_pem=crypto_util.make_csr(key_pem, names),
            )
            if body.status == messages.STATUS_PENDING:
                order = self.acme.poll_authorizations(order, deadline)
            order = self.acme.finalize_order(order, deadline)
        except errors.ValidationError as exc:
            raise OrderInvalid(_validation_problem(exc)) from None
        except errors.IssuanceError as exc:
            raise OrderInvalid(_problem(exc.error) or "issuance failed") from None
        finally:
            for one in presented:
                withdraw(*one)
        assert order.fullchain_pem
        return str(order.fullchain_pem)

    def renewal_time(self, fullchain_pem: str) -> dt.datetime | None:
        """When the CA suggests renewing (ACME Renewal Information), if it says."""
        try:
            suggested, _ = self.acme.renewal_time(fullchain_pem.encode())
        except errors.ARIError:
            return None
        if suggested is None:
            return None
        return suggested if suggested.tzinfo else suggested.replace(tzinfo=dt.UTC)

    def revoke(self, fullchain_pem: str, reason: int = 0) -> None:
        self.acme.revoke(x509.load_pem_x509_certificate(fullchain_pem.encode()), reason)


def _pick(authz: messages.AuthorizationResource, challenge_type: str) -> messages.ChallengeBody:
    wanted = challenges.HTTP01 if challenge_type == "http-01" else challenges.DNS01
    for challenge in authz.body.challenges:
        if isinstance(challenge.chall, wanted):
            return challenge
    raise OrderInvalid(f"the CA offers no {challenge_type} challenge for this name")


def _problem(error: messages.Error | None) -> str:
    if error is None:
        return ""
    return str(error.detail or error.typ or "")


def _validation_problem(exc: errors.ValidationError) -> str:
    for authz in exc.failed_authzrs:
        for challenge in authz.body.challenges:
            if challenge.error is not None:
                return _problem(challenge.error)
    return "the CA could not validate the challenge"


def describe(fullchain_pem: str) -> Issued:
    """What the leaf certificate of a chain says of itself."""
    leaf = x509.load_pem_x509_certificate(fullchain_pem.encode())
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in sans.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    return Issued(
        serial=format(leaf.serial_number, "x"),
        issuer=leaf.issuer.rfc4514_string(),
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )
