#!/bin/sh
# Build kiln's runtime image: one tree that sandboxes use as their root.
#
#   rootfs/build-image.sh OUTDIR KILN_AGENT KILN_WORKER
#   KILN_IMAGE_SPEC=python-data rootfs/build-image.sh ...      (another image)
#   KILN_IMAGE_LANGS="java go" rootfs/build-image.sh ...   (a smaller image)
#
# KILN_IMAGE_SPEC names the image's spec, rootfs/images/NAME.conf (default:
# default): what it holds beyond the base (its languages, Debian packages
# and the packages they need, directories, files of its own).
#
# OUTDIR/tree             the root, as a directory tree
# OUTDIR/runtime.squashfs the same tree, read-only: the jail's default root
#                         (loop-mounted by the worker, its host path never
#                         shows inside a sandbox) and microVMs' disk
# OUTDIR/digest           its content digest (kiln-worker --rootfs-digest)
# OUTDIR/kiln.env         KILN_ROOTFS (the squashfs where mksquashfs exists,
#                         else the tree), KILN_ROOTFS_DIGEST, KILN_ROOTFS_TREE
#                         and KILN_VM_IMAGE, to source
# OUTDIR/languages        the plugins it can run, one per line (and
#                         /etc/kiln-toolchains in it: each one's package and version)
#
# The tree holds python3, a shell with core utilities and gcc/g++ (the
# shell, python, c and cpp plugins) from this machine's Debian packages
# (and every shared library they load), deno from the npm package
# @deno/linux-x64-glibc at a pinned version whose tarball is checked
# against its published integrity hash, kiln-agent, and the toolchains of
# the languages KILN_IMAGE_LANGS names (default: all of them, below), each
# from its Debian packages. A worker on an image without a language's
# toolchain says so at start and rejects that language's jobs. Nothing is
# rebuilt when the inputs (this script, the package versions, deno's
# version, the agent, the languages) are what they were.
#
# Everything but the agent is the base tree, kept in KILN_IMAGE_CACHE/IMAGE
# (default OUTDIR/base/IMAGE) under the hash of its own inputs: a new agent (a
# rebuild, or the sanitizer build of the test command) costs a hard-linked
# copy of the base, the agent and the libraries only it loads, the digest
# and the squashfs, not the packages again.
set -eu

DENO_VERSION=2.9.6
DENO_INTEGRITY=sha512-3md4TKLCuzsLDmfOoC5KN7NAZaxSVkMgm64vg6foD00JBADCpYS2/5QqXfzgnP5ZQz3iLP9vBQJtEgc116OAoQ==

# Debian packages whose files go in, as installed on this machine: the base
# (shell, python, c, cpp), then each language's.
PACKAGES="dash coreutils grep sed findutils mawk diffutils gzip tar
python3-minimal python3.11-minimal libpython3.11-minimal
python3.11 libpython3.11-stdlib python3 media-types tzdata ca-certificates
gcc gcc-12 cpp cpp-12 g++ g++-12 libgcc-12-dev libstdc++-12-dev libc6-dev libc-dev-bin
linux-libc-dev libcrypt-dev binutils binutils-x86-64-linux-gnu"
ALL_LANGS="java javascript typescript go rust csharp php ruby lua perl r bash"
lang_packages() {
    case $1 in
    java) echo "openjdk-17-jre-headless openjdk-17-jdk-headless libjavatuples-java" ;;
    javascript) echo "nodejs $(dpkg-query -W -f='${Package}\n' 'libnode[0-9]*' 2>/dev/null | tr '\n' ' ')" ;;
    typescript) echo "node-typescript" ;;
    go) echo "golang-1.19-go golang-1.19-src" ;;
    rust) echo "rustc-web libstd-rust-web-dev $(dpkg-query -W -f='${Package}\n' 'libstd-rust-web-1*' 2>/dev/null | tr '\n' ' ')" ;;
    csharp) echo "mono-mcs mono-runtime mono-runtime-sgen mono-runtime-common" ;;
    php) echo "php8.2-cli php8.2-common php8.2-opcache php8.2-readline" ;;
    ruby) echo "ruby3.1 libruby3.1 ruby-test-unit" ;;
    lua) echo "lua5.4 liblua5.4-0 lua-unit" ;;
    perl) echo "perl perl-base perl-modules-5.36 libperl5.36 libtest-deep-perl" ;;
    r) echo "r-base-core debianutils" ;;  # R's utils runs /usr/bin/which as it loads
    bash) echo "bash" ;;
    *) echo "build-image: unknown language '$1' in KILN_IMAGE_LANGS (known: $ALL_LANGS)" >&2; return 1 ;;
    esac
}
# whole directories a language needs beyond its packages' own file lists
# (made by maintainer scripts, or shared by many small packages)
lang_dirs() {
    case $1 in
    csharp) echo "/usr/lib/mono /etc/mono" ;;
    php) echo "/etc/php/8.2" ;;
    r) echo "/etc/R" ;;
    *) ;;
    esac
}
here=$(cd "$(dirname "$0")" && pwd)
IMAGE=${KILN_IMAGE_SPEC:-default}
case $IMAGE in
[a-z0-9]*) case $IMAGE in *[!a-z0-9._-]*) IMAGE="" ;; esac ;;
*) IMAGE="" ;;
esac
spec="$here/images/${IMAGE:-?}.conf"
if [ -z "$IMAGE" ] || [ ! -f "$spec" ]; then
    echo "build-image: no image spec for '${KILN_IMAGE_SPEC:-default}' (images: $(cd "$here/images" && ls *.conf | sed 's/\.conf$//' | tr '\n' ' '))" >&2
    exit 1
