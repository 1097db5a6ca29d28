#!/bin/sh
# Install the Debian packages lorahub needs to build, test and run, if any
# are missing. Uses sudo when not root. Quiet when everything is present.
set -e
PKGS="build-essential pkg-config libopenblas-dev libnlopt-dev libyaml-dev libpcre2-dev libcurl4-openssl-dev check libsubunit-dev mandoc libxml2-utils librsvg2-bin libpng-dev"
[ -n "$LORAHUB_EXTRA_PKGS" ] && PKGS="$PKGS $LORAHUB_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages:$missing (no apt-get here: install them by hand)" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
