"""The mail core imports only the stdlib, bleach and chardet: no frappe, no channels, no I/O library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import email_flow_app.mail

ALLOWED_THIRD_PARTY = {"bleach", "chardet", "email_flow_app"}
FORBIDDEN_STDLIB = {
	"socket",
	"smtplib",
	"imaplib",
	"urllib.request",
	"http.client",
	"subprocess",
	"mimetypes",
	"os",
}


def test_mail_core_imports_only_stdlib_bleach_and_chardet():
	folder = Path(email_flow_app.mail.__file__).parent
	problems: list[str] = []
	for path in sorted(folder.glob("*.py")):
		for node in ast.walk(ast.parse(path.read_text())):
			names: list[str] = []
			if isinstance(node, ast.Import):
				names = [alias.name for alias in node.names]
			elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
				names = [node.module]
			for name in names:
				top = name.split(".", 1)[0]
				if name.startswith("email_flow_app.") and not name.startswith("email_flow_app.mail"):
					problems.append(f"{path.name}: {name}")
				elif name in FORBIDDEN_STDLIB or top in FORBIDDEN_STDLIB:
					problems.append(f"{path.name}: {name} (I/O)")
				elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
					problems.append(f"{path.name}: {name}")
	assert not problems, problems
