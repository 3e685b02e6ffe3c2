# Kernel and modules for the test VM, taken from Debian's linux-image-amd64
# package and cached under $cache_dir/kernel/PACKAGE. Sourced by tests/vm/run.

# Modules the tests need that Debian builds as modules: overlayfs for
# container roots, veth for network tests, loop for block-device limits,
# and virtio_pci, virtio_blk and ext4 (which needs crc32c) for the scratch
# disk (tests/vm/run).
readonly vm_modules=(overlay veth loop virtio_pci virtio_blk crc32c_generic ext4)

# Sets kernel_image and kernel_modules_dir, downloading and unpacking the
# kernel package on first use.
prepare_kernel() {
    local package
    package=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
    [[ -n $package ]] ||
        die "apt-cache finds no kernel package behind linux-image-amd64; run apt-get update"

    local dir=$cache_dir/kernel/$package
    kernel_modules_dir=$dir/modules
    # A cache made for another module list is made again.
    local requested=
    [[ ! -f $kernel_modules_dir/requested ]] || requested=$(<"$kernel_modules_dir/requested")
    if [[ -f $dir/complete && $requested == "${vm_modules[*]}" ]]; then
        kernel_image=$(<"$dir/complete")
        log "kernel $package (cached in ${dir#"$workspace"/})"
        return
    fi

    log "fetching kernel $package"
    rm -rf "$dir"
    mkdir -p "$kernel_modules_dir"
    unpack_dir=$(mktemp -d "$cache_dir/unpack.XXXXXX")
    (cd "$unpack_dir" && apt-get download -q "$package") ||
        die "apt-get download $package failed"
    dpkg-deb -x "$unpack_dir"/*.deb "$unpack_dir/root"

    local release=${package#linux-image-}
    local tree=$unpack_dir/root
    cp "$tree/boot/config-$release" "$dir/config"
    if decompress_kernel "$tree/boot/vmlinuz-$release" "$dir/vmlinux"; then
        kernel_image=$dir/vmlinux
    else
        log "cannot decompress vmlinuz-$release; booting the compressed image"
        cp "$tree/boot/vmlinuz-$release" "$dir/vmlinuz"
        kernel_image=$dir/vmlinuz
    fi
    copy_modules "$tree/lib/modules/$release" "$kernel_modules_dir"

    rm -rf "$unpack_dir"
    unpack_dir=
    printf '%s\n' "$kernel_image" >"$dir/complete"
}

# Extracts the ELF kernel from a bzImage. qemu boots an ELF vmlinux through
# its PVH entry point (CONFIG_PVH), which skips the decompressor that takes
# seconds under TCG. Returns non-zero when no payload format matches.
decompress_kernel() {
    local vmlinuz=$1 output=$2 format magic offset
    for format in xz gzip zstd; do
        case $format in
        xz) magic='\xfd7zXZ\x00' ;;
        gzip) magic='\x1f\x8b\x08' ;;
        zstd) magic='\x28\xb5\x2f\xfd' ;;
        esac
        command -v "$format" >/dev/null || continue
        # The decompressor stub comes first, so the first match of the
        # kernel's own format is the payload. Another format's magic bytes
        # may occur earlier, but they do not decompress to an ELF file.
        offset=$(LC_ALL=C grep -obUaP "$magic" "$vmlinuz" | head -n 1 | cut -d: -f1)
        [[ -n $offset ]] || continue
        # Trailing data follows the payload, and the decompressors report it
        # as an error after they wrote the whole kernel.
        tail -c "+$((offset + 1))" "$vmlinuz" | "$format" -dc 2>/dev/null >"$output" || true
        if [[ $(head -c 4 "$output" | od -An -c | tr -d ' ') == '177ELF' ]]; then
            return 0
        fi
    done
    rm -f "$output"
    return 1
}

# Copies the modules of vm_modules and their dependencies, uncompressed, and
# writes their load order (dependencies first) to DEST/order.
copy_modules() {
    local tree=$1 dest=$2
    local -a order=()
    local name
    for name in "${vm_modules[@]}"; do
        add_module "$tree" "$dest" "$name"
    done
    printf '%s\n' "${order[@]}" >"$dest/order"
    printf '%s\n' "${vm_modules[*]}" >"$dest/requested"
}

# Adds module NAME after its dependencies (found with modinfo) to the
# caller's order array.
add_module() {
    local tree=$1 dest=$2 name=${3//-/_}
    local existing
    for existing in "${order[@]}"; do
        [[ $existing == "$name" ]] && return
    done

    local file
    file=$(find "$tree/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -n 1)
    [[ -n $file ]] || die "kernel module $name not found below $tree"
    local depends dependency
    depends=$("$modinfo" -F depends "$file")
    for dependency in ${depends//,/ }; do
        add_module "$tree" "$dest" "$dependency"
    done

    case $file in
    *.ko) cp "$file" "$dest/$name.ko" ;;
    *.ko.xz) xz -dc "$file" >"$dest/$name.ko" ;;
    *.ko.gz) gzip -dc "$file" >"$dest/$name.ko" ;;
    *.ko.zst) zstd -dcq "$file" >"$dest/$name.ko" ;;
    *) die "unknown module format: $file" ;;
    esac
    order+=("$name")
}
