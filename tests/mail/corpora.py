"""Where the real-world mail corpora live (installed by .ci/setup.d/20-mail-corpora.sh).

A missing corpus fails the test that needs it, with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CORPORA_ROOT = Path(os.environ.get("EMAIL_FLOW_CORPORA", "/var/cache/email-flow/corpora"))
SETUP = ".ci/setup.d/20-mail-corpora.sh"


def corpus_dir(name: str) -> Path:
	"""The folder of corpus ``name``; fails the calling test when it is not installed."""
	path = CORPORA_ROOT / name
	if not (path / ".complete").exists():
		pytest.fail(
			f"mail corpus {name!r} is missing at {path}: run `sudo bash {SETUP}` "
			f"(or set EMAIL_FLOW_CORPORA to where it is installed)",
			pytrace=False,
		)
	return path


def cpython_email_data() -> Path:
	"""CPython's own Lib/test/test_email/data: this interpreter's, else the installed Debian copy."""
	spec = importlib.util.find_spec("test")
	if spec is not None and spec.submodule_search_locations:
		for location in spec.submodule_search_locations:
			candidate = Path(location) / "test_email" / "data"
			if (candidate / "msg_01.txt").exists():
				return candidate
	return corpus_dir("cpython-test-email")


def messages(folder: Path, pattern: str = "*") -> list[Path]:
	"""Mail files of ``folder`` (Python and marker files left out), sorted; fails when empty."""
	files = sorted(
		p
		for p in folder.glob(pattern)
		if p.is_file() and p.suffix not in (".py", ".pyc") and not p.name.startswith((".", "__"))
	)
	if not files:
		pytest.fail(f"no mail files matching {pattern!r} in {folder}", pytrace=False)
	return files