fi
IMAGE_DESCRIPTION="" IMAGE_LANGS=all IMAGE_PACKAGES="" IMAGE_DIRS=""
image_files() { :; }
. "$spec"
LANGS=${KILN_IMAGE_LANGS-$IMAGE_LANGS}
[ "$LANGS" = all ] && LANGS=$ALL_LANGS
for l in $LANGS; do
    lp=$(lang_packages "$l") || exit 1
    PACKAGES="$PACKAGES $lp"
done
# typescript runs on node
case " $LANGS " in *" typescript "*) case " $LANGS " in *" javascript "*) ;; *)
    PACKAGES="$PACKAGES $(lang_packages javascript)" ;; esac ;; esac

# the spec's packages, and the python modules, their data and the fonts
# those need (shared libraries come with the binaries that load them)
if [ -n "$IMAGE_PACKAGES" ]; then
    extra=$(/usr/bin/python3 "$here/package-closure.py" $IMAGE_PACKAGES) || exit 1
    PACKAGES="$PACKAGES $(echo "$extra" | tr '\n' ' ')"
fi

out=${1:?usage: build-image.sh OUTDIR KILN_AGENT KILN_WORKER}
agent=${2:?kiln-agent binary}
worker=${3:?kiln-worker binary}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---- inputs: rebuild only when they change ------------------------------
versions=$(dpkg-query -W -f='${Package}=${Version}\n' $PACKAGES 2>/dev/null || true)
for p in $PACKAGES; do
    echo "$versions" | grep -q "^$p=." || { echo "build-image: package $p is not installed (ops/install-deps.sh)" >&2; exit 1; }
