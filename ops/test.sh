#!/bin/sh
# The test command: build with -Wall -Wextra and -Werror (KILN_WERROR), run
# every test, then build again with AddressSanitizer and
# UndefinedBehaviorSanitizer and run every test again. KILN_TEST_FAST=1
# skips the sanitizer pass.
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

run() { # dir, cmake options...
    dir=$1; shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
    (cd "$dir" && ctest --output-on-failure --timeout 600)
}

# both passes' images share their base trees (rootfs/build-image.sh): the
# sanitizer pass adds its own agent to the plain pass's packages
KILN_IMAGE_CACHE=${KILN_IMAGE_CACHE:-$(pwd)/build/image-cache}
export KILN_IMAGE_CACHE
echo "== build and test"
run build -DKILN_WERROR=ON
if [ "${KILN_TEST_FAST:-0}" != 1 ]; then
    echo "== build and test under ASan + UBSan"
    # the agent runs as PID 1 of a user namespace where LeakSanitizer's
    # ptrace-based stop-the-world cannot work; leaks are checked in the
    # worker, client and unit tests
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        run build-asan -DKILN_SANITIZE=ON -DKILN_WERROR=ON
    echo "== fuzzing (libFuzzer, clang), briefly"
    tests/fuzz/run.sh
fi
