/*
 * python: the job's code becomes /work/main.py and runs as
 *
 *   python3 -E -s -u -B /work/main.py ARGS...
 *
 * -E no PYTHON* variables, -s no user site (the script's directory is first
 * on the path: a job's own modules beside main.py import), -u unbuffered
 * so output streams as it is printed, -B no .pyc files.
 * An uncaught exception prints its traceback on stderr and exits 1: status
 * "error".
 *
 * Zygote (KILN_PLUGIN_FORKS): the same warm interpreter can instead be
 * started once per worker and forked into each sandbox, set up by kiln's
 * zygote library (agent/zygote.c) before it reads its job.
 *
 * Preload: the zygote's template imports the modules the worker names in
 * KILN_PRELOAD (--preload) before it forks, so a job that imports typing
 * or collections finds them loaded, as a program run by an evaluation
 * harness does in the harness's own process; gc.freeze() keeps their
 * objects out of every fork's collections, so their pages stay shared.
 * Each job is a fresh fork: what one job changes in a module no other job
 * sees. A module of the job's own that shadows a preloaded one in a cold
 * run (/work/random.py, a /work/json/ package) does so here too: then
 * nothing preloaded is kept for that job. A run whose end is checked
 * refuses ctypes and numpy (below); when the template preloaded either (an
 * operator's --image-preload python-data=numpy,pandas), such a run does not
 * go on in the fork but execs its cold command there, so it has nothing
 * the template loaded.
 *
 * Warm start: the interpreter is started with the same flags ahead of the
 * job and waits on stdin for the job's argv and environment (see
 * plugin.h), then runs /work/main.py as the cold command would, with the
 * same sys.argv, sys.path[0], __main__, environment and traceback. It
 * imports nothing more than a bare interpreter does (runpy would pull in
 * pkgutil: ~9 ms of CPU per job), and it ends as Python ends (threads
 * joined, atexit handlers run, output flushed) less the teardown of every
 * module, which a single-use sandbox does not need.
 */
#include <kiln/plugin.h>
#include <string.h>

#define PYTHON "/usr/bin/python3"
#define SCRIPT "/work/main.py"

/* A script run: no PYTHON* variables (-E), no user site (-s), the script's
 * directory first on the path; -c runs (the bootstrap, a session) are
 * isolated (-I: the same, and nothing on the path before the bootstrap
 * puts the script's directory there, after it took what it guards). */
static const char *const script_flags[] = {PYTHON, "-E", "-s", "-u", "-B"};
static const char *const c_flags[] = {PYTHON, "-I", "-u", "-B"};

/* Reads the envelope, becomes the job, runs the script. Frames of this
 * bootstrap are cut from tracebacks so they read as a cold run's. Started
 * with the script's path after it (python3 ... -c BOOTSTRAP /work/main.py
 * ARGS: a cold run whose end is checked), it reads no envelope.
 *
 * A run whose end is checked (plugin.h, KILN_PLUGIN_ENDS): _kiln_end_arm()
 * takes the agent's token before the program's code runs and keeps it in
 * the closure of an audit hook, which Python code cannot reach or remove;
 * the hook writes it to the proof file when, and only when, sys.audit is
 * called with "kiln.end" from the runner's own frame (_kiln_run): the
 * `else` of the try around the program's exec, reached when its code came
 * back without an exception (SystemExit included). The program cannot call
 * that from anywhere else (the frame is checked by identity), nor make the
 * runner call it (every name the runner calls is bound when it is defined,
 * so rewriting the bootstrap's globals changes none), nor run a module of
 * its own before the token is taken (the runner takes it before it puts
 * the script's directory on the path), and the
 * hook refuses it what could read the token from memory or skip code:
 * ctypes, the gc's object lists, other threads' frames, trace and profile
 * functions, /proc's mem files, and numpy (an image may have it: an
 * array's __array_interface__ reads and writes memory at any address it
 * names, no audit event said; refused as its import starts, by any name
 * its core extension is loaded under); the process is made non-dumpable,
 * so /proc/<pid>/mem is root's, for a child as for itself. */
