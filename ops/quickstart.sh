#!/bin/sh
# Quickstart: install what kiln needs, build it, start a private Redis and a
# worker, and run sample jobs end to end through the queue with `kiln submit`.
# Everything it starts is stopped when it ends.
set -eu
cd "$(dirname "$0")/.."
ops/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
# the runtime image sandboxes use as / (python3, deno, a shell): once, cached
cmake --build build --target rootfs
set -a; . build/rootfs/kiln.env; set +a
# ... and python-data, the default's base with numpy, pandas, matplotlib, ...
cmake --build build --target image-python-data
data=build/images/python-data

tmp=$(mktemp -d)
port=${KILN_QUICKSTART_PORT:-6399}
cleanup() {
    [ -n "${worker:-}" ] && kill "$worker" 2>/dev/null || true
    [ -n "${vmworker:-}" ] && kill "$vmworker" 2>/dev/null || true
    [ -n "${vmworker:-}" ] && wait "$vmworker" 2>/dev/null || true
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

redis-server --port "$port" --bind 127.0.0.1 --save '' --dir "$tmp" --daemonize yes \
    --logfile "$tmp/redis.log"
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
export KILN_REDIS="redis://127.0.0.1:$port"

build/bin/kiln-worker --consumer quickstart --slots 2 --pool 2 \
    --image "python-data=$data/runtime.squashfs" --image-digest "python-data=$(cat "$data/digest")" \
    2>"$tmp/worker.log" &
worker=$!
for _ in $(seq 300); do grep -q "fetch connection up" "$tmp/worker.log" && break; sleep 0.1; done

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
status() { echo "(exit status $?)"; }

step kiln submit --code 'echo "hello from $(uname -n), uid $(id -u), pid $$"; ls /'
build/bin/kiln submit --code 'echo "hello from $(uname -n), uid $(id -u), pid $$"; ls /' && status || status

step kiln submit --stdin 'world' --arg kiln --code 'read w; echo "hello $w from $1"; echo warning >&2; exit 3'
build/bin/kiln submit --stdin 'world' --arg kiln --code 'read w; echo "hello $w from $1"; echo warning >&2; exit 3' && status || status

step kiln submit --timeout-ms 300 --code 'trap "" TERM; sleep 1000'
build/bin/kiln submit --timeout-ms 300 --code 'trap "" TERM; sleep 1000' && status || status

net="import socket; socket.create_connection(('127.0.0.1', $port), 2)"
step kiln submit --code "echo hi > /etc/passwd; python3 -c \"$net\" || echo 'no way to the host Redis'"
build/bin/kiln submit --code "echo hi > /etc/passwd; python3 -c \"$net\" 2>&1 | tail -1; echo 'no way to the host Redis'" && status || status

step kiln submit --plugin python --arg 7 --code 'import sys; n = int(sys.argv[1]); print(f"{n}! =", __import__("math").factorial(n))'
build/bin/kiln submit --plugin python --arg 7 --code 'import sys; n = int(sys.argv[1]); print(f"{n}! =", __import__("math").factorial(n))' && status || status

step kiln submit --plugin python --code 'def f(x): return 1 / x' '\n' 'print(f(0))'
build/bin/kiln submit --plugin python --code 'def f(x): return 1 / x
print(f(0))' && status || status

step kiln submit --plugin deno-eval --code 'const xs: number[] = [1, 2, 3]; console.log(xs.map((x) => x * 2)); await fetch("https://example.com")'
build/bin/kiln submit --plugin deno-eval --code 'const xs: number[] = [1, 2, 3]; console.log(xs.map((x) => x * 2)); await fetch("https://example.com")' && status || status

step kiln submit --plugin cobol --code 'DISPLAY 1'
build/bin/kiln submit --plugin cobol --code 'DISPLAY 1' && status || status

step kiln submit --id demo --reply-to demo.out --code 'echo frames' '&&' kiln frames --stream demo.out
build/bin/kiln submit --id demo --reply-to demo.out --code 'echo frames' >/dev/null
build/bin/kiln frames --stream demo.out

# What kiln does beyond running a program: a program graded against test
# cases (each case in a fresh sandbox, a verdict per case; with the Python
# client), a session whose interpreter lives on from job to job, files a
# job wrote sent back, and `kiln eval` over a small bundled problem set.
step "python3 - <<EOF  (kiln_client: one program, three test cases)"
PYTHONPATH=clients/python /usr/bin/python3 - <<'EOF'
import os
from kiln_client import Client
with Client(os.environ["KILN_REDIS"]) as kiln:
    r = kiln.run("python", "a, b = map(int, input().split())\nprint(a + b)", timeout=120, tests=[
        {"stdin": "1 2\n", "expect": {"stdout": "3\n"}},
        {"stdin": "5 5\n", "expect": {"stdout": "10\n"}},
        {"stdin": "2 2\n", "expect": {"stdout": "5\n"}}])
    print("verdict:", r.verdict, "| cases:", ", ".join(c["verdict"] for c in r.cases))
EOF

step kiln submit --session demo --plugin python --code "'import math; r = 3'"
build/bin/kiln submit --session demo --plugin python --code 'import math; r = 3' && status || status
step kiln submit --session demo --plugin python --code "'area = math.pi * r ** 2'"
build/bin/kiln submit --session demo --plugin python --code 'area = math.pi * r ** 2' && status || status
step kiln submit --session demo --plugin python --close --code "'round(area, 2)'"
build/bin/kiln submit --session demo --plugin python --close --code 'round(area, 2)' && status || status

collect='import os; os.makedirs("out"); open("out/squares.csv", "w").write("".join(f"{i},{i*i}\n" for i in range(5)))'
step kiln submit --plugin python --collect "'out/*.csv'" --out-dir got --code "'$collect'" '&&' cat got/out/squares.csv
build/bin/kiln submit --plugin python --collect 'out/*.csv' --out-dir "$tmp/got" --code "$collect" &&
    cat "$tmp/got/out/squares.csv" && status || status

plot='import pandas as pd; ax = pd.Series([1, 4, 9, 16]).plot(); ax.figure.savefig("plot.png"); print(pd.__version__)'
step kiln submit --image python-data --plugin python --collect plot.png --out-dir got --code "'$plot'"
build/bin/kiln submit --image python-data --plugin python --collect plot.png --out-dir "$tmp/got" --code "$plot" &&
    /usr/bin/python3 -c 'import struct, sys; d = open(sys.argv[1], "rb").read()
print("got plot.png: a %dx%d PNG" % struct.unpack(">II", d[16:24]) if d[:8] == b"\x89PNG\r\n\x1a\n" else "not a PNG")' \
        "$tmp/got/plot.png" && status || status

step kiln eval --problems tests/integration/eval/problems.jsonl --samples tests/integration/eval/samples.jsonl --k 1,5 --timeout-ms 5000
build/bin/kiln eval --problems tests/integration/eval/problems.jsonl \
    --samples tests/integration/eval/samples.jsonl --out "$tmp/eval.jsonl" --k 1,5 --timeout-ms 5000 && status || status

# The same kind of job in a microVM: a QEMU microvm guest with its own
# kernel (KVM where it runs guests, TCG here), from a second worker on its
# own stream. The guest kernel and initramfs are built once, cached after.
cmake --build build --target vm-image >/dev/null
set -a; . build/vm/vm.env; set +a
# with the two plugins it runs: a warm VM per plugin for all of them would
# boot them all at once, slowly under TCG
mkdir "$tmp/vm-plugins"
ln -s "$PWD/build/lib/kiln/plugins/shell.so" "$PWD/build/lib/kiln/plugins/python.so" "$tmp/vm-plugins/"
build/bin/kiln-worker --consumer quickstart-vm --backend qemu --jobs kiln.vm.jobs --slots 1 \
    --pool 1 --plugin-dir "$tmp/vm-plugins" --state-dir "$tmp/vm" 2>"$tmp/vm-worker.log" &
vmworker=$!
for _ in $(seq 100); do grep -q "fetch connection up" "$tmp/vm-worker.log" && break; sleep 0.1; done

vmcode='echo "hello from kernel $(uname -r) in a VM"; grep -m1 MemTotal /proc/meminfo'
step kiln submit --jobs kiln.vm.jobs --code "'$vmcode'"
build/bin/kiln submit --jobs kiln.vm.jobs --code "$vmcode" && status || status
step kiln submit --jobs kiln.vm.jobs --plugin python --code "'import platform; print(platform.release())'"
build/bin/kiln submit --jobs kiln.vm.jobs --plugin python --code 'import platform; print(platform.release())' && status || status

printf '\nworker log:\n'
cat "$tmp/worker.log"
printf '\nmicroVM worker log:\n'
cat "$tmp/vm-worker.log"
