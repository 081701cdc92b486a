#!/usr/bin/env bash
# Channels suite (tests/channels, benchmarks/imap_fetch_bench.py): the tests start
# their own Dovecot, aiosmtpd and HTTPS OAuth endpoints; this makes sure the
# system pieces they need are present on a fresh Debian machine (run as root).
# Idempotent. Python test packages (trustme) come from pyproject's test extras.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
packages=(dovecot-imapd dovecot-submissiond openssl ca-certificates)
missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The packaged Dovecot must not hold ports or restart on boot; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now dovecot >/dev/null 2>&1 || true
fi

# Fail here, with a clear message, rather than deep inside a fixture.
dovecot --version >/dev/null
test -x /usr/lib/dovecot/submission || { echo "30-channels: dovecot submission service missing" >&2; exit 1; }
# As root, the test Dovecot runs its mail processes as "nobody" and its
# login/auth helpers as the packaged "dovenull"/"dovecot" users.
for user in nobody dovenull dovecot; do
	getent passwd "$user" >/dev/null || { echo "30-channels: system user $user missing" >&2; exit 1; }
done
echo "30-channels: $(dovecot --version | cut -d' ' -f1) ready"