static const char bootstrap[] =
    "import os, sys\n"
    "if len(sys.argv) > 1:\n"
    "    sys.argv = sys.argv[1:]\n"
    "else:\n"
    "    _pre, _cold = set(), False\n"
    "    if 'KILN_ZYGOTE' in os.environ:\n"
    "        # what the operator preloads (--preload), imported once here\n"
    "        import importlib.machinery\n"
    "        _sfx = tuple(importlib.machinery.all_suffixes())\n"
    "        _z = set(sys.modules)\n"
    "        for _m in os.environ.get('KILN_PRELOAD', '').split(','):\n"
    "            try:\n"
    "                _m and __import__(_m)\n"
    "            except BaseException as _e:\n"
    "                print('kiln: preload %s: %r' % (_m, _e), file=sys.stderr)\n"
    "        _pre = set(sys.modules) - _z\n"
    "        # what a run whose end is checked refuses: such a run starts afresh\n"
    "        _cold = not _pre.isdisjoint(('_ctypes', 'ctypes', 'numpy'))\n"
    "        import gc\n"
    "        gc.collect()\n"
    "        gc.freeze()  # the template's objects: no fork's collector touches (copies) their pages\n"
    "        # a fork server: this returns in each sandbox forked (plugin.h)\n"
    "        _z = set(sys.modules)\n"
    "        import ctypes\n"
    "        if ctypes.PyDLL(os.environ['KILN_ZYGOTE']).kiln_zygote_serve() != 0:\n"
    "            os._exit(0)\n"
    "        for _m in set(sys.modules) - _z:\n"
    "            del sys.modules[_m]\n"
    "        del ctypes, _z, _m\n"
    "    def _kiln_read(n):\n"
    "        b = b''\n"
    "        while len(b) < n:\n"
    "            c = os.read(0, n - len(b))\n"
    "            if not c:\n"
    "                os._exit(0)\n"
    "            b += c\n"
    "        return b\n"
    "    _f = _kiln_read(int.from_bytes(_kiln_read(4), 'big')).split(b'\\0')\n"
    "    _n = int(_f[0])\n"
    "    _argv = [os.fsdecode(a) for a in _f[1:1 + _n]]\n"
    "    os.environ.clear()\n"
    "    for _kv in _f[1 + _n:]:\n"
    "        _k, _, _v = _kv.partition(b'=')\n"
    "        if _k:\n"
    "            os.environb[_k] = _v\n"
    "    # the script and its arguments: what follows the interpreter's flags\n"
    "    _i = _argv.index('" SCRIPT "')\n"
    "    if _cold and '-c' in _argv[:_i]:\n"
    "        # a run whose end is checked (its command runs this bootstrap) in a\n"
    "        # fork holding what it refuses: its cold command, in this sandbox\n"
    "        os.execv(_argv[0], _argv)\n"
    "    sys.argv = _argv[_i:]\n"
    "    # a module of the job's own beside the script comes before the\n"
    "    # standard library's, as in a cold run: if one has a preloaded\n"
    "    # module's name, nothing preloaded is kept (what imported it would\n"
    "    # hold the other one)\n"
    "    if _pre:\n"
    "        _d = os.path.dirname(sys.argv[0])\n"
    "        for _m in os.listdir(_d):\n"
    "            _t = next((_m[:-len(_s)] for _s in _sfx if _m.endswith(_s)), None)\n"
    "            if _t is None and any(os.path.exists(os.path.join(_d, _m, '__init__' + _s)) for _s in _sfx):\n"
    "                _t = _m\n"
    "            if _t in _pre:\n"
    "                for _k in _pre:\n"
    "                    sys.modules.pop(_k, None)\n"
    "                break\n"
    "    del _f, _n, _argv, _pre, _i\n"
    "def _kiln_exit(code, sys=sys, os=os):\n"
    "    # as the interpreter ends, less its teardown: threads, atexit, flush\n"
    "    try:\n"
    "        if 'threading' in sys.modules:\n"
    "            sys.modules['threading']._shutdown()\n"
    "        import atexit\n"
    "        atexit._run_exitfuncs()\n"
    "    finally:\n"
    "        for s in (sys.stdout, sys.stderr):\n"
    "            try:\n"
    "                s.flush()\n"
    "            except BaseException:\n"
    "                pass\n"
    "        os._exit(code)\n"
    "def _kiln_end_arm():\n"
    "    try:\n"
    "        fd = os.open('/tmp/.kiln-end/token', os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)\n"
    "    except OSError:\n"
    "        return\n"
    "    # numpy reads and writes memory at any address an array's interface\n"
    "    # names: refused, by its package's name or its core's, wherever loaded from\n"
    "    raw = frozenset(('numpy', '_multiarray_umath'))\n"
    "    if any(not raw.isdisjoint(m.split('.')) for m in sys.modules):\n"
    "        os.close(fd)\n"
    "        raise RuntimeError('kiln: numpy is loaded: a run whose end is checked cannot run here')\n"
    "    try:\n"
    "        tok = os.read(fd, 64)\n"
    "    finally:\n"
    "        os.close(fd)\n"
    "    os.unlink('/tmp/.kiln-end/token')\n"
    "    if os.stat('/proc/self/mem').st_uid != 0:\n"
    "        import ctypes\n"
    "        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0\n"
    "    deny = frozenset(('gc.get_objects', 'gc.get_referrers', 'gc.get_referents',\n"
    "                      'sys._current_frames', 'sys._current_exceptions',\n"
    "                      'sys.settrace', 'sys.setprofile'))\n"
    "    boot, done = sys._getframe(1), []\n"
    "    frame, opn, wr, cl = sys._getframe, os.open, os.write, os.close\n"
    "    base, dec, isinst, strb = os.path.basename, os.fsdecode, isinstance, (str, bytes)\n"
    "    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC\n"
    "    def hook(ev, args):\n"
    "        if ev == 'kiln.end':\n"
    "            if not done and frame(1) is boot:\n"
    "                done.append(1)\n"
    "                fd = opn('/tmp/.kiln-end/proof', flags, 0o600)\n"
    "                wr(fd, tok)\n"
    "                cl(fd)\n"
    "        elif ev in deny or ev[:7] == 'ctypes.' or (\n"
    "                ev == 'open' and isinst(args[0], strb) and base(dec(args[0])) in ('mem', 'pagemap')):\n"
    "            raise RuntimeError('kiln: %s is refused in a run whose end is checked' % ev)\n"
    "        elif ev == 'import' and isinst(args[0], str) and not raw.isdisjoint(args[0].split('.')):\n"
    "            raise RuntimeError('kiln: import %s is refused in a run whose end is checked: numpy reads and '\n"
    "                               'writes memory at any address (kiln eval --no-end-check runs without the '\n"
    "                               'check)' % args[0])\n"
    "    sys.addaudithook(hook)\n"
    "def _kiln_run(path, arm=_kiln_end_arm, audit=sys.audit, end=_kiln_exit, isinst=isinstance,\n"
    "              say=print, module=type(sys), sys=sys, os=os, open=open, compile=compile, exec=exec,\n"
    "              type=type, SystemExit=SystemExit, BaseException=BaseException, int=int):\n"
    "    # every name this frame calls is its own: a program that rewrites the\n"
    "    # bootstrap's globals (sys._getframe(1).f_globals) changes none of them,\n"
    "    # so only a return from the program reaches audit('kiln.end')\n"
    "    arm()  # before the script's directory is on the path: its files import nothing here\n"
    "    sys.path.insert(0, os.path.dirname(path))\n"
    "    m = module('__main__')\n"
    "    m.__file__ = path\n"
    "    m.__cached__ = None\n"
    "    sys.modules['__main__'] = m\n"
    "    try:\n"
    "        with open(path, 'rb') as fh:\n"
    "            c = compile(fh.read(), path, 'exec')\n"
    "        del fh\n"
    "        exec(c, m.__dict__)\n"
    "    except SystemExit as e:\n"
    "        c = e.code\n"
    "        if c is None:\n"
    "            end(0)\n"
    "        if isinst(c, int):\n"
    "            end(c & 0xff)\n"
    "        say(c, file=sys.stderr)\n"
    "        end(1)\n"
    "    except BaseException as e:\n"
    "        tb = e.__traceback__\n"
    "        while tb is not None and tb.tb_frame.f_code.co_filename != path:\n"
    "            tb = tb.tb_next\n"
    "        sys.excepthook(type(e), e.with_traceback(tb), tb)\n"
    "        end(1)\n"
    "    else:\n"
    "        audit('kiln.end')\n"
    "    end(0)\n"
    "del _kiln_end_arm, _kiln_exit\n"
    "_kiln_run(sys.argv[0])\n";

