#!/usr/bin/env bash
# Install migrate and everything its demo and tests use, on Debian 12, as root:
# the Debian packages listed in .ci/packages.d/ and the migrate binary in
# /usr/local/bin (static, CGO_ENABLED=0, so it can be copied to other hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/go/bin:$PATH
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (apt-get, /usr/local/bin)" >&2; exit 1; }
created_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	# Keep package scripts from starting daemons: migrate starts its own.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
	created_policy=1
fi
trap '[ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
mapfile -t packages < <(cat .ci/packages.d/*.txt | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u)
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${packages[@]}"
CGO_ENABLED=0 go build -trimpath -o /usr/local/bin/migrate ./cmd/migrate
echo "installed: $(/usr/local/bin/migrate version)"
