#!/bin/sh
# The layers point down: a file may include its own layer's headers and
# those of layers below it, never one above. Run by the build (target
# `layers`, part of `all`), so a wrong-way include fails the build, with
# the line that did it. The order, lowest first:
#
#   base     log, system helpers, file stamps: nothing of kiln's
#   wire     the bytes both sides agree on (agent protocol, job, frames)
#   egress   the egress proxy: its policy, secrets, TLS
#   expose   the exposed-port proxy: sessions' servers reached from outside
#   queue    where jobs come from (Redis, Kafka)
#   sandbox  where jobs run (jail, QEMU, Firecracker)
#   core     a job's life, sessions, the pool, plugins, settings
#   cli      the kiln command (wire and base, and a Kafka helper of queue)
#   main     worker/main.c, which wires core to a queue and a backend
#
# The agent (agent/) is a program of its own, inside the sandbox: it may
# use wire and nothing else of the worker.
set -eu
root=${1:-$(dirname "$0")/../..}
cd "$root"

rank() {
    case $1 in
    base) echo 0 ;; wire) echo 1 ;; egress) echo 2 ;; expose) echo 2 ;; queue) echo 2 ;;
    sandbox) echo 3 ;; core) echo 4 ;; cli) echo 5 ;; main) echo 6 ;;
    *) echo 99 ;;
    esac
}

check() { # file, its layer, the layers it may use besides those below it
    file=$1 layer=$2 also=$3
    own=$(rank "$layer")
    grep -n '^#include "[a-z]*/' "$file" | while IFS= read -r line; do
        dep=$(printf '%s' "$line" | sed 's/^[0-9]*:#include "\([a-z]*\)\/.*/\1/')
        [ "$dep" = kiln ] && continue # worker/include/kiln: the plugin ABI, for all
        case " $also " in *" $dep "*) continue ;; esac
        if [ "$(rank "$dep")" -ge "$own" ] && [ "$dep" != "$layer" ]; then
            echo "layers: $file:${line%%:*}: $layer includes $dep, a layer above or beside it"
        fi
    done
}

out=$(
    for dir in base wire egress expose queue sandbox core cli; do
        for f in worker/$dir/*.c worker/$dir/*.h; do
            [ -e "$f" ] || continue
            case $dir in
            cli) check "$f" cli "queue" ;; # its Kafka client shares queue/kafka_client.c
            *) check "$f" "$dir" "" ;;
            esac
        done
    done
    check worker/main.c main ""
    for f in agent/*.c agent/*.h; do
        grep -n '^#include "[a-z]*/' "$f" | grep -v '"wire/\|"kiln/' |
            sed "s|^\([0-9]*\):.*|layers: $f:\1: the agent uses wire only|" || true
    done
)
if [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    echo "layers: wrong-way includes (ops/build/check-layers.sh says the order)" >&2
    exit 1
fi
exit 0
