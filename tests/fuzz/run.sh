#!/bin/sh
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for
# KILN_FUZZ_SECONDS (default 20), seeded from the schema vectors. For a
# longer run: KILN_FUZZ_SECONDS=3600 tests/fuzz/run.sh; a crash leaves its
# input in build-fuzz/crash-* and the run fails.
set -eu
cd "$(dirname "$0")/../.."
secs=${KILN_FUZZ_SECONDS:-20}
CC=clang cmake -S . -B build-fuzz -DKILN_FUZZ=ON -DKILN_WERROR=ON -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_job fuzz_proto fuzz_mux fuzz_http >/dev/null
mkdir -p build-fuzz/corpus/job build-fuzz/corpus/proto build-fuzz/corpus/mux build-fuzz/corpus/http
cp schemas/vectors/job/*/*.msgpack build-fuzz/corpus/job/
# agent messages: each golden frame, framed with its 4-byte length
for f in schemas/vectors/frame/*.msgpack; do
    /usr/bin/python3 -c 'import sys, struct; d = open(sys.argv[1], "rb").read(); sys.stdout.buffer.write(b"\x07" + struct.pack(">I", len(d)) + d)' "$f" \
        > "build-fuzz/corpus/proto/$(basename "$f")"
done
# the egress mux: a stream opened, carrying data, closed, and a bad frame
/usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(b"O\x01\x00\x00" + b"D\x01\x00\x05hello" + b"C\x01\x00\x00" + b"C\x01\x00\x00")' \
    > build-fuzz/corpus/mux/stream
/usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(b"O\x07\x00\x00O\x08\x00\x00D\x07\x00\x02hiD\xff\x00\x00")' \
    > build-fuzz/corpus/mux/two
# the rewriter: requests with placeholders, a body, a chunked body, an upgrade
ph=kiln-secret-00112233445566778899aabbccddeeff
printf '\001\003\005\007GET http://api.example:8080/a?k=%s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n' $ph $ph \
    > build-fuzz/corpus/http/get
printf '\002\011\001\020POST /p HTTP/1.1\r\nContent-Length: 5\r\nX: %s\r\n\r\nhelloGET /q HTTP/1.1\r\nX: %s\r\n\r\n' $ph $ph \
    > build-fuzz/corpus/http/body
printf '\002\001\002\003POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n%s' $ph \
    > build-fuzz/corpus/http/chunked
# ... and what the fuzzer once found: a fragment with no path nor query before it
printf '\001\003\005\007GET http://api.example:8080?#4aabbccddeeff HTTP/1.1\r\nAuth:api.exab\r\n\r\n' \
    > build-fuzz/corpus/http/fragment
for t in job proto mux http; do
    log=build-fuzz/fuzz_$t.log
    if ! (cd build-fuzz && ./bin/fuzz_$t -max_total_time="$secs" -max_len=65536 \
              -print_final_stats=1 corpus/$t) >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz_$t failed (inputs: build-fuzz/crash-*)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    [ -n "$runs" ] && [ "$runs" -gt 0 ] || { tail -20 "$log" >&2; echo "fuzz_$t did not run" >&2; exit 1; }
    echo "fuzz_$t: ${secs}s, $runs inputs, no crash"
done
echo "fuzzing: no crash"
