#!/usr/bin/env bash
# Build the vmmemctl lab: a Debian cloud kernel, a busybox initramfs with the
# lab init + command agent, and a read-only ext4 data disk.
#
# Idempotent; everything lands in ${VMMEMCTL_LAB_CACHE:-$HOME/.cache/vmmemctl-lab}
# keyed by version stamps, so a second run only checks and prints paths.
# Writes <cache>/lab.json, which lab/vm.py reads.
#
# Environment:
#   VMMEMCTL_LAB_CACHE    cache directory (default ~/.cache/vmmemctl-lab)
#   VMMEMCTL_LAB_KERNEL   kernel ABI to use, e.g. 6.12.117+deb12-cloud-amd64
#                         (default: the newest *-cloud-amd64 apt-cache knows)
#   VMMEMCTL_LAB_DATA_MB  size of /data/fill.bin in MiB (default 1536)
#   VMMEMCTL_LAB_NO_APT   1 = never run apt-get install/update (fail instead)
#
# Needs root for apt-get install of missing host tools (qemu-system-x86,
# e2fsprogs, cpio, kmod, xz-utils, zstd); everything else is unprivileged.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${VMMEMCTL_LAB_CACHE:-$HOME/.cache/vmmemctl-lab}
DATA_MB=${VMMEMCTL_LAB_DATA_MB:-1536}
DATA_FORMAT=1   # bump when the data disk layout changes
WANT_MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_balloon virtio_console"

T0=$(date +%s.%N)
log() { printf 'lab-build: %s\n' "$*" >&2; }
die() { printf 'lab-build: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# One build at a time per cache dir (parallel test workers, CI retries).
exec 9>"$CACHE/.build.lock"
flock 9

# ---------------------------------------------------------------- host tools
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

need_tools() {
    # command -> package
    local missing=() pair cmd pkg
    for pair in qemu-system-x86_64:qemu-system-x86 mke2fs:e2fsprogs cpio:cpio \
                depmod:kmod xz:xz-utils zstd:zstd gzip:gzip flock:util-linux \
                dpkg-deb:dpkg; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "${VMMEMCTL_LAB_NO_APT:-0}" = 1 ] && die "missing packages: ${missing[*]}"
        [ "$(id -u)" = 0 ] || die "missing packages (need root to install): ${missing[*]}"
        apt_update_once
        log "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
}
need_tools
export PATH="$PATH:/usr/sbin:/sbin"

