"""A throw-away certificate authority for the test servers.

The servers present certificates issued by this CA; clients trust it through an
``ssl.SSLContext`` (:meth:`TestCA.client_context`) or a PEM bundle path
(:attr:`TestCA.bundle_path`) for libraries that take a file, such as requests.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import trustme

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


class TestCA:
	"""A CA plus one server certificate for ``hosts``, written to ``directory``."""

	__test__ = False  # not a pytest test class

	def __init__(self, directory: str | Path | None = None, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> None:
		self.directory = Path(directory or tempfile.mkdtemp(prefix="efca-"))
		self.directory.mkdir(parents=True, exist_ok=True)
		self.directory.chmod(0o755)
		self._ca = trustme.CA(organization_name="Email Flow test CA")
		self._server = self._ca.issue_cert(*hosts)
		self.bundle_path = self.directory / "ca.pem"
		self.cert_path = self.directory / "server-chain.pem"
		self.key_path = self.directory / "server-key.pem"
		self._ca.cert_pem.write_to_path(str(self.bundle_path))
		self.cert_path.write_bytes(b"".join(blob.bytes() for blob in self._server.cert_chain_pems))
		self._server.private_key_pem.write_to_path(str(self.key_path))
		for path in (self.bundle_path, self.cert_path, self.key_path):
			path.chmod(0o644)

	def client_context(self) -> ssl.SSLContext:
		"""A client context that trusts this CA only (hostname checks on)."""
		return ssl.create_default_context(cafile=str(self.bundle_path))

	def server_context(self) -> ssl.SSLContext:
		"""A server context presenting the certificate for the configured hosts."""
		ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
		ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
		return ctx

	def combined_bundle(self, extra: str | Path | None = None) -> Path:
		"""This CA appended to ``extra`` (e.g. the system bundle), for ``REQUESTS_CA_BUNDLE``."""
		path = self.directory / "combined.pem"
		data = Path(extra).read_bytes() if extra and Path(extra).exists() else b""
		path.write_bytes(data + b"\n" + self.bundle_path.read_bytes())
		return path
