"""How a channel logs in: a password, or an OAuth bearer token (XOAUTH2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class TokenProvider(Protocol):
	"""Anything that hands out OAuth access tokens (O365, Google, tests)."""

	def access_token(self) -> str:
		"""A token believed valid (cached or refreshed)."""
		...

	def force_refresh(self) -> str:
		"""A freshly issued token, after the server rejected the cached one."""
		...


@dataclass(frozen=True)
class PasswordAuth:
	"""LOGIN/PLAIN with a password; ``label`` names it in messages ("App Password")."""

	password: str = field(repr=False)
	label: str = "password"


@dataclass(frozen=True)
class OAuthAuth:
	"""XOAUTH2 with tokens from ``token_provider``."""

	token_provider: TokenProvider


Authenticator = PasswordAuth | OAuthAuth


def xoauth2_string(username: str, token: str) -> str:
	"""The SASL XOAUTH2 initial response (before base64)."""
	return f"user={username}\x01auth=Bearer {token}\x01\x01"
