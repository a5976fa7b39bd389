"""The worker port over TLS: Buildbot's `ssl:` server endpoint on the master, Twisted's `tls:`
client endpoint on every worker, which checks the master's certificate against the farm's own
(never the machine's trust store, so no other certificate authority can stand in for the master).

The certificate is the operator's (farm.json `worker_tls_cert`, `worker_tls_key` and, if a CA
signed it, `worker_tls_ca`) or one the farm makes the first time: self-signed, for the addresses
the workers use (`host`, `public_host`, `listen`).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from pathlib import Path

from wheelwright.common.files import write_atomic

MADE_CERT, MADE_KEY = "worker-port.pem", "worker-port.key"
# In a worker's folder: the one certificate it trusts for the master (Twisted's trustRoots is a folder).
TRUST_DIR = "master-ca"


def escape(value: str) -> str:
    """A value inside a Twisted endpoint description, where `:` and `=` separate."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def certificate(farm) -> tuple[Path, Path, Path]:
    """The master's certificate and key, and what workers trust."""
    if farm.worker_tls_cert:
        cert, key = Path(farm.worker_tls_cert), Path(farm.worker_tls_key or farm.worker_tls_cert)
        return cert, key, Path(farm.worker_tls_ca or cert)
    return farm.secrets_dir / MADE_CERT, farm.secrets_dir / MADE_KEY, farm.secrets_dir / MADE_CERT


def ensure_certificate(farm) -> bool:
    """Make the farm's own certificate, the first time and when the master's addresses change;
    whether it was made now. An operator's certificate is theirs to renew."""
    if farm.worker_tls_cert:
        return False
    cert, key, _ = certificate(farm)
    wanted = {farm.host, farm.reachable_host, farm.listen} - {"0.0.0.0", "::"}
    if cert.exists() and wanted <= names_in(cert):
        return False
    make_self_signed(cert, key, names=sorted(wanted))
    return True


def names_in(cert: Path) -> set[str]:
    """The addresses a certificate is good for (its subjectAltName)."""
    from cryptography import x509

    made = x509.load_pem_x509_certificate(cert.read_bytes())
    try:
        alt = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in alt.get_values_for_type(x509.IPAddress)} | set(
        alt.get_values_for_type(x509.DNSName)
    )


def make_self_signed(cert: Path, key: Path, names: list[str], days: int = 3650) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wheelwright master")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    made = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # Its own authority: a worker trusts it as the one root it knows.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    write_atomic(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_atomic(cert, made.public_bytes(serialization.Encoding.PEM))
    # Buildbot reads the secrets folder only when no file in it is readable by others.
    for path in (key, cert):
        path.chmod(0o600)


def server_endpoint(farm) -> str:
    if not farm.worker_tls:
        return f"tcp:{farm.worker_port}:interface={farm.listen}"
    cert, key, _ = certificate(farm)
    return f"ssl:{farm.worker_port}:interface={farm.listen}:privateKey={escape(str(key))}:certKey={escape(str(cert))}"


def client_endpoint(host: str, port: int, trust_dir: str) -> str:
    """What a worker connects with: TLS, the master's certificate checked for `host`."""
    return f"tls:host={escape(host)}:port={port}:trustRoots={escape(trust_dir)}"


def install_trust(farm, basedir: Path) -> Path:
    """Put the certificate a worker trusts for the master into its folder."""
    trust = basedir / TRUST_DIR
    trust.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(certificate(farm)[2], trust / "master.pem")
    return trust
