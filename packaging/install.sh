#!/bin/sh
# Installs corral from a release build: the binaries, the systemd units of
# supervisord and metrics-agent, shell completions and man pages.
#
#   cargo build --release && sudo packaging/install.sh
#
# Run `packaging/install.sh --help` for the arguments and environment.
set -eu

usage() {
    cat <<'EOF'
Usage: install.sh [--help] [BUILD_DIR]

Installs corral from a release build.

Arguments:
  BUILD_DIR   directory of the built binaries
              (default: target/release of the workspace that contains this script)

Options:
  -h, --help  print this help and exit

Environment:
  PREFIX      where binaries, completions and man pages go, and the path
              that the systemd units name (default: /usr/local)
  DESTDIR     prepended to every installed path, to stage a package
              (default: empty)
  KEEP_DEBUG  1 installs the binaries with the debug information of the
              build; otherwise `strip --strip-debug` removes it

Installs:
  DESTDIR/PREFIX/bin/             corral, supervisord, supervisorctl,
                                  corral-monitor, metrics-agent
  DESTDIR/etc/systemd/system/     supervisord.service, metrics-agent.service
  DESTDIR/PREFIX/share/           bash, zsh and fish completions of
                                  corral, supervisord, supervisorctl and
                                  metrics-agent (fish reads them only when
                                  PREFIX/share is in XDG_DATA_DIRS or
                                  PREFIX is /usr)
  DESTDIR/PREFIX/share/man/       man pages of supervisorctl (section 1),
                                  the job file format corral-job (section 5),
                                  and corral, supervisord, corral-monitor and
                                  metrics-agent (section 8), with a page
                                  per subcommand of corral and supervisorctl
  DESTDIR/etc/corral/jobs.d/      the jobs directory, empty

Without DESTDIR, on a system that runs systemd, it also runs
`systemctl daemon-reload`.

Exit status: 0 on success, 1 when a binary is missing from BUILD_DIR, 2
for invalid arguments, and the status of the failed command when an
install step fails.
EOF
}

usage_error() {
    echo "install.sh: $1" >&2
    usage >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            break
            ;;
        -*)
            usage_error "unknown option $1"
            ;;
        *)
            break
            ;;
    esac
done
if [ $# -gt 1 ]; then
    usage_error "expected at most one BUILD_DIR argument, got $#: $*"
fi
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
strip_debug=yes
if [ "${KEEP_DEBUG:-}" = 1 ]; then
    strip_debug=no
elif ! command -v strip > /dev/null; then
    echo "install.sh: strip is not installed (Debian: binutils):" \
        "installing the binaries with their debug information" >&2
    strip_debug=no
fi
for binary in $binaries; do
    installed="$destdir$prefix/bin/$binary"
    install -m 0755 "$build_dir/$binary" "$installed"
    # The release profile keeps line tables for backtraces, most of each
    # binary's size. Removing them keeps the symbols, so a backtrace still
    # names functions.
    if [ "$strip_debug" = yes ] && [ "$(head -c 4 "$installed" | tail -c 3)" = ELF ]; then
        strip --strip-debug "$installed"
    fi
done

install -d -m 0755 "$destdir/etc/systemd/system"
for unit in supervisord.service metrics-agent.service; do
    sed "s|/usr/local/|$prefix/|g" "$here/systemd/$unit" > "$destdir/etc/systemd/system/$unit"
    chmod 0644 "$destdir/etc/systemd/system/$unit"
done

install -d -m 0755 "$destdir$prefix/share/bash-completion/completions" \
    "$destdir$prefix/share/zsh/site-functions" \
    "$destdir$prefix/share/fish/vendor_completions.d"
for command in corral supervisord supervisorctl metrics-agent; do
    install -m 0644 "$here/completions/bash/$command" \
        "$destdir$prefix/share/bash-completion/completions/$command"
    install -m 0644 "$here/completions/zsh/_$command" \
        "$destdir$prefix/share/zsh/site-functions/_$command"
    install -m 0644 "$here/completions/fish/$command.fish" \
        "$destdir$prefix/share/fish/vendor_completions.d/$command.fish"
done

for page in "$here"/man/*.[158]; do
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
