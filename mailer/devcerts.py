"""A throwaway CA and server certificate for local sinks, trusted only by configs that name the CA file."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS_FACTOR = 4  # a reused CA outlives several leaves, so a running client keeps trusting it


@dataclass(frozen=True)
class DevCerts:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_key_file(self) -> Path:
        return self.ca_file.with_name("dev-ca-key.pem")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """0600 from the first byte (never world-readable, even for an instant)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    tmp.replace(path)


def _reusable_ca(certs: DevCerts, until: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA already in the folder, if it is ours, readable, and valid past `until`."""
    try:
        ca = x509.load_pem_x509_certificate(certs.ca_file.read_bytes())
        key = serialization.load_pem_private_key(certs.ca_key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or ca.public_key() != key.public_key():
        return None
    return (ca, key) if ca.not_valid_after_utc > until else None


def make_dev_certs(folder: Path, hostname: str = "localhost", *, days: int = 1,
                   reuse_ca: bool = False, loopback: bool = True) -> DevCerts:
    """CA + a fresh leaf for `hostname`, localhost, 127.0.0.1 and ::1 (ECDSA P-256).

    `loopback=False` names `hostname` alone (tests of a certificate for another host).

    The leaf is valid `days` days and is made anew on every call, so restarting a sink
    renews it. With `reuse_ca`, a CA already in `folder` that outlives the new leaf is
    kept, so clients that trust its file keep working across restarts.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    leaf_until = now + dt.timedelta(days=days)
    certs = DevCerts(folder / "dev-ca.pem", folder / "sink-cert.pem", folder / "sink-key.pem")
    found = _reusable_ca(certs, leaf_until) if reuse_ca else None
    if found is not None:
        ca, ca_key = found
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder().subject_name(_name("mailer dev CA")).issuer_name(_name("mailer dev CA"))
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days * CA_DAYS_FACTOR))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(certs.ca_key_file, ca_key)
        certs.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys([hostname, "localhost"] if loopback else [hostname]))
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    if loopback:
        sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    leaf = (
        x509.CertificateBuilder().subject_name(_name(hostname)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(leaf_until)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(certs.key_file, key)
    certs.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return certs
