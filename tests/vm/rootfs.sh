# The VM's root file system, staged in $cache_dir/root and packed into an
# uncompressed initramfs. Sourced by tests/vm/run.
#
# Built files keep their host paths, so the test binaries find the workspace
# binaries beside them (corral_tests::bin_dir) and the files they read below
# the workspace, and containers on the "host" image see the same paths.

# Stages the root: busybox and its applets, the built binaries with their
# libraries, extra programs, a few /etc files, the guest scripts and the
# kernel modules.
stage_root() {
    rm -rf "$root_dir"
    mkdir -p "$root_dir"
    mirror_merged_usr
    mkdir -p "$root_dir"/{bin,dev,etc,proc,root,run,sys,tmp,vm}
    chmod 1777 "$root_dir/tmp"

    install_busybox

    local binary
    for binary in "${workspace_binaries[@]}"; do
        install_program "$binary" "$binary" strip
    done
    local line executable manifest_dir
    for line in "${test_executables[@]}"; do
        IFS=$'\t' read -r executable manifest_dir <<<"$line"
        install_program "$executable" "$executable" strip
        mkdir -p "$root_dir$manifest_dir"
    done
    # The checkout's files, which tests read (job examples, dashboards),
    # without build output and history.
    mkdir -p "$root_dir$workspace"
    tar -C "$workspace" --exclude=./.git --exclude=target --exclude=__pycache__ -cf - . |
        tar -C "$root_dir$workspace" -xf -
    mkdir -p "$root_dir$workspace/target"

    local program path
    for program in $vm_programs; do
        # The guest's PATH, so that a tool manager's shim in the caller's
        # PATH (pyenv, rustup) is not copied in place of the program.
        if path=$(PATH=$guest_path command -v "$program"); then
            install_program "$path" "$path"
            [[ $program != python3 ]] || install_python_modules "$path"
        else
            log "warning: $program is not installed; tests that need it skip or fail in the VM"
        fi
    done

    local file
    for file in $vm_files; do
        [[ -e $file ]] || die "$file (CORRAL_VM_FILES) does not exist"
        mkdir -p "$root_dir$(dirname "$file")"
        cp -a "$file" "$root_dir$(dirname "$file")/"
    done

    write_etc
    install -m 0755 "$vm_dir/init" "$root_dir/init"
    install -m 0755 "$vm_dir/guest" "$root_dir/vm/guest"
    install -m 0755 "$vm_dir/delegated" "$root_dir/vm/delegated"
    mkdir -p "$root_dir/vm/modules"
    cp "$kernel_modules_dir"/*.ko "$kernel_modules_dir/order" "$root_dir/vm/modules/"

    printf '%s\n' "${test_executables[@]}" >"$root_dir/vm/tests"
    printf '%s' "$test_filter" >"$root_dir/vm/filter"
    write_env >"$root_dir/vm/env"
    [[ -z $shell_mode ]] || touch "$root_dir/vm/shell"
    {
        printf 'test_timeout=%s\n' "$test_timeout"
        printf 'test_threads=%s\n' "$test_threads"
        printf 'skip=%q\n' "$vm_skip"
        printf 'workspace=%s\n' "$workspace"
        printf 'bin_dir=%s\n' "$bin_dir"
    } >"$root_dir/vm/settings"
}

# Repeats the host's links from /bin, /sbin, /lib and /lib64 into /usr (a
# merged /usr, as in Debian 12), so that a program copied from /usr/bin is
# also found by the /bin path in another program's #! line.
mirror_merged_usr() {
    local dir target
    for dir in bin sbin lib lib64; do
        [[ -L /$dir ]] || continue
        target=$(readlink "/$dir")
        mkdir -p "$root_dir/$(dirname "$dir")/$target"
        ln -s "$target" "$root_dir/$dir"
    done
}

# Installs the static busybox as /bin/busybox and one symbolic link per
# applet at the applet's usual path (bin/sh, usr/bin/env, sbin/switch_root).
install_busybox() {
    local busybox applet
    busybox=$(command -v busybox) || die "busybox is missing; install Debian's busybox-static"
    install_program "$busybox" /bin/busybox
    while read -r applet; do
        [[ $applet == bin/busybox ]] && continue
        mkdir -p "$(dirname "$root_dir/$applet")"
        ln -sf /bin/busybox "$root_dir/$applet"
    done < <("$busybox" --list-full)
}

# Copies the program SOURCE to DEST inside the root, with debug information
# removed when the third argument is "strip", and the shared libraries it
# loads.
install_program() {
    local source=$1 target=$root_dir$2 strip=${3:-}
    mkdir -p "$(dirname "$target")"
    # The target may be a busybox applet link, which cp would write through.
    rm -f "$target"
    if [[ $strip == strip ]]; then
        objcopy --strip-debug "$source" "$target"
    else
        cp -L "$source" "$target"
    fi
    chmod 0755 "$target"
    copy_libraries "$source"
}

# Copies the shared libraries that ldd lists for FILE to the same paths in
# the root. Static programs have none.
copy_libraries() {
    local library
    while read -r library; do
        [[ -e $root_dir$library ]] && continue
        mkdir -p "$(dirname "$root_dir$library")"
        cp -L "$library" "$root_dir$library"
    done < <(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# Copies the standard library modules of CORRAL_VM_PYTHON_MODULES and
# every module they import, as the host's python3 loads them, with their
# bytecode and the libraries of extension modules. That is about 6M of
# modules; the whole standard library would add 60M to the initramfs.
install_python_modules() {
    local python=$1 file
    local list='
import importlib.util, os, sys, sysconfig
for name in sys.argv[1:]:
    __import__(name)
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if not path or not os.path.isfile(path) or not path.startswith(stdlib):
        continue
    print(path)
    if path.endswith(".py"):
        cached = importlib.util.cache_from_source(path)
        if os.path.isfile(cached):
            print(cached)
'
    local files
    # shellcheck disable=SC2086 # one module name per word
    files=$("$python" -c "$list" $vm_python_modules) ||
        die "$python failed to import CORRAL_VM_PYTHON_MODULES ($vm_python_modules)"
    while read -r file; do
        mkdir -p "$root_dir$(dirname "$file")"
        cp "$file" "$root_dir$file"
        [[ $file != *.so ]] || copy_libraries "$file"
    done <<<"$files"
    # The example job web serves this directory.
    mkdir -p "$root_dir/usr/share/doc"
}

# Prints the NAME=VALUE words of CORRAL_VM_ENV one per line, for the guest
# to export.
write_env() {
    local word
    for word in $vm_env; do
        [[ $word =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] ||
            die "CORRAL_VM_ENV holds $word, not NAME=VALUE"
        printf '%s\n' "$word"
    done
}

write_etc() {
    local etc=$root_dir/etc
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$etc/group"
    printf '%s\n' '127.0.0.1 localhost' '::1 localhost' >"$etc/hosts"
    printf '%s\n' 'corral-vm' >"$etc/hostname"
    printf '%s\n' 'NAME="corral test VM"' 'ID=corral-vm' \
        'PRETTY_NAME="corral test VM (busybox, cgroup v2)"' >"$etc/os-release"
}

# Packs the staged root into a newc archive, owned by root. It stays
# uncompressed, so the kernel copies it at boot without inflating it under
# TCG.
pack_initramfs() {
    (cd "$root_dir" && find . -mindepth 1 | "$busybox_host" cpio -o -H newc -R 0:0 2>/dev/null) \
        >"$initramfs"
}