/* A session's interpreter (plugin.h, repl): each cell runs in one
 * __main__, like the interactive interpreter; an expression statement at
 * the end has its repr sent as the job's `result`. SystemExit sets the
 * job's exit code and the session goes on; KeyboardInterrupt (SIGINT, from
 * a timeout or a cancel) ends the cell. Tracebacks show the cells' lines. */
static const char repl[] =
    "import os, sys\n"
    "def _kiln_repl():\n"
    "    import ast, linecache, signal, traceback\n"
    "    cells = os.dup(0)\n"
    "    null = os.open('/dev/null', os.O_RDONLY)\n"
    "    os.dup2(null, 0)\n"
    "    os.close(null)\n"
    "    ctl = os.open(os.environ.pop('KILN_REPL_CTL', '/tmp/.kiln-repl/ctl'), os.O_WRONLY | os.O_CLOEXEC)\n"
    "    def line():\n"
    "        b = b''\n"
    "        while not b.endswith(b'\\n'):\n"
    "            c = os.read(cells, 1)\n"
    "            if not c:\n"
    "                os._exit(0)\n"
    "            b += c\n"
    "        return b\n"
    "    def read(n):\n"
    "        b = b''\n"
    "        while len(b) < n:\n"
    "            c = os.read(cells, n - len(b))\n"
    "            if not c:\n"
    "                os._exit(0)\n"
    "            b += c\n"
    "        return b\n"
    "    def say(b):\n"
    "        while b:\n"
    "            b = b[os.write(ctl, b):]\n"
    "    def flush():\n"
    "        for s in (sys.stdout, sys.stderr):\n"
    "            try:\n"
    "                s.flush()\n"
    "            except BaseException:\n"
    "                pass\n"
    "    main = type(sys)('__main__')\n"
    "    sys.modules['__main__'] = main\n"
    "    g = main.__dict__\n"
    "    sys.path.insert(0, '/work')\n"
    "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "    k = 0\n"
    "    while True:\n"
    "        n = int(line().split()[0])\n"
    "        src = read(n).decode('utf-8', 'replace')\n"
    "        k += 1\n"
    "        name = '<cell %d>' % k\n"
    "        linecache.cache[name] = (len(src), None, src.splitlines(True), name)\n"
    "        code, shown = 0, None\n"
    "        try:\n"
    "            try:\n"
    "                signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "                tree = ast.parse(src, name)\n"
    "                last = None\n"
    "                if tree.body and isinstance(tree.body[-1], ast.Expr):\n"
    "                    last = ast.Expression(tree.body.pop().value)\n"
    "                exec(compile(tree, name, 'exec'), g)\n"
    "                if last is not None:\n"
    "                    v = eval(compile(last, name, 'eval'), g)\n"
    "                    if v is not None:\n"
    "                        g['_'] = v\n"
    "                        shown = repr(v)\n"
    "            finally:\n"
    "                signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "        except SystemExit as e:\n"
    "            c = e.code\n"
    "            if c is None:\n"
    "                code = 0\n"
    "            elif isinstance(c, int):\n"
    "                code = c & 0xff\n"
    "            else:\n"
    "                print(c, file=sys.stderr)\n"
    "                code = 1\n"
    "        except BaseException as e:\n"
    "            tb = e.__traceback__\n"
    "            while tb is not None and not tb.tb_frame.f_code.co_filename.startswith('<cell '):\n"
    "                tb = tb.tb_next\n"
    "            try:\n"
    "                traceback.print_exception(type(e), e, tb)\n"
    "            except BaseException:\n"
    "                pass\n"
    "            code = 130 if isinstance(e, KeyboardInterrupt) else 1\n"
    "        flush()\n"
    "        if shown is not None:\n"
    "            r = shown.encode('utf-8', 'replace')[:65536]\n"
    "            say(b'R %d\\n' % len(r) + r)\n"
    "        say(b'E %d\\n' % code)\n"
    "_kiln_repl()\n";

