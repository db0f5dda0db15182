// kiln's runner for a PHP run whose end is checked (the job key
// expect_end; worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), given to
// php with -r:
//
//   php FLAGS -r RUN.PHP -- /work/main.php ARGS...
//
// A generator takes the agent's token before any of the program's code
// runs and holds it in its own frame, which nothing in PHP can read (a
// closure's bound variables can be reflected, a generator's locals
// cannot). The program is included at the top level, in the global scope
// a script has; then this code resumes the generator, which writes the
// token to /tmp/.kiln-end/proof only when what resumes it is this code
// ("Command line code", or code a warm start's warm.php ran with eval(),
// "Command line code(N) : eval()'d code": no code of the program's can be
// either, its files have paths and its eval()'d code their names; it may resume
// the generator too, and then nothing is written). exit(), an uncaught exception or a fatal error on the
// way: the line is never reached. A `return` at the program's top level
// would end the include early and reach it: the program's tokens are
// read first, and a top-level return means no proof.
$kiln_end = (function ($file) {
    $token = @file_get_contents('/tmp/.kiln-end/token');
    if ($token !== false)
        @unlink('/tmp/.kiln-end/token');
    $src = @file_get_contents($file);
    $fn = false;
    $scopes = [];
    foreach ($src === false ? [] : token_get_all($src) as $t) {
        $id = is_array($t) ? $t[0] : $t;
        if ($id === T_FUNCTION) {
            $fn = true;
        } elseif ($id === ';') {
            $fn = false;
        } elseif ($id === '{' || $id === T_CURLY_OPEN || $id === T_DOLLAR_OPEN_CURLY_BRACES) {
            $scopes[] = $fn && $id === '{';
            $fn = false;
        } elseif ($id === '}') {
            array_pop($scopes);
        } elseif ($id === T_RETURN && !in_array(true, $scopes, true)) {
            $token = false;
        }
    }
    yield;
    $from = debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS, 2);
    $at = $from[1] ?? [];
    $by = $at['file'] ?? '';
    if ($token !== false && ($by === 'Command line code' ||
                             preg_match('/^Command line code\(\d+\) : eval\(\)\'d code$/D', $by))) {
        $f = @fopen('/tmp/.kiln-end/proof', 'x');
        if ($f !== false) {
            fwrite($f, $token);
            fclose($f);
        }
    }
    $token = false;
})($argv[1]);
$kiln_end->current();
array_shift($argv);
$argc = count($argv);
$_SERVER['argv'] = $argv;
$_SERVER['argc'] = $argc;
$_SERVER['SCRIPT_NAME'] = $_SERVER['SCRIPT_FILENAME'] = $_SERVER['PHP_SELF'] = $argv[0];
include $argv[0];
$kiln_end->next();
