// kiln's warm start for PHP (worker/include/kiln/plugin.h, prestart),
// given to php with -r after the flags a run has, and started ahead of
// its job:
//
//   php FLAGS -r WARM.PHP
//
// Under a template jail (KILN_ZYGOTE in the environment, plugin.h,
// KILN_PLUGIN_FORKS) it first becomes a fork server through kiln's zygote
// library (PHP's FFI): the call returns in each sandbox forked from it,
// which goes on below; the template itself never runs a job.
//
// Then it reads the job's envelope from stdin (unbuffered: nothing of the
// job's own stdin is read away from it), takes the job's environment, and
// runs the command the envelope names as a cold php would:
//   php FLAGS /work/main.php ARGS       the script, included at the top
//                                       level with $argv, $argc and
//                                       $_SERVER as a cold run has them;
//                                       an uncaught exception's trace
//                                       loses this code's frames, so it
//                                       prints as a cold run's does
//   php FLAGS -r CODE -- FILE ARGS      (kiln's runner, run.php) CODE, at
//                                       the top level
// Everything this code keeps is in a closure's frame, gone before the
// program starts; what it runs, it runs with eval() at the top level. What it cannot make the same: a cold run's flags come
// from the job's plan, a warm one's from the template's (the plugin plans
// both with the same), and the program's get_defined_vars() at the top
// level lists $_SERVER first.
eval((function () {
    if (getenv('KILN_ZYGOTE') !== false) {
        $ffi = FFI::cdef('int kiln_zygote_serve(void);', getenv('KILN_ZYGOTE'));
        if ($ffi->kiln_zygote_serve() !== 0)
            exit(0);
    }
    $read = function ($n) {
        $b = '';
        while (strlen($b) < $n) {
            $c = fread(STDIN, $n - strlen($b));
            if ($c === false || $c === '')
                exit(0); // no job came: the sandbox is being discarded
            $b .= $c;
        }
        return $b;
    };
    stream_set_read_buffer(STDIN, 0);
    $f = explode("\0", $read(unpack('N', $read(4))[1]));
    stream_set_read_buffer(STDIN, 8192);
    $n = (int)array_shift($f);
    $cmd = array_splice($f, 0, $n);
    foreach (array_keys(getenv()) as $k)
        putenv($k);
    $env = [];
    foreach ($f as $kv) {
        $eq = strpos($kv, '=');
        if ($eq) {
            $env[substr($kv, 0, $eq)] = substr($kv, $eq + 1);
            putenv($kv);
        }
    }
    for ($i = 1; ($cmd[$i] ?? '') === '-d'; $i += 2)
        ;
    if (($cmd[$i] ?? '') === '-r') {
        $code = $cmd[$i + 1];
        $i += ($cmd[$i + 2] ?? '') === '--' ? 3 : 2;
        $args = array_merge(['Standard input code'], array_slice($cmd, $i));
        $script = '';
    } else {
        // the script, its uncaught exceptions' traces cut of this code's
        // frames (and its chained ones': getPrevious())
        $code = 'try { include $argv[0]; } catch (Throwable $__kiln) { throw (function () {
            $e = $GLOBALS["__kiln"];
            unset($GLOBALS["__kiln"]);
            for ($x = $e; $x !== null; $x = $x->getPrevious()) {
                $p = new ReflectionProperty($x instanceof Error ? Error::class : Exception::class, "trace");
                $p->setAccessible(true);
                $p->setValue($x, array_values(array_filter($p->getValue($x),
                    fn ($f) => strncmp($f["file"] ?? "", "Command line code", 17) !== 0)));
            }
            return $e;
        })(); }';
        $args = array_slice($cmd, $i);
        $script = $args[0];
    }
    $now = microtime(true);
    $_SERVER = $env + ['PHP_SELF' => $script, 'SCRIPT_NAME' => $script, 'SCRIPT_FILENAME' => $script,
        'PATH_TRANSLATED' => $script, 'DOCUMENT_ROOT' => '', 'REQUEST_TIME_FLOAT' => $now,
        'REQUEST_TIME' => (int)$now, 'argv' => $args, 'argc' => count($args)];
    $GLOBALS['argv'] = $args;
    $GLOBALS['argc'] = count($args);
    return $code;
})());
