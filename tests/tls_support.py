"""A throwaway certificate authority and a server certificate for 127.0.0.1 (trustme)."""

from __future__ import annotations

from pathlib import Path

import trustme


def server_certificate(folder: Path) -> tuple[trustme.CA, Path, Path]:
    """A CA, and the certificate chain and key it issued for 127.0.0.1/localhost, written
    to ``folder`` as ``cert.pem`` and ``key.pem``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca, cert_file, key_file
