"""Signing and checking provenance: a DSSE envelope signed with a key (air-gapped sites, tests), or
a Sigstore bundle signed keyless with the CI system's OIDC identity (Fulcio certificate, Rekor entry).

The key mode uses securesystemslib, the library behind in-toto's own DSSE; the keyless mode uses
sigstore-python (the `keyless` extra). The private key reaches runner as a file or an environment
variable, never as an argument, and is held only in this process's memory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.model.errors import UserError

DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEY_VARIABLE = "RUNNER_SIGNING_KEY"  # a PEM private key, for CI secrets
TOKEN_VARIABLE = "SIGSTORE_ID_TOKEN"  # an OIDC token for keyless signing (GitLab's id_tokens, a GitHub step)


class Unverified(Exception):
    """A signature that does not check out; the message says which way."""


class Signer(Protocol):
    """Signs an in-toto statement; says how (for the report)."""

    description: str

    def sign(self, payload: bytes, payload_type: str) -> tuple[str, bytes]: ...  # (media type, bytes)


@dataclass
class KeySigner:
    """DSSE with a private key (Ed25519, ECDSA or RSA, PEM)."""

    pem: bytes = field(repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        from securesystemslib.signer import CryptoSigner

        self._signer = CryptoSigner(_private_key(self.pem))
        self.description = self.description or f"key {self._signer.public_key.keyid[:16]}"

    @property
    def keyid(self) -> str:
        return self._signer.public_key.keyid

    def sign(self, payload: bytes, payload_type: str) -> tuple[str, bytes]:
        from securesystemslib.dsse import Envelope

        envelope = Envelope(payload, payload_type, {})
        envelope.sign(self._signer)
        return DSSE_MEDIA_TYPE, json.dumps(envelope.to_dict(), sort_keys=True).encode()


@dataclass
class KeylessSigner:
    """Sigstore keyless: a short-lived certificate for the CI identity of an OIDC token, asked for when
    signing (a token fetched before hours of building would have expired): the token given, else
    GitHub Actions' token service (request URL and token), else the CI system's ambient credential.
    Not checked here (no Fulcio or Rekor reachable); the CI definitions use it."""

    token: str = field(default="", repr=False)
    request_url: str = ""
    request_token: str = field(default="", repr=False)
    description: str = "sigstore keyless"

    def identity_token(self) -> str:
        if self.token:
            return self.token
        if self.request_url and self.request_token:
            import httpx

            # the request URL carries a query of its own (api-version): add to it, never replace it
            url = self.request_url + ("&" if "?" in self.request_url else "?") + "audience=sigstore"
            r = httpx.get(url, timeout=30, headers={"Authorization": f"bearer {self.request_token}"})
            r.raise_for_status()
            return r.json()["value"]
        from sigstore.oidc import detect_credential

        found = detect_credential()
        if not found:
            raise UserError(f"keyless signing found no OIDC identity: ${TOKEN_VARIABLE}, or CI's own (GitHub Actions "
                            "with `permissions: id-token: write`, GitLab with `id_tokens`)")
        return found

    def sign(self, payload: bytes, payload_type: str) -> tuple[str, bytes]:
        from sigstore import dsse
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken
        from sigstore.sign import SigningContext

        context = SigningContext.from_trust_config(ClientTrustConfig.production())
        with context.signer(IdentityToken(self.identity_token()), cache=True) as signer:
            bundle = signer.sign_dsse(dsse.Statement(payload))
        return BUNDLE_MEDIA_TYPE, bundle.to_json().encode()


def _private_key(pem: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise UserError(f"the signing key is not an unencrypted PEM private key ({e})",
                        hint="make one with `runner keygen DIR`") from None


def signer_from(key_file: Path | None, keyless: bool, env: dict[str, str] | None = None) -> Signer | None:
    """The signer a command was given: --sign-key FILE, $RUNNER_SIGNING_KEY, or --keyless (with
    $SIGSTORE_ID_TOKEN or the CI system's ambient credential); None when none was."""
    env = dict(os.environ) if env is None else env
    if keyless:
        try:
            import sigstore  # noqa: F401
        except ImportError:
            raise UserError("keyless signing needs sigstore: pip install 'runner[keyless]'") from None
        ambient = env.get("ACTIONS_ID_TOKEN_REQUEST_URL", "") or env.get("GITLAB_CI", "")
        if not env.get(TOKEN_VARIABLE) and not ambient:
            raise UserError(f"--keyless needs an OIDC identity: ${TOKEN_VARIABLE}, or CI's own (GitHub Actions with "
                            "`permissions: id-token: write`, GitLab with `id_tokens`)")
        return KeylessSigner(env.get(TOKEN_VARIABLE, ""), env.get("ACTIONS_ID_TOKEN_REQUEST_URL", ""),
                             env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", ""))
    if key_file is not None:
        try:
            return KeySigner(key_file.read_bytes(), f"key file {key_file.name}")
        except OSError as e:
            raise UserError(f"cannot read the signing key {key_file}: {e.strerror}") from None
    if env.get(KEY_VARIABLE, "").strip():
        return KeySigner(env[KEY_VARIABLE].encode(), f"key from ${KEY_VARIABLE}")
    return None


@dataclass
class Trust:
    """Whom verify believes: public keys, or a Sigstore identity (and its issuer)."""

    keys: list = field(default_factory=list)  # securesystemslib Keys
    identity: str = ""
    issuer: str = ""

    @classmethod
    def from_args(cls, key_files: list[Path], identity: str, issuer: str) -> Trust:
        if not key_files and not identity:
            raise UserError("verify needs whom to trust: --key PUBLIC.pem (key-signed) or --identity "
                            "(Sigstore keyless, e.g. https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main)")
        return cls([public_key(p) for p in key_files], identity, issuer)

    def open(self, media_type: str, data: bytes) -> tuple[str, bytes, str]:
        """(payload type, payload, who signed) of a signed artifact that this trust accepts."""
        if media_type == DSSE_MEDIA_TYPE:
            return self._open_dsse(data)
        if media_type == BUNDLE_MEDIA_TYPE:
            return self._open_bundle(data)
        raise Unverified(f"unsigned: an artifact of type {media_type!r} carries no signature runner knows")

    def _open_dsse(self, data: bytes) -> tuple[str, bytes, str]:
        from securesystemslib.dsse import Envelope
        from securesystemslib.exceptions import VerificationError

        try:
            envelope = Envelope.from_dict(json.loads(data))
        except (ValueError, KeyError, TypeError) as e:
            raise Unverified(f"not a DSSE envelope ({e})") from None
        if not envelope.signatures:
            raise Unverified("unsigned: the envelope has no signature")
        if not self.keys:
            raise Unverified("signed with a key, and no --key was given to check it with")
        try:
            accepted = envelope.verify(self.keys, 1)
        except VerificationError:
            ids = ", ".join(s[:16] for s in envelope.signatures)
            raise Unverified(f"not signed by the given key (signed by key {ids}; trusted: "
                             f"{', '.join(k.keyid[:16] for k in self.keys)})") from None
        return envelope.payload_type, envelope.payload, "key " + ", ".join(k[:16] for k in accepted)

    def _open_bundle(self, data: bytes) -> tuple[str, bytes, str]:
        if not self.identity:
            raise Unverified("signed keyless (Sigstore), and no --identity was given to check it with")
        try:
            from sigstore.errors import VerificationError
            from sigstore.models import Bundle
            from sigstore.verify import Verifier, policy
        except ImportError:
            raise UserError("checking keyless signatures needs sigstore: pip install 'runner[keyless]'") from None
        try:
            payload_type, payload = Verifier.production().verify_dsse(
                Bundle.from_json(data), policy.Identity(identity=self.identity, issuer=self.issuer or None))
        except VerificationError as e:
            raise Unverified(f"the Sigstore signature does not check out for {self.identity}: {e}") from None
        return payload_type, payload, f"sigstore {self.identity}"


def public_key(path: Path):
    """A securesystemslib key from a PEM public key file (or the public half of a private one)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the key {path}: {e.strerror}") from None
    try:
        key = load_pem_public_key(data)
    except ValueError:
        key = _private_key(data).public_key()
    return SSlibKey.from_crypto(key)


def keygen(folder: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair: signing.key (mode 0600) and signing.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "signing.key", folder / "signing.pub"
    for p in (private, public):
        if p.exists():
            raise UserError(f"{p} exists already; keys are never overwritten")
    key = Ed25519PrivateKey.generate()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
