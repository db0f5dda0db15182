#!/bin/sh
# Install everything kiln needs to build and test, from Debian's archive.
# Used by the README's quickstart and by CI (.ci/run). Safe to run again.
set -eu

# build; the man pages, made from the programs' own --help
PKGS="build-essential cmake pkg-config help2man man-db"
# libraries the worker, agent and client link (README: "Dependencies")
PKGS="$PKGS libuv1-dev libhiredis-dev libmsgpack-dev librdkafka-dev libssl-dev"
PKGS="$PKGS libseccomp-dev libjansson-dev libhttp-parser-dev zlib1g-dev"
# tests: unit framework, real servers, independent clients, process tools
PKGS="$PKGS libcmocka-dev redis-server redis-tools kcat"
PKGS="$PKGS python3 python3-redis python3-msgpack python3-confluent-kafka python3-prometheus-client python3-yaml mypy"
PKGS="$PKGS procps iproute2 util-linux curl"
# fuzzing: clang with its libFuzzer runtime; the benchmark's plot
PKGS="$PKGS clang libclang-rt-14-dev gnuplot-nox"
# the evaluation benchmark's baseline: a sandbox per program with bubblewrap
PKGS="$PKGS bubblewrap"
# the CPU budget benchmark samples every CPU (tests/bench/bench_budget.py)
PKGS="$PKGS linux-perf"
# the runtime image (rootfs/build-image.sh): what goes in, and squashfs
PKGS="$PKGS python3-minimal dash coreutils grep sed findutils mawk diffutils gzip tar"
PKGS="$PKGS media-types tzdata ca-certificates squashfs-tools"
# ... and the compilers of the c and cpp plugins
PKGS="$PKGS gcc-12 g++-12 libc6-dev"
# ... and the languages of benchmarks (plugins/README.md, rootfs/README.md):
# each language's toolchain and the test libraries its benchmarks import
PKGS="$PKGS openjdk-17-jdk-headless libjavatuples-java"           # java
PKGS="$PKGS nodejs node-typescript"                                # javascript, typescript
PKGS="$PKGS golang-go"                                             # go (1.19)
PKGS="$PKGS rustc-web"                                             # rust (current stable)
PKGS="$PKGS mono-mcs mono-runtime libmono-system-numerics4.0-cil"  # csharp
PKGS="$PKGS php8.2-cli ruby3.1 ruby-test-unit lua5.4 lua-unit"    # php, ruby, lua
PKGS="$PKGS perl libtest-deep-perl r-base-core bash"               # perl, r, bash
# ... and what the other runtime images hold beyond it (rootfs/images/*.conf:
# python-data's numpy, pandas, scipy, matplotlib, ...)
for spec in "$(dirname "$0")"/../rootfs/images/*.conf; do
    PKGS="$PKGS $(IMAGE_PACKAGES=""; . "$spec"; echo $IMAGE_PACKAGES)"
done
# microVMs (rootfs/build-vm.sh, --backend qemu): the VMM, the guest kernel,
# and cpio for the initramfs
PKGS="$PKGS qemu-system-x86 linux-image-amd64 cpio"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
else
    echo "install-deps: everything is installed"
fi
# deno comes from the npm registry (rootfs/build-image.sh); npm from Debian
# when the machine has none
if ! command -v npm >/dev/null 2>&1; then
    echo "install-deps: installing npm"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
fi
# the TypeScript/Node client's dependencies (ioredis, @msgpack/msgpack,
# kafkajs), exactly as its lockfile has them
(cd "$(dirname "$0")/../clients/node" && npm ci --no-audit --no-fund --loglevel=error)
# ... and npm's cache with what installing the packed client resolves, as a
# user's machine has it once it installed it: the tests install the package
# from its tarball with --offline (test_client_node)
t=$(mktemp -d)
(cd "$(dirname "$0")/../clients/node" && npm pack --pack-destination "$t" --silent >/dev/null)
(cd "$t" && echo '{"name": "prime", "private": true}' >package.json &&
    npm install --prefer-offline --no-audit --no-fund --loglevel=error ./kiln-client-*.tgz >/dev/null)
rm -rf "$t"
