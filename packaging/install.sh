#!/bin/sh
# Installs corral from a release build: the binaries, the systemd units of
# supervisord and metrics-agent, shell completions and man pages.
#
#   cargo build --release && sudo packaging/install.sh
#
# Arguments: [BUILD_DIR], the directory of the built binaries
# (default: target/release beside this script's parent).
# Environment: PREFIX (default /usr/local) is where binaries, completions
# and man pages go, and what the units name. DESTDIR (default empty) is
# prepended to every installed path, for staging a package.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build_dir=${1:-"$here/../target/release"}
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
binaries="corral supervisord supervisorctl corral-monitor metrics-agent"

for binary in $binaries; do
    if [ ! -x "$build_dir/$binary" ]; then
        echo "install.sh: $build_dir/$binary is missing: build it first with" \
            "\`cargo build --release\`, or name the build directory as the first argument" >&2
        exit 1
    fi
done

install -d -m 0755 "$destdir$prefix/bin"
for binary in $binaries; do
    install -m 0755 "$build_dir/$binary" "$destdir$prefix/bin/$binary"
done

install -d -m 0755 "$destdir/etc/systemd/system"
for unit in supervisord.service metrics-agent.service; do
    sed "s|/usr/local/|$prefix/|g" "$here/systemd/$unit" > "$destdir/etc/systemd/system/$unit"
    chmod 0644 "$destdir/etc/systemd/system/$unit"
done

install -d -m 0755 "$destdir$prefix/share/bash-completion/completions" \
    "$destdir$prefix/share/zsh/site-functions" \
    "$destdir$prefix/share/fish/vendor_completions.d"
for command in supervisorctl supervisord; do
    install -m 0644 "$here/completions/bash/$command" \
        "$destdir$prefix/share/bash-completion/completions/$command"
    install -m 0644 "$here/completions/zsh/_$command" \
        "$destdir$prefix/share/zsh/site-functions/_$command"
    install -m 0644 "$here/completions/fish/$command.fish" \
        "$destdir$prefix/share/fish/vendor_completions.d/$command.fish"
done

for page in "$here"/man/*.[18]; do
    section=${page##*.}
    install -d -m 0755 "$destdir$prefix/share/man/man$section"
    install -m 0644 "$page" "$destdir$prefix/share/man/man$section/"
done

install -d -m 0755 "$destdir/etc/corral/jobs.d"

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start corral with: systemctl enable --now supervisord metrics-agent"
else
    echo "installed into ${destdir:-/}"
fi