done
base_inputs=$( { cat "$0" "$here/package-closure.py" "$spec"; echo "image=$IMAGE"; echo "$versions"; echo "deno=$DENO_VERSION $DENO_INTEGRITY"; echo "langs=$LANGS"; } | sha256sum | cut -d' ' -f1)
inputs=$( { echo "$base_inputs"; sha256sum < "$agent"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/inputs" ] && [ "$(cat "$out/inputs")" = "$inputs" ] && [ -f "$out/digest" ] && [ -d "$out/tree" ]; then
    echo "build-image: up to date ($out)"
    exit 0
fi
cache=${KILN_IMAGE_CACHE:-$out/base}/$IMAGE
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
rm -rf "$out/tree.new" "$out/tree" "$out/runtime.squashfs" "$out/digest" "$out/inputs" "$out/languages"

# copy a path (file or symlink) from this machine, keeping its directories
copy() {
    src=$1
    case "$src" in /bin/*|/sbin/*|/lib/*|/lib64/*) src="/usr$src" ;; esac
    [ -e "$src" ] || [ -L "$src" ] || return 0
    # never into a file the tree has: it may be the base's, hard-linked
    { [ -e "$tree$src" ] || [ -L "$tree$src" ]; } && return 0
    [ -d "$src" ] && [ ! -L "$src" ] && { mkdir -p "$tree$src"; return 0; }
    mkdir -p "$tree$(dirname "$src")"
    cp -a "$src" "$tree$src"
}

# copy a path and every link on the way to its file: libblas.so.3 is
# /etc/alternatives/... is blas/libblas.so.3 is blas/libblas.so.3.11.0
copy_chain() {
    link=$1
    for _ in 1 2 3 4 5 6 7 8; do
        copy "$link"
        [ -L "$link" ] || return 0
        next=$(readlink "$link")
        case "$next" in /*) link=$next ;; *) link="$(dirname "$link")/$next" ;; esac
    done
}

# the shared libraries files load, one absolute path per line, but for
# those the tree holds already (a JVM library's $ORIGIN run path finds its
# siblings in the tree itself: copied again, they would put the build's
# own path in the image)
libs_of() {
    while read -r f; do
        ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'
    done | sort -u | grep -v "^$tree/" || true
}

if [ -f "$cache/inputs" ] && [ "$(cat "$cache/inputs")" = "$base_inputs" ] && [ -d "$cache/tree" ]; then
    echo "build-image: base tree up to date ($cache)"
else
tree="$cache/tree.new"
rm -rf "$tree" "$cache/tree" "$cache/inputs"
mkdir -p "$tree"

# ---- the skeleton: merged /usr, the mount points the jail needs ----------
mkdir -p "$tree/usr/bin" "$tree/usr/sbin" "$tree/usr/lib" "$tree/usr/lib64" \
         "$tree/usr/local/bin" "$tree/etc" "$tree/dev" "$tree/proc" "$tree/sys" \
         "$tree/tmp" "$tree/work" "$tree/root" "$tree/run" "$tree/home"
for d in bin sbin lib lib64; do ln -s "usr/$d" "$tree/$d"; done
chmod 1777 "$tree/tmp"

# ---- Debian packages ----------------------------------------------------
# Their files, /bin and friends as /usr's (merged /usr), in one cp per
# package (tens of thousands of files: one process each would take minutes)
for p in $PACKAGES; do
    dpkg -L "$p" | grep -v -e '^/usr/share/doc' -e '^/usr/share/man' -e '^/usr/share/info' \
                          -e '^/usr/share/lintian' -e '^/etc/cron' -e '^/diverted' -e '/fiddle' |
        sed -e 's#^/\(bin\|sbin\|lib\|lib64\)/#/usr/\1/#' | while read -r f; do
        if [ -d "$f" ] && [ ! -L "$f" ]; then mkdir -p "$tree$f"; elif [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi
    done | xargs -r -d '\n' cp -a --parents -t "$tree"
done
# the alternatives' links (/usr/bin/mono -> /etc/alternatives/mono -> ...)
cp -a /etc/alternatives "$tree/etc/"
# and the commands' own links to them, which maintainer scripts make (no
# package lists /usr/bin/which), where what they lead to is in the image
for f in /usr/bin/* /usr/sbin/*; do
    [ -L "$f" ] && [ ! -e "$tree$f" ] || continue
    case $(readlink "$f") in /etc/alternatives/*) ;; *) continue ;; esac
    real=$(readlink -f "$f")
    [ -e "$tree$real" ] && cp -a "$f" "$tree$f"
done
for d in $(for l in $LANGS; do lang_dirs "$l"; done) $IMAGE_DIRS; do
    [ -d "$d" ] && mkdir -p "$tree$(dirname "$d")" && cp -a "$d" "$tree$(dirname "$d")/"
done
ln -sf dash "$tree/usr/bin/sh"

# ---- deno from npm, checked --------------------------------------------
npmdir="$out/npm"
mkdir -p "$npmdir"
tgz="$npmdir/deno-linux-x64-glibc-$DENO_VERSION.tgz"
if [ ! -f "$tgz" ]; then
    (cd "$npmdir" && npm pack --silent "@deno/linux-x64-glibc@$DENO_VERSION" >/dev/null)
fi
got=$(/usr/bin/python3 -c 'import base64, hashlib, sys
print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")
if [ "$got" != "$DENO_INTEGRITY" ]; then
    echo "build-image: deno tarball integrity mismatch: $got" >&2
    rm -f "$tgz"
    exit 1
fi
tar -xzf "$tgz" -C "$npmdir" package/deno
install -m 0755 "$npmdir/package/deno" "$tree/usr/local/bin/deno"

# ---- every shared library the binaries load ----------------------------
find "$tree" -type f \( -perm -u+x -o -name '*.so*' \) | libs_of | while read -r lib; do
    copy_chain "$lib"
done

# ---- what the compilers link programs with: libraries no binary here
# loads, named by glibc's linker scripts (libm.so names libmvec) and by
# g++ (libstdc++, libgcc_s) ------------------------------------------------
for lib in libmvec.so.1 libstdc++.so.6 libgcc_s.so.1; do
    copy_chain "/usr/lib/x86_64-linux-gnu/$lib"
done

# ---- the C.UTF-8 locale the sandbox's LANG names (perl and R warn
# without it) -------------------------------------------------------------
mkdir -p "$tree/usr/lib/locale"
cp -a /usr/lib/locale/C.utf8 "$tree/usr/lib/locale/"

# ---- /etc of our own ----------------------------------------------------
cat > "$tree/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
kiln:x:1000:1000:kiln job:/work:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PW
printf 'root:x:0:\nkiln:x:1000:\nnogroup:x:65534:\n' > "$tree/etc/group"
printf '127.0.0.1 localhost kiln\n::1 localhost ip6-localhost\n' > "$tree/etc/hosts"
printf 'kiln\n' > "$tree/etc/hostname"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$tree/etc/nsswitch.conf"
: > "$tree/etc/resolv.conf"
ln -sf /usr/share/zoneinfo/Etc/UTC "$tree/etc/localtime"
[ -f /etc/ssl/certs/ca-certificates.crt ] && copy /etc/ssl/certs/ca-certificates.crt
printf 'kiln runtime image %s (%s): deno %s, %s\n' "$IMAGE" "$IMAGE_DESCRIPTION" "$DENO_VERSION" \
    "$(echo "$versions" | grep '^python3.11=')" > "$tree/etc/kiln-image"
image_files # the spec's own files
# each plugin's toolchain and its version, as the worker reports them
# (kiln-worker --list-plugins, kiln_plugin_info in /metrics)
toolchain_of() {
    case $1 in
    shell) echo dash ;; python) echo python3.11 ;; c) echo gcc-12 ;; cpp) echo g++-12 ;;
    java) echo openjdk-17-jdk-headless ;; javascript) echo nodejs ;; typescript) echo node-typescript ;;
    go) echo golang-1.19-go ;; rust) echo rustc-web ;; csharp) echo mono-runtime ;; php) echo php8.2-cli ;;
    ruby) echo ruby3.1 ;; lua) echo lua5.4 ;; perl) echo perl ;; r) echo r-base-core ;; bash) echo bash ;;
    esac
}
{
    echo "deno-eval deno $DENO_VERSION"
    for l in shell python c cpp $LANGS; do
        pkg=$(toolchain_of "$l")
        echo "$l $pkg $(echo "$versions" | sed -n "s/^$pkg=//p")"
    done
} > "$tree/etc/kiln-toolchains"

# bytecode for the whole stdlib, made here: the root is read-only in a
# sandbox, and compiling what a job imports at every start costs tens of ms
/usr/bin/python3 -m compileall -q -j 0 -s "$tree" -p / "$tree/usr/lib/python3" "$tree/usr/lib/python3.11" \
    >/dev/null 2>&1 || true

chmod -R go-w "$tree"
mv "$tree" "$cache/tree"
echo "$base_inputs" > "$cache/inputs"
fi

# ---- kiln-agent, and the libraries only it loads (a sanitizer's) ---------
# on a hard-linked copy of the base: new files only, never a write into one
# the base shares
tree="$out/tree.new"
cp -al "$cache/tree" "$tree" 2>/dev/null || { rm -rf "$tree"; cp -a "$cache/tree" "$tree"; }
install -m 0755 "$agent" "$tree/usr/sbin/kiln-agent"
echo "$agent" | libs_of | while read -r lib; do
    copy_chain "$lib"
done
chmod -R go-w "$tree" # modes only: the base's files are so already

# ---- finish: digest, squashfs ------------------------------------------
mv "$tree" "$out/tree"
digest=$("$worker" --rootfs-digest-of "$out/tree")
echo "$digest" > "$out/digest"
if command -v mksquashfs >/dev/null 2>&1; then
    # zstd's level 3, not its default 15: a tenth of the time (9 s beside
    # 100 on two cores) for an image 13% larger; reading it is as fast
    mksquashfs "$out/tree" "$out/runtime.squashfs" -noappend -all-root -quiet \
        -comp zstd -Xcompression-level 3 >/dev/null
fi
# the squashfs is the default: a tree bound into a jail shows its host path
# in the sandbox's /proc/self/mountinfo; the tree is there for who asks
root="$out/tree"
[ -f "$out/runtime.squashfs" ] && root="$out/runtime.squashfs"
printf 'KILN_ROOTFS_NAME=%s\nKILN_ROOTFS=%s\nKILN_ROOTFS_DIGEST=%s\nKILN_ROOTFS_TREE=%s\n' "$IMAGE" "$root" "$digest" \
    "$out/tree" > "$out/kiln.env"
[ -f "$out/runtime.squashfs" ] && printf 'KILN_VM_IMAGE=%s\n' "$out/runtime.squashfs" >> "$out/kiln.env"
echo "$inputs" > "$out/inputs"
cut -d' ' -f1 "$out/tree/etc/kiln-toolchains" > "$out/languages"
echo "build-image: image $IMAGE in $out/tree ($(du -sh "$out/tree" | cut -f1)), digest $digest"
