"""Authenticity: an Ed25519 signature (``cryptography``) over the exact bytes of manifest.json.

The manifest lists the sha256 of every other file, so one detached signature covers the whole
bundle. ``manifest.json.sig`` holds the signature and the signing key's fingerprint (the same
``SHA256:...`` that ``ssh-keygen -lf`` prints); the public key itself travels separately, by
whatever channel the device trusts (``--trusted-key``). Keys are standard files: PEM (PKCS#8 /
SubjectPublicKeyInfo, e.g. ``openssl genpkey -algorithm ed25519``) or OpenSSH ``ssh-ed25519``.

`build` adds (or rebuilds) engine files in an unpacked signed bundle; it keeps the signed manifest
as ``manifest.signed.json``, and verification checks that the current manifest differs from it only
in engine files and targets (those are reported as built on the device, not covered by the signature).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from resnext_deploy.errors import InputError, UsageError, check_record, shorten
from resnext_deploy.files import parse_json

SIGNATURE_NAME = "manifest.json.sig"
SIGNED_MANIFEST_NAME = "manifest.signed.json"
SIGNATURE_SCHEMA = "resnext-deploy/signature"
PASSPHRASE_ENV = "RESNEXT_DEPLOY_KEY_PASSPHRASE"
MAX_SIGNATURE_BYTES = 64 * 1024
_DEVICE_FIELDS = ("files", "targets")  # what `build` may add to a signed manifest
MAX_SIGNED_MANIFEST_BYTES = 16 * 1024 * 1024


class SignatureRecord(BaseModel):
    """``manifest.json.sig``, typed: a key fingerprint and a signature are strings of bounded length."""

    model_config = ConfigDict(extra="allow", strict=True)

    schema_name: Literal["resnext-deploy/signature"] = Field(alias="schema")
    algorithm: Literal["ed25519"]
    key: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    signature: Annotated[StrictStr, Field(min_length=1, max_length=1024)]


@dataclass(frozen=True)
class TrustPolicy:
    """Which keys a bundle may be signed by, and whether an unsigned bundle is refused."""

    trusted_keys: tuple[Path, ...] = ()
    require_signature: bool = False

    def __post_init__(self) -> None:
        if self.require_signature and not self.trusted_keys:
            raise UsageError("--require-signature needs --trusted-key PUBLIC_KEY",
                             hint="pass the public key the bundles are signed with (PEM or ssh-ed25519)")


@dataclass
class SignatureStatus:
    """What the signature check found: signed or not, by which key, verified against a trusted key or not."""

    signed: bool
    verified: bool = False
    key: str | None = None
    note: str = ""
    unsigned_files: list[str] = field(default_factory=list)  # added on the device by `build`

    def to_dict(self) -> dict[str, Any]:
        return {"signed": self.signed, "verified": self.verified, "key": self.key, "note": self.note,
                "unsigned_files": self.unsigned_files}


def fingerprint(public_key: Any) -> str:
    """``SHA256:<base64>`` of the key's OpenSSH wire form: what ``ssh-keygen -lf`` prints for it."""
    from cryptography.hazmat.primitives import serialization

    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}", hint="pass the path of a key file") from None


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from PEM (PKCS#8) or OpenSSH format; passphrase from $RESNEXT_DEPLOY_KEY_PASSPHRASE."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path, "signing key")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    password = passphrase.encode("utf-8") if passphrase else None
    loader = serialization.load_ssh_private_key if data.lstrip().startswith(b"-----BEGIN OPENSSH") else serialization.load_pem_private_key
    try:
        try:
            key = loader(data, password=password)
        except TypeError:
            if password is None:
                raise
            # cryptography refuses a password for an unencrypted key: a passphrase set for every job (CI) is ignored
            key = loader(data, password=None)
    except TypeError:
        raise UsageError(f"signing key {path} is encrypted", hint=f"set {PASSPHRASE_ENV} to its passphrase") from None
    except ValueError as exc:
        raise UsageError(f"cannot load signing key {path}: {exc}",
                         hint="pass an Ed25519 private key, e.g. made with `openssl genpkey -algorithm ed25519 -out key.pem`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"signing key {path} is a {type(key).__name__}, not Ed25519",
                         hint="make one with `openssl genpkey -algorithm ed25519 -out key.pem`")
    return key


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or an OpenSSH ``ssh-ed25519`` line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path, "trusted key")
    try:
        key = (serialization.load_ssh_public_key(data) if data.lstrip().startswith(b"ssh-")
               else serialization.load_pem_public_key(data))
    except ValueError as exc:
        raise UsageError(f"cannot load trusted key {path}: {exc}",
                         hint="pass an Ed25519 public key (PEM, e.g. `openssl pkey -in key.pem -pubout`, or ssh-ed25519)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"trusted key {path} is a {type(key).__name__}, not Ed25519", hint="pass an Ed25519 public key")
    return key


def sign_manifest(manifest_bytes: bytes, key_path: Path) -> bytes:
    """The ``manifest.json.sig`` content for ``manifest_bytes`` signed with the private key at ``key_path``."""
    key = load_private_key(key_path)
    record = {
        "schema": SIGNATURE_SCHEMA,
        "schema_version": 1,
        "algorithm": "ed25519",
        "key": fingerprint(key.public_key()),
        "signed_file": "manifest.json",
        "signed_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    return (json.dumps(record, indent=2) + "\n").encode("utf-8")


def _parse_signature(data: bytes, label: str) -> dict[str, Any]:
    hint = "do not use this bundle; re-sign it"
    record = parse_json(data, f"{label}: {SIGNATURE_NAME}", hint, MAX_SIGNATURE_BYTES)
    if not isinstance(record, dict) or record.get("schema") != SIGNATURE_SCHEMA or record.get("algorithm") != "ed25519":
        raise InputError(f"{label}: {SIGNATURE_NAME} is not an ed25519 resnext-deploy signature", hint=hint)
    check_record(SignatureRecord, record, f"{label}: {SIGNATURE_NAME}", hint)
    try:
        record["raw"] = base64.b64decode(record["signature"], validate=True)
    except ValueError as exc:
        raise InputError(f"{label}: {SIGNATURE_NAME} is unreadable ({shorten(exc)})", hint=hint) from None
    return record


def check_signature(directory: Path, manifest: dict[str, Any], policy: TrustPolicy, label: str) -> SignatureStatus:
    """Verify ``directory``'s signature under ``policy``; ``InputError`` when it is bad, unknown or required but absent."""
    from cryptography.exceptions import InvalidSignature

    directory = Path(directory)
    sig_path = directory / SIGNATURE_NAME
    if not sig_path.is_file():
        if policy.require_signature:
            raise InputError(f"{label} is not signed, and --require-signature is set",
                             hint="use a bundle made with `resnext-deploy package --sign KEY`")
        return SignatureStatus(False, note="not signed: checksums prove the files are intact, not who made them")
    if sig_path.stat().st_size > MAX_SIGNATURE_BYTES:
        raise InputError(f"{label}: {SIGNATURE_NAME} is too large to be a signature", hint="do not use this bundle")
    record = _parse_signature(sig_path.read_bytes(), label)
    signed_path = directory / SIGNED_MANIFEST_NAME
    signed_bytes = (signed_path if signed_path.is_file() else directory / "manifest.json").read_bytes()
    unsigned = _device_additions(manifest, signed_bytes, label) if signed_path.is_file() else []
    if not policy.trusted_keys:
        return SignatureStatus(True, False, record["key"], f"signed by {record['key']}; not verified (pass --trusted-key)", unsigned)
    keys = {fingerprint(key): key for key in (load_public_key(path) for path in policy.trusted_keys)}
    key = keys.get(record["key"])
    if key is None:
        raise InputError(f"{label} is signed by {record['key']}, which is not a trusted key ({', '.join(keys)})",
                         hint="pass the right --trusted-key, or do not use this bundle")
    try:
        key.verify(record["raw"], signed_bytes)
    except InvalidSignature:
        raise InputError(f"{label}: the signature does not match manifest.json (the bundle was modified after signing)",
                         hint="do not use this bundle; get a freshly signed one") from None
    return SignatureStatus(True, True, record["key"], f"signature verified: signed by {record['key']}", unsigned)


def _device_additions(manifest: dict[str, Any], signed_bytes: bytes, label: str) -> list[str]:
    """Files `build` added or rebuilt on the device (engines and their sidecars); ``InputError`` when the manifest
    differs from the signed one in anything else (model, preprocessing, classes, other files)."""
    signed = parse_json(signed_bytes, f"{label}: {SIGNED_MANIFEST_NAME}", "do not use this bundle", MAX_SIGNED_MANIFEST_BYTES)
    try:
        return _additions(manifest, signed, label)
    except (AttributeError, KeyError, TypeError):  # a signed manifest of the wrong shape; its signature is checked later
        raise InputError(f"{label}: {SIGNED_MANIFEST_NAME} is malformed", hint="do not use this bundle") from None


def _additions(manifest: dict[str, Any], signed: Any, label: str) -> list[str]:
    if {k: v for k, v in manifest.items() if k not in _DEVICE_FIELDS} != {k: v for k, v in signed.items() if k not in _DEVICE_FIELDS}:
        raise InputError(f"{label}: manifest.json differs from the signed manifest beyond files added by `build`",
                         hint="do not use this bundle; unpack the signed tarball again")
    engines = {name for target in signed.get("targets", []) for name in (target.get("artifact"), target.get("sidecar")) if name}
    current = {f["path"]: f for f in manifest.get("files", [])}
    changed = [f["path"] for f in signed.get("files", []) if current.get(f["path"]) != f and f["path"] not in engines]
    if changed:
        raise InputError(f"{label}: signed files changed or were removed: {', '.join(changed[:5])}",
                         hint="do not use this bundle; unpack the signed tarball again")
    signed_records = {f["path"]: f for f in signed.get("files", [])}
    return sorted(name for name, record in current.items() if signed_records.get(name) != record)
