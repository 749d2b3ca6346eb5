"""TLS peers for tests: a throwaway CA with its certificates, and a relay that strips
STARTTLS. I/O: PEM files in a folder; loopback sockets.

The CA is made here with `cryptography`, never taken from the system, so that a test
knows exactly which certificate is trusted and why another one is refused.
"""

import asyncio
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.loopserver import LoopServer

_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    names: tuple[x509.GeneralName, ...] = (),
) -> x509.Certificate:
    """`issuer` None: self-signed."""
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    issuer_key = signer.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class ServerIdentity:
    cert: Path  # PEM
    key: Path  # PEM

    def context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class TestCA:
    """A CA (ca.pem) and three server identities: good for 127.0.0.1, issued by the CA
    for another name, and self-signed for 127.0.0.1."""

    __test__ = False  # not a test class, whatever its name

    ca: Path
    good: ServerIdentity
    wrong_name: ServerIdentity
    self_signed: ServerIdentity

    @classmethod
    def make(cls, folder: Path) -> "TestCA":
        folder.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("Herald Test CA", ca_key, None, ca=True)
        ca_path = folder / "ca.pem"
        ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        loopback = (x509.IPAddress(_LOOPBACK), x509.DNSName("localhost"))

        def identity(
            name: str, names: tuple[x509.GeneralName, ...], signed: bool
        ) -> ServerIdentity:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(name, key, (ca_cert, ca_key) if signed else None, names=names)
            cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            return ServerIdentity(cert_path, key_path)

        return cls(
            ca=ca_path,
            good=identity("relay", loopback, signed=True),
            wrong_name=identity("mail.example.test", (x509.DNSName("mail.example.test"),), True),
            self_signed=identity("self-signed", loopback, signed=False),
        )


class StrippingRelay(LoopServer):
    """A TCP relay on loopback that deletes STARTTLS from the server's EHLO reply, as an
    on-path attacker would, and keeps every command line the client sent."""

    name = "relay"

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.commands: list[bytes] = []
        self.stripped = 0  # STARTTLS lines removed: a test that strips nothing proves nothing

    async def _start(self) -> Any:
        return await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_client: bool
        ) -> None:
            try:
                while line := await reader.readline():  # ends when either side hangs up
                    if from_client:
                        self.commands.append(line)
                    elif line[4:].strip().upper() == b"STARTTLS" and line[3:4] == b"-":
                        self.stripped += 1
                        continue
                    writer.write(line)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_r, server_w, True), pump(server_r, client_w, False))

    def sent_auth(self) -> bool:
        return any(line.upper().startswith(b"AUTH") for line in self.commands)