# Download one .deb (by exact package name) into $1 directory, echo its path.
apt_download() {
    local dir=$1 pkg=$2 deb
    mkdir -p "$dir"
    deb=$(ls "$dir"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        log "apt-get download $pkg"
        (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) || {
            apt_update_once
            (cd "$dir" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
                die "apt-get download $pkg failed"
        }
        deb=$(ls "$dir"/"${pkg}"_*.deb | head -n1)
    fi
    printf '%s\n' "$deb"
}

# ---------------------------------------------------------------- kernel
newest_kernel() {
    # Names like linux-image-6.12.117+deb12-cloud-amd64(-unsigned) and
    # linux-image-6.1.0-56-cloud-amd64(-unsigned); print the newest ABI.
    apt-cache pkgnames linux-image- 2>/dev/null |
        sed -En 's/^linux-image-([0-9]+\.[0-9]+\.[0-9]+[^ ]*-cloud-amd64)(-unsigned)?$/\1/p' |
        sort -u -V | tail -n1
}

KABI=${VMMEMCTL_LAB_KERNEL:-}
if [ -z "$KABI" ]; then
    KABI=$(newest_kernel || true)
    if [ -z "$KABI" ] && [ "${VMMEMCTL_LAB_NO_APT:-0}" != 1 ]; then
        apt_update_once
        KABI=$(newest_kernel || true)
    fi
    if [ -z "$KABI" ]; then
        # Offline / no lists: reuse whatever kernel is already cached.
        KABI=$(ls -1 "$CACHE/kernel" 2>/dev/null | sort -V | tail -n1 || true)
    fi
    [ -n "$KABI" ] || die "no linux-image-*-cloud-amd64 package found via apt-cache"
fi
KDIR=$CACHE/kernel/$KABI
if [ ! -f "$KDIR/.done" ]; then
    rm -rf "$KDIR"; mkdir -p "$KDIR/debs"
    deb=""
    for pkg in "linux-image-$KABI-unsigned" "linux-image-$KABI"; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            deb=$(apt_download "$KDIR/debs" "$pkg"); break
        fi
    done
    [ -n "$deb" ] || { apt_update_once; deb=$(apt_download "$KDIR/debs" "linux-image-$KABI-unsigned"); }
    log "extracting $(basename "$deb")"
    rm -rf "$KDIR/x"; dpkg-deb -x "$deb" "$KDIR/x"
    cp "$KDIR/x/boot/vmlinuz-$KABI" "$KDIR/vmlinuz"
    cp "$KDIR/x/boot/config-$KABI" "$KDIR/config"
    depmod -b "$KDIR/x" "$KABI"
    # Keep only modules tree + metadata; drop the deb and everything else.
    rm -rf "$KDIR/modules"; mv "$KDIR/x/lib/modules/$KABI" "$KDIR/modules"
    dpkg-deb -f "$deb" Version > "$KDIR/deb-version"
    rm -rf "$KDIR/x" "$KDIR/debs"
    touch "$KDIR/.done"
fi

# Module load order: for each wanted module that is not built in, its
# dependencies (modules.dep lists them; modprobe loads them last-first), then it.
LOAD_ORDER=()
add_module() {
    local name=$1 line path deps d i
    grep -q "/${name}\.ko" "$KDIR/modules/modules.builtin" 2>/dev/null && return 0
    line=$(grep -E "/${name}\.ko(\.xz|\.zst|\.gz)?:" "$KDIR/modules/modules.dep" | head -n1 || true)
    [ -n "$line" ] || { log "module $name: not built in and not found, skipping"; return 0; }
    path=${line%%:*}
    read -r -a deps <<<"${line#*:}"
    for (( i=${#deps[@]}-1; i>=0; i-- )); do
        d=$(basename "${deps[$i]}"); d=${d%%.ko*}
        add_module "$d"
    done
    for d in "${LOAD_ORDER[@]}"; do [ "$d" = "$path" ] && return 0; done
    LOAD_ORDER+=("$path")
}
for m in $WANT_MODULES; do add_module "$m"; done

# ---------------------------------------------------------------- busybox
BBDIR=$CACHE/busybox
if [ ! -f "$BBDIR/.done" ]; then
    rm -rf "$BBDIR"; mkdir -p "$BBDIR"
    deb=$(apt_download "$BBDIR/debs" busybox-static)
    dpkg-deb -x "$deb" "$BBDIR/x"
    cp "$BBDIR/x/bin/busybox" "$BBDIR/busybox"
    dpkg-deb -f "$deb" Version > "$BBDIR/deb-version"
    rm -rf "$BBDIR/x" "$BBDIR/debs"
    touch "$BBDIR/.done"
fi
"$BBDIR/busybox" true 2>/dev/null || die "$BBDIR/busybox does not run"

# ---------------------------------------------------------------- initramfs
INIT_STAMP=$( {
    echo "kernel=$KABI"; cat "$KDIR/deb-version" 2>/dev/null || true
    echo "busybox=$(cat "$BBDIR/deb-version")"
    printf '%s\n' "${LOAD_ORDER[@]}"
    cat "$HERE/guest/init" "$HERE/guest/lab-agent"
    echo "initramfs-format=1"
} | sha256sum | cut -c1-16)
INITRD=$CACHE/initramfs-$INIT_STAMP.cpio.gz
if [ ! -f "$INITRD" ]; then
    log "building initramfs $INITRD"
    work=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,data,lib/modules,etc}
    cp "$BBDIR/busybox" "$root/bin/busybox"
    for applet in $("$BBDIR/busybox" --list); do
        [ "$applet" = busybox ] && continue
        ln -sf busybox "$root/bin/$applet"
    done
    install -m 0755 "$HERE/guest/init" "$root/init"
    install -m 0755 "$HERE/guest/lab-agent" "$root/bin/lab-agent"
    : > "$root/lib/modules/load.order"
    for path in "${LOAD_ORDER[@]}"; do
        base=$(basename "$path"); out=${base%.xz}; out=${out%.zst}; out=${out%.gz}
        case "$base" in
            *.ko.xz)  xz -dc   "$KDIR/modules/$path" > "$root/lib/modules/$out" ;;
            *.ko.zst) zstd -qdc "$KDIR/modules/$path" > "$root/lib/modules/$out" ;;
            *.ko.gz)  gzip -dc  "$KDIR/modules/$path" > "$root/lib/modules/$out" ;;
            *)        cp "$KDIR/modules/$path" "$root/lib/modules/$out" ;;
        esac
        echo "$out" >> "$root/lib/modules/load.order"
    done
    echo "root:x:0:0:root:/:/bin/sh" > "$root/etc/passwd"
    (cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -6 > "$work/initramfs.cpio.gz"
    mv "$work/initramfs.cpio.gz" "$INITRD"
    rm -rf "$work"; trap - EXIT
fi

# ---------------------------------------------------------------- data disk
DATA_IMG=$CACHE/data-v$DATA_FORMAT-${DATA_MB}M.img
if [ ! -f "$DATA_IMG" ]; then
    log "building data disk $DATA_IMG (${DATA_MB} MiB of pseudo-random data)"
    work=$(mktemp -d "$CACHE/.data.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/root"
    # Deterministic, incompressible bytes: AES-CTR keystream if openssl is
    # there (fast), else /dev/urandom.
    if command -v openssl >/dev/null 2>&1; then
        openssl enc -aes-128-ctr -nosalt -K 766d6d656d63746c2d6c61622d646174 \
            -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null |
            head -c "$((DATA_MB * 1024 * 1024))" > "$work/root/fill.bin" || true
    else
        head -c "$((DATA_MB * 1024 * 1024))" /dev/urandom > "$work/root/fill.bin"
    fi
    [ "$(stat -c %s "$work/root/fill.bin")" = "$((DATA_MB * 1024 * 1024))" ] ||
        die "generating fill.bin failed"
    printf 'vmmemctl lab data disk v%s\nfill.bin: %s MiB of pseudo-random bytes\n' \
        "$DATA_FORMAT" "$DATA_MB" > "$work/root/README"
    echo "hello from the lab data disk" > "$work/root/hello.txt"
    img_mb=$(( DATA_MB + DATA_MB / 16 + 64 ))
    mke2fs -q -F -t ext4 -O ^has_journal -m 0 -L labdata -E root_owner=0:0 \
        -d "$work/root" "$work/data.img" "${img_mb}M" > "$work/mke2fs.log" 2>&1 ||
        { cat "$work/mke2fs.log" >&2; die "mke2fs failed"; }
    mv "$work/data.img" "$DATA_IMG"
    rm -rf "$work"; trap - EXIT
fi

# Drop stale artefacts of older stamps (keep the current ones).
for f in "$CACHE"/initramfs-*.cpio.gz; do
    [ -e "$f" ] && [ "$f" != "$INITRD" ] && rm -f "$f"
done
for f in "$CACHE"/data-v*.img; do
    [ -e "$f" ] && [ "$f" != "$DATA_IMG" ] && rm -f "$f"
done

QEMU=$(command -v qemu-system-x86_64)
tmp=$(mktemp "$CACHE/.lab.json.XXXXXX")
cat > "$tmp" <<EOF
{
  "format": 1,
  "kernel_abi": "$KABI",
  "kernel_deb_version": "$(cat "$KDIR/deb-version" 2>/dev/null || true)",
  "busybox_deb_version": "$(cat "$BBDIR/deb-version")",
  "kernel": "$KDIR/vmlinuz",
  "initrd": "$INITRD",
  "data": "$DATA_IMG",
  "data_fill_mb": $DATA_MB,
  "qemu": "$QEMU",
  "modules": "$(printf '%s ' "${LOAD_ORDER[@]}" | sed 's/ $//')"
}
EOF
mv "$tmp" "$CACHE/lab.json"

T1=$(date +%s.%N)
cat <<EOF
vmmemctl lab ready ($(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s)
  cache:   $CACHE
  kernel:  $KDIR/vmlinuz ($KABI)
  initrd:  $INITRD
  data:    $DATA_IMG (/data/fill.bin, ${DATA_MB} MiB)
  modules: ${LOAD_ORDER[*]:-(all built in)}
  qemu:    $QEMU
  manifest: $CACHE/lab.json
EOF
