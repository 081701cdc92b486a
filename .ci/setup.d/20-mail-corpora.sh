#!/usr/bin/env bash
# Installs the real-world mail corpora that tests/mail reads, outside git, into
# ${EMAIL_FLOW_CORPORA:-/var/cache/email-flow/corpora}/<name>/. Idempotent: a
# corpus whose .complete marker exists is left alone. Works on a fresh Debian
# machine as root (PyPI via pip, Debian via apt-get download).
#
#   cpython-test-email/  CPython's Lib/test/test_email/data (Debian libpython3.X-testsuite)
#   flufl-bounce/        flufl.bounce 6.0.0 sdist tests/data: bounce samples (Mailman's)
#   mail-parser/         mail-parser 4.8.0 sdist tests/mails: real and malformed mails
#   talon/               talon 1.4.4 sdist tests/fixtures: client reply styles
#   wfuzz/               Debian wfuzz wordlist/Injections: public XSS vectors
set -euo pipefail

root=${EMAIL_FLOW_CORPORA:-/var/cache/email-flow/corpora}
mkdir -p "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

done_() { [ -e "$root/$1/.complete" ]; }
finish() { touch "$root/$1/.complete"; echo "20-mail-corpora: $1 installed in $root/$1"; }

pip_cmd() {
	if python3 -m pip --version >/dev/null 2>&1; then
		python3 -m pip "$@"
	else
		if [ ! -x "$work/venv/bin/pip" ]; then python3 -m venv "$work/venv"; fi
		"$work/venv/bin/pip" "$@"
	fi
}

# $1 name, $2 pip requirement, $3 folder inside the sdist to keep
sdist_corpus() {
	local name=$1 req=$2 inner=$3
	done_ "$name" && return 0
	local dl="$work/dl-$name"
	mkdir -p "$dl"
	pip_cmd download --quiet --no-deps --no-binary :all: -d "$dl" "$req"
	local archive
	archive=$(ls "$dl"/*.tar.gz | head -n1)
	mkdir -p "$dl/x"
	tar xzf "$archive" -C "$dl/x"
	local top
	top=$(ls "$dl/x" | head -n1)
	rm -rf "${root:?}/$name"
	mkdir -p "$root/$name"
	cp -a "$dl/x/$top/$inner/." "$root/$name/"
	finish "$name"
}

# $1 name, $2.. candidate Debian package names, the last arg is the folder to keep
deb_corpus() {
	local name=$1
	shift
	local inner=${!#}
	local pkgs=("${@:1:$#-1}")
	done_ "$name" && return 0
	local dl="$work/deb-$name"
	mkdir -p "$dl"
	chmod 777 "$dl"
	local got=""
	for p in "${pkgs[@]}"; do
		if (cd "$dl" && apt-get download -qq "$p" >/dev/null 2>&1); then got=$p; break; fi
	done
	if [ -z "$got" ]; then
		apt-get update -qq
		for p in "${pkgs[@]}"; do
			if (cd "$dl" && apt-get download -qq "$p" >/dev/null 2>&1); then got=$p; break; fi
		done
	fi
	[ -n "$got" ] || { echo "20-mail-corpora: none of ${pkgs[*]} could be downloaded" >&2; return 1; }
	dpkg-deb -x "$dl"/*.deb "$dl/x"
	local src
	src=$(cd "$dl/x" && ls -d $inner | head -n1)
	[ -n "$src" ] || { echo "20-mail-corpora: $inner not found in $got" >&2; return 1; }
	rm -rf "${root:?}/$name"
	mkdir -p "$root/$name"
	cp -a "$dl/x/$src/." "$root/$name/"
	finish "$name"
}

sdist_corpus flufl-bounce "flufl.bounce==6.0.0" tests/data
sdist_corpus mail-parser "mail-parser==4.8.0" tests/mails
sdist_corpus talon "talon==1.4.4" tests/fixtures

pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
deb_corpus cpython-test-email "libpython$pyver-testsuite" libpython3.11-testsuite \
	"usr/lib/python3*/test/test_email/data"
deb_corpus wfuzz wfuzz "usr/share/wfuzz/wordlist/Injections"
