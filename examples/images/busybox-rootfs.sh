#!/usr/bin/env bash
# Builds a small root filesystem in DIR from Debian's busybox-static: the
# static /bin/busybox, a symlink per applet, /etc/passwd and /etc/group with
# root and nobody, and /www/index.html for `busybox httpd`. With
# --import STORE it then imports DIR into that corral image store as
# "busybox" (supervisord's store is DATA_DIR/images).
#
#   sudo examples/images/busybox-rootfs.sh /tmp/busybox-rootfs --import /var/lib/corral/images
#
# The corral binary is $CORRAL, else `corral` on PATH.
set -euo pipefail

usage() {
  echo "usage: $0 DIR [--import STORE]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
dest=$1
store=""
if [[ $# -eq 3 && "$2" == "--import" ]]; then
  store=$3
elif [[ $# -ne 1 ]]; then
  usage
fi

busybox=/bin/busybox
if [[ ! -x "$busybox" ]]; then
  echo "$0: $busybox is missing: install it with 'apt-get install busybox-static'" >&2
  exit 1
fi
# A dynamically linked busybox would need the host's libraries inside DIR.
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$0: $busybox is dynamically linked: install Debian's busybox-static instead of busybox" >&2
  exit 1
fi
if [[ -e "$dest" ]] && [[ -n "$(ls -A "$dest")" ]]; then
  echo "$0: $dest exists and is not empty: choose a new directory" >&2
  exit 1
fi

mkdir -p "$dest"/{bin,etc,root,tmp,www,proc,sys,dev}
chmod 1777 "$dest/tmp"
chmod 0700 "$dest/root"
cp "$busybox" "$dest/bin/busybox"
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] || ln -s busybox "$dest/bin/$applet"
done
cat >"$dest/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$dest/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "hello from corral" >"$dest/www/index.html"
echo "built $dest ($(du -sh "$dest" | cut -f1)) from $busybox"

if [[ -n "$store" ]]; then
  "${CORRAL:-corral}" image --store "$store" import --name busybox "$dest"
fi
