"""The modules the benchmarks need (msgpack, redis) are Debian's python3-*
packages (ops/install-deps.sh). Under another python3 first on PATH (a
venv, pyenv, conda), run the script again under Debian's, or say what is
missing. Import this before msgpack or redis."""
import os
import sys

SYSTEM_PY = "/usr/bin/python3"


def ensure(script):
    try:
        import msgpack  # noqa: F401
        import redis  # noqa: F401
    except ImportError as e:
        name = os.path.basename(script)
        if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PY) and os.access(SYSTEM_PY, os.X_OK):
            sys.stderr.write("%s: %s under %s; running again under %s\n" % (name, e, sys.executable, SYSTEM_PY))
            os.execv(SYSTEM_PY, [SYSTEM_PY, os.path.abspath(script)] + sys.argv[1:])
        sys.exit("%s: %s: install python3-msgpack and python3-redis (ops/install-deps.sh)" % (name, e))
