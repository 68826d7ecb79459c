"""The sandbox PKI: a CA that signs the API server's serving cert and the component identities."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kyklos.sandbox.pki import CLIENTS, ensure_pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_certificate_is_signed_by_the_sandbox_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "10.96.0.1")
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for path in [pki.apiserver_cert, *(pki.client_cert(c) for c in CLIENTS)]:
        cert = _cert(path)
        cert.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_serving_certificate_names_loopback_and_in_cluster_service(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "10.96.0.1")
    cert = _cert(pki.apiserver_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.96.0.1") in sans.get_values_for_type(x509.IPAddress)
    dns = sans.get_values_for_type(x509.DNSName)
    assert {"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= set(
        dns
    )
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_admin_is_in_system_masters_and_components_use_their_rbac_users(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "10.96.0.1")
    admin = _cert(pki.client_cert("admin")).subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    kcm = _cert(pki.client_cert("controller-manager")).subject
    assert (
        kcm.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-controller-manager"
    )
    sched = _cert(pki.client_cert("scheduler")).subject
    assert sched.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-scheduler"
    for client in CLIENTS:
        usage = _cert(pki.client_cert(client)).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        )
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usage.value


def test_keys_match_certificates_and_sa_key_pair_is_rsa(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "10.96.0.1")
    for cert_path, key_path in [
        (pki.apiserver_cert, pki.apiserver_key),
        *((pki.client_cert(c), pki.client_key(c)) for c in CLIENTS),
    ]:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key() == _cert(cert_path).public_key()
    sa_key = serialization.load_pem_private_key(pki.sa_key.read_bytes(), None)
    assert isinstance(sa_key, rsa.RSAPrivateKey)
    assert serialization.load_pem_public_key(pki.sa_pub.read_bytes()) == sa_key.public_key()


def test_private_files_are_owner_only(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "10.96.0.1")
    for path in [pki.ca_key, pki.apiserver_key, pki.sa_key, pki.client_key("admin")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_complete_pki_is_reused(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path / "pki", "10.96.0.1")
    ca_before = first.ca_cert.read_bytes()
    sa_before = first.sa_key.read_bytes()
    second = ensure_pki(tmp_path / "pki", "10.96.0.1")
    assert second.ca_cert.read_bytes() == ca_before
    assert second.sa_key.read_bytes() == sa_before


def test_incomplete_pki_is_regenerated(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path / "pki", "10.96.0.1")
    ca_before = first.ca_cert.read_bytes()
    first.client_key("admin").unlink()
    second = ensure_pki(tmp_path / "pki", "10.96.0.1")
    assert second.client_key("admin").exists()
    assert second.ca_cert.read_bytes() != ca_before
    _cert(second.client_cert("admin")).verify_directly_issued_by(_cert(second.ca_cert))