static int add_flags(const struct kiln_host *host, struct kiln_plan *plan, int script)
{
    const char *const *f = script ? script_flags : c_flags;
    size_t n = script ? sizeof(script_flags) / sizeof(script_flags[0]) : sizeof(c_flags) / sizeof(c_flags[0]);
    int r = host->plan_profile(plan, "python");
    for (size_t i = 0; r == 0 && i < n; i++)
        r = host->plan_arg(plan, f[i]);
    return r;
}

static int python_plan(const struct kiln_host *host, const struct kiln_job_view *job,
                       struct kiln_plan *plan)
{
    int r;
    /* a run whose end is checked runs under the bootstrap, warm or cold */
    int checked = KILN_HAS_FIELD(job, struct kiln_job_view, expect_end) && job->expect_end;
    if ((r = add_flags(host, plan, !checked)) < 0 ||
        (r = host->plan_file(plan, "main.py", job->code, job->code_len, 0644)) < 0)
        return r;
    if (checked && ((r = host->plan_arg(plan, "-c")) < 0 || (r = host->plan_arg(plan, bootstrap)) < 0))
        return r;
    if ((r = host->plan_arg(plan, SCRIPT)) < 0)
        return r;
    for (size_t i = 0; i < job->nargs; i++)
        if ((r = host->plan_arg(plan, job->args[i])) < 0)
            return r;
    return 0;
}

static int python_prestart(const struct kiln_host *host, const char *name,
                           struct kiln_plan *plan)
{
    int r;
    if (strcmp(name, "python") != 0)
        return -1;
    if ((r = add_flags(host, plan, 0)) < 0 || (r = host->plan_arg(plan, "-c")) < 0 ||
        (r = host->plan_arg(plan, bootstrap)) < 0)
        return r;
    return 0;
}

static int python_repl(const struct kiln_host *host, const struct kiln_job_view *job,
                       struct kiln_plan *plan)
{
    int r;
    (void)job;
    if ((r = add_flags(host, plan, 0)) < 0 || (r = host->plan_arg(plan, "-c")) < 0 ||
        (r = host->plan_arg(plan, repl)) < 0)
        return r;
    return 0;
}

static const struct kiln_plugin python = {
    KILN_PLUGIN_HEADER,
    .name = "python",
    .description = "Python 3: code runs as /work/main.py under python3 -E -s -u -B",
    .plan = python_plan,
    .prestart = python_prestart,
    .flags = KILN_PLUGIN_FORKS | KILN_PLUGIN_ENDS,
    .repl = python_repl,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &python;
}
