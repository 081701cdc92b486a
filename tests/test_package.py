"""The package's layer rule and metadata, checked the way a reviewer would."""

import ast
import pathlib

import email_flow_app

PACKAGE = pathlib.Path(email_flow_app.__file__).parent


def _imported_modules(path: pathlib.Path) -> set[str]:
	tree = ast.parse(path.read_text(encoding="utf-8"))
	names: set[str] = set()
	for node in ast.walk(tree):
		if isinstance(node, ast.Import):
			names.update(alias.name.split(".")[0] for alias in node.names)
		elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
			names.add(node.module.split(".")[0])
	return names


def test_mail_and_channels_never_import_frappe():
	offenders = [
		str(path.relative_to(PACKAGE))
		for layer in ("mail", "channels")
		for path in (PACKAGE / layer).rglob("*.py")
		if "frappe" in _imported_modules(path)
	]
	assert offenders == []


def test_version_is_declared():
	assert email_flow_app.__version__.count(".") == 2


def test_module_is_declared_for_frappe():
	assert (PACKAGE / "modules.txt").read_text().strip() == "Email Flow"
	assert (PACKAGE / "email_flow" / "__init__.py").exists()
