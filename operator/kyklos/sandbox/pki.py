"""The sandbox's own PKI: a CA, the API server's serving certificate, client certificates, SA keys.

Everything is generated locally with ``cryptography`` (ECDSA P-256 for certificates, which is
fast to generate and accepted by every component; RSA 2048 for the service-account signing key,
the most widely supported JWT algorithm, RS256). Files are written with mode 0600 into
``<data dir>/pki``; an existing, complete PKI directory is reused so a persistent data dir keeps
the same CA and tokens across restarts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_VALIDITY = dt.timedelta(days=365)
# Client identities of the components. O=system:masters makes the admin a cluster admin; the
# controller manager and scheduler use the users the bootstrap RBAC policy grants their roles.
ADMIN_USER = ("kyklos-sandbox-admin", "system:masters")
CONTROLLER_MANAGER_USER = ("system:kube-controller-manager", None)
SCHEDULER_USER = ("system:kube-scheduler", None)


@dataclass(frozen=True)
class Pki:
    """Paths of every PKI file the control plane uses."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, name: str) -> Path:
        """Certificate of the client ``name`` (admin, controller-manager, scheduler)."""
        return self.directory / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        """Private key of the client ``name``."""
        return self.directory / f"{name}.key"


CLIENTS = {
    "admin": ADMIN_USER,
    "controller-manager": CONTROLLER_MANAGER_USER,
    "scheduler": SCHEDULER_USER,
}


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _issue(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    now: dt.datetime,
    ca: bool = False,
    usages: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def apiserver_sans(service_ip: str, extra_ips: tuple[str, ...] = ()) -> list[x509.GeneralName]:
    """Names the API server is reached by: loopback, and the in-cluster service names and IP.

    ``extra_ips``: addresses it also listens on (the real node's bridge address).
    """
    names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = ["127.0.0.1", "::1", service_ip, *extra_ips]
    return [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]


def _complete(pki: Pki) -> bool:
    files = [pki.ca_cert, pki.ca_key, pki.apiserver_cert, pki.apiserver_key, pki.sa_key]
    files += [pki.sa_pub] + [pki.client_cert(c) for c in CLIENTS]
    files += [pki.client_key(c) for c in CLIENTS]
    return all(f.exists() for f in files)


def _serves_ips(cert_path: Path, ips: tuple[str, ...]) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not ips
    present = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return all(str(ipaddress.ip_address(ip)) in present for ip in ips)


def ensure_pki(
    directory: Path,
    service_ip: str,
    now: dt.datetime | None = None,
    extra_ips: tuple[str, ...] = (),
) -> Pki:
    """Create the PKI in ``directory`` unless a complete one is there; return its paths.

    A complete PKI whose API server certificate lacks one of ``extra_ips`` gets a new
    serving certificate from the same CA (a persistent data dir first used without a real
    node keeps its CA and tokens).
    """
    pki = Pki(directory)
    if _complete(pki):
        if not _serves_ips(pki.apiserver_cert, extra_ips):
            for path in (pki.apiserver_cert, pki.apiserver_key):
                path.unlink()
            issue_from_ca(
                pki,
                directory,
                "apiserver",
                ("kube-apiserver", None),
                server_names=[],
                server_ips=[],
                client=False,
                now=now,
                sans=apiserver_sans(service_ip, extra_ips),
            )
        return pki
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = now or dt.datetime.now(dt.UTC)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kyklos-sandbox-ca")
    ca_cert = _issue(ca_name, ca_key.public_key(), ca_name, ca_key, now=now, ca=True)
    _write(pki.ca_key, _key_pem(ca_key))
    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        _name("kube-apiserver"),
        server_key.public_key(),
        ca_name,
        ca_key,
        now=now,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=apiserver_sans(service_ip, extra_ips),
    )
    _write(pki.apiserver_key, _key_pem(server_key))
    _write(pki.apiserver_cert, server_cert.public_bytes(serialization.Encoding.PEM))

    for client, (user, group) in CLIENTS.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            _name(user, group),
            key.public_key(),
            ca_name,
            ca_key,
            now=now,
            usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        _write(pki.client_key(client), _key_pem(key))
        _write(pki.client_cert(client), cert.public_bytes(serialization.Encoding.PEM))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(pki.sa_key, _key_pem(sa_key))
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def issue_from_ca(
    pki: Pki,
    directory: Path,
    name: str,
    subject: tuple[str, str | None],
    *,
    server_names: list[str] | None = None,
    server_ips: list[str] | None = None,
    client: bool = True,
    now: dt.datetime | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[Path, Path]:
    """Sign a certificate for ``subject`` (CN, O) with the sandbox CA into ``directory``.

    Used for the real node's components (the kubelet's client and serving certificates,
    kube-proxy, CoreDNS, the API server's kubelet client). An existing pair is reused.
    """
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key} is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    sans = list(sans or [])
    sans += [x509.DNSName(n) for n in server_names or []]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips or []]
    if sans:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    cert = _issue(
        _name(*subject),
        key.public_key(),
        ca_cert.subject,
        ca_key,
        now=now or dt.datetime.now(dt.UTC),
        usages=usages,
        sans=sans or None,
    )
    _write(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
