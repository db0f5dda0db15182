"""Programs in every language kiln runs, written for kiln's tests: the same
small set in each (a correct one, a wrong one, a runtime error, a busy
loop, a memory hog, an output flood, a compile error, a hostile one), and
one MultiPL-E-shaped problem per language (prompt, tests in the style of
MultiPL-E's own for that language) with an honest completion and one that
exits with success before the tests. test_languages.py runs them."""

# reads two integers from stdin, prints their sum
SUM = {
    "java": "import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
            "    Scanner s = new Scanner(System.in);\n    long x = s.nextLong(), y = s.nextLong();\n"
            "    System.out.println(x + y);\n  }\n}\n",
    "javascript": "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\n"
                  "console.log(a + b);\n",
    "typescript": "declare var require: any;\nconst fs = require('fs');\n"
                  "const [a, b]: number[] = fs.readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\n"
                  "console.log(a + b);\n",
    "go": "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tvar a, b int64\n\tfmt.Scan(&a, &b)\n"
          "\tfmt.Println(a + b)\n}\n",
    "rust": "use std::io::Read;\nfn main() {\n    let mut s = String::new();\n"
            "    std::io::stdin().read_to_string(&mut s).unwrap();\n"
            "    let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();\n"
            "    println!(\"{}\", v[0] + v[1]);\n}\n",
    "csharp": "using System;\nclass P {\n  static void Main() {\n"
              "    var p = Console.In.ReadToEnd().Split((char[])null, StringSplitOptions.RemoveEmptyEntries);\n"
              "    Console.WriteLine(long.Parse(p[0]) + long.Parse(p[1]));\n  }\n}\n",
    "php": "<?php\n$v = array_map('intval', preg_split('/\\s+/', trim(stream_get_contents(STDIN))));\n"
           "echo $v[0] + $v[1], \"\\n\";\n",
    "ruby": "a, b = STDIN.read.split.map(&:to_i)\nputs a + b\n",
    "lua": "local a, b = io.read('n', 'n')\nprint(a + b)\n",
    "perl": "my ($a, $b) = split ' ', do { local $/; <STDIN> };\nprint $a + $b, \"\\n\";\n",
    "r": "v <- scan(file('stdin'), quiet = TRUE)\ncat(v[1] + v[2], '\\n', sep = '')\n",
    "bash": "read a b\necho $((a + b))\n",
}

# the same, wrong: a - b
WRONG = {k: v.replace("x + y", "x - y").replace("a + b", "a - b").replace("v[0] + v[1]", "v[0] - v[1]")
         .replace("long.Parse(p[0]) + long.Parse(p[1])", "long.Parse(p[0]) - long.Parse(p[1])")
         .replace("$v[0] + $v[1]", "$v[0] - $v[1]").replace("$a + $b", "$a - $b")
         .replace("v[1] + v[2]", "v[1] - v[2]").replace("a + b))", "a - b))") for k, v in SUM.items()}

RAISE = {
    "java": "public class Main {\n  public static void main(String[] a) {\n    throw new IllegalStateException(\"boom\");\n  }\n}\n",
    "javascript": "throw new Error('boom');\n",
    "typescript": "throw new Error('boom');\n",
    "go": "package main\n\nfunc main() {\n\tpanic(\"boom\")\n}\n",
    "rust": "fn main() {\n    panic!(\"boom\");\n}\n",
    "csharp": "class P {\n  static void Main() {\n    throw new System.InvalidOperationException(\"boom\");\n  }\n}\n",
    "php": "<?php\nthrow new Exception('boom');\n",
    "ruby": "raise 'boom'\n",
    "lua": "error('boom')\n",
    "perl": "die \"boom\\n\";\n",
    "r": "stop('boom')\n",
    "bash": "echo boom >&2\nexit 3\n",
}

LOOP = {
    "java": "public class Main {\n  public static void main(String[] a) {\n    long x = 0;\n    while (true) x++;\n  }\n}\n",
    "javascript": "for (;;) {}\n",
    "typescript": "for (;;) {}\n",
    "go": "package main\n\nfunc main() {\n\tfor {\n\t}\n}\n",
    "rust": "fn main() {\n    let mut x: u64 = 0;\n    loop {\n        x = std::hint::black_box(x.wrapping_add(1));\n    }\n}\n",
    "csharp": "class P {\n  static void Main() {\n    long x = 0;\n    while (true) x++;\n  }\n}\n",
    "php": "<?php\nwhile (true) {}\n",
    "ruby": "loop {}\n",
    "lua": "while true do end\n",
    "perl": "1 while 1;\n",
    "r": "repeat {}\n",
    "bash": "while :; do :; done\n",
}

# more memory than the 128 MiB the test gives it, touched
HOG = {
    "java": "import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
            "    List<long[]> l = new ArrayList<>();\n"
            "    while (true) { long[] b = new long[1 << 20]; Arrays.fill(b, 1); l.add(b); }\n  }\n}\n",
    "javascript": "const a = [];\nfor (;;) a.push(new Array(1 << 20).fill(1.5));\n",
    "typescript": "const a: number[][] = [];\nfor (;;) a.push(new Array(1 << 20).fill(1.5));\n",
    "go": "package main\n\nvar keep [][]byte\n\nfunc main() {\n\tfor {\n\t\tb := make([]byte, 8<<20)\n"
          "\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n\t\tkeep = append(keep, b)\n\t}\n}\n",
    "rust": "fn main() {\n    let mut v: Vec<Vec<u8>> = Vec::new();\n    loop {\n        v.push(vec![1u8; 8 << 20]);\n    }\n}\n",
    "csharp": "using System.Collections.Generic;\nclass P {\n  static void Main() {\n"
              "    var l = new List<byte[]>();\n"
              "    while (true) { var b = new byte[8 << 20]; for (int i = 0; i < b.Length; i += 4096) b[i] = 1; l.Add(b); }\n"
              "  }\n}\n",
    "php": "<?php\n$a = [];\nwhile (true) $a[] = str_repeat('x', 8 << 20) . count($a);\n",
    "ruby": "a = []\nloop { a << ('x' * (8 << 20)) + a.size.to_s }\n",
    "lua": "local t = {}\nwhile true do t[#t + 1] = string.rep('x', 8 << 20) .. #t end\n",
    "perl": "my @a;\nwhile (1) { push @a, ('x' x (8 << 20)) . scalar(@a) }\n",
    "r": "l <- list()\nrepeat { l[[length(l) + 1]] <- runif(1e6) }\n",
    "bash": "s=x\nwhile :; do s=$s$s; done\n",
}

FLOOD = {
    "java": "public class Main {\n  public static void main(String[] a) {\n    while (true) System.out.println(\"flood flood flood\");\n  }\n}\n",
    "javascript": "const fs = require('fs');\nfor (;;) fs.writeSync(1, 'flood flood flood\\n');\n",
    "typescript": "declare var require: any;\nconst fs = require('fs');\nfor (;;) fs.writeSync(1, 'flood flood flood\\n');\n",
    "go": "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor {\n\t\tfmt.Println(\"flood flood flood\")\n\t}\n}\n",
    "rust": "fn main() {\n    loop {\n        println!(\"flood flood flood\");\n    }\n}\n",
    "csharp": "class P {\n  static void Main() {\n    while (true) System.Console.WriteLine(\"flood flood flood\");\n  }\n}\n",
    "php": "<?php\nwhile (true) echo \"flood flood flood\\n\";\n",
    "ruby": "loop { puts 'flood flood flood' }\n",
    "lua": "while true do print('flood flood flood') end\n",
    "perl": "print \"flood flood flood\\n\" while 1;\n",
    "r": "repeat cat('flood flood flood\\n')\n",
    "bash": "while :; do echo flood flood flood; done\n",
}

# compiled languages: a compile error (a type error for TypeScript)
BROKEN = {
    "java": "public class Main {\n  public static void main(String[] a) {\n    int x = ;\n  }\n}\n",
    "typescript": "const x: number = 'not a number';\nconsole.log(x);\n",
    "go": "package main\n\nfunc main() {\n\tx :=\n}\n",
    "rust": "fn main() {\n    let x: i32 = \"a\";\n}\n",
    "csharp": "class P {\n  static void Main() {\n    int x = \"a\";\n  }\n}\n",
}
COMPILED = ("java", "typescript", "go", "rust", "csharp")

# tries to reach the network, write outside /work, and leave a process
# behind (sleep 1234): prints net/write ok or no
HOSTILE = {
    "java": "import java.io.*;\nimport java.net.*;\npublic class Main {\n  public static void main(String[] a) throws Exception {\n"
            "    try (Socket s = new Socket()) { s.connect(new InetSocketAddress(\"1.1.1.1\", 53), 2000); System.out.println(\"net:ok\"); }\n"
            "    catch (Exception e) { System.out.println(\"net:no\"); }\n"
            "    try (FileWriter w = new FileWriter(\"/etc/kiln-x\")) { w.write(\"x\"); System.out.println(\"write:ok\"); }\n"
            "    catch (Exception e) { System.out.println(\"write:no\"); }\n"
            "    new ProcessBuilder(\"sleep\", \"1234\").start();\n  }\n}\n",
    "javascript": "const net = require('net'), fs = require('fs'), cp = require('child_process');\n"
                  "try { fs.writeFileSync('/etc/kiln-x', 'x'); console.log('write:ok'); } catch (e) { console.log('write:no'); }\n"
                  "cp.spawn('sleep', ['1234'], { detached: true, stdio: 'ignore' }).unref();\n"
                  "const s = net.connect(53, '1.1.1.1');\n"
                  "s.on('connect', () => { console.log('net:ok'); process.exit(0); });\n"
                  "s.on('error', () => { console.log('net:no'); process.exit(0); });\n"
                  "setTimeout(() => { console.log('net:no'); process.exit(0); }, 2000);\n",
    "typescript": "declare var require: any;\nconst fs = require('fs'), cp = require('child_process');\n"
                  "try { fs.writeFileSync('/etc/kiln-x', 'x'); console.log('write:ok'); } catch (e) { console.log('write:no'); }\n"
                  "cp.spawn('sleep', ['1234'], { detached: true, stdio: 'ignore' }).unref();\n"
                  "const s = require('net').connect(53, '1.1.1.1');\n"
                  "s.on('connect', () => { console.log('net:ok'); }); s.on('error', () => { console.log('net:no'); });\n",
    "go": "package main\n\nimport (\n\t\"fmt\"\n\t\"net\"\n\t\"os\"\n\t\"os/exec\"\n\t\"time\"\n)\n\nfunc main() {\n"
          "\tif c, err := net.DialTimeout(\"tcp\", \"1.1.1.1:53\", 2*time.Second); err == nil {\n\t\tc.Close()\n\t\tfmt.Println(\"net:ok\")\n\t} else {\n\t\tfmt.Println(\"net:no\")\n\t}\n"
          "\tif err := os.WriteFile(\"/etc/kiln-x\", []byte(\"x\"), 0o644); err == nil {\n\t\tfmt.Println(\"write:ok\")\n\t} else {\n\t\tfmt.Println(\"write:no\")\n\t}\n"
          "\texec.Command(\"sleep\", \"1234\").Start()\n}\n",
    "rust": "use std::net::TcpStream;\nfn main() {\n"
            "    match TcpStream::connect_timeout(&\"1.1.1.1:53\".parse().unwrap(), std::time::Duration::from_secs(2)) {\n"
            "        Ok(_) => println!(\"net:ok\"), Err(_) => println!(\"net:no\") }\n"
            "    match std::fs::write(\"/etc/kiln-x\", \"x\") { Ok(_) => println!(\"write:ok\"), Err(_) => println!(\"write:no\") }\n"
            "    let _ = std::process::Command::new(\"sleep\").arg(\"1234\").spawn();\n}\n",
    "csharp": "using System;\nclass P {\n  static void Main() {\n"
              "    try { var c = new System.Net.Sockets.TcpClient(); if (c.ConnectAsync(\"1.1.1.1\", 53).Wait(2000)) Console.WriteLine(\"net:ok\"); else Console.WriteLine(\"net:no\"); }\n"
              "    catch (Exception) { Console.WriteLine(\"net:no\"); }\n"
              "    try { System.IO.File.WriteAllText(\"/etc/kiln-x\", \"x\"); Console.WriteLine(\"write:ok\"); }\n"
              "    catch (Exception) { Console.WriteLine(\"write:no\"); }\n"
              "    System.Diagnostics.Process.Start(\"sleep\", \"1234\");\n  }\n}\n",
    "php": "<?php\n$s = @fsockopen('1.1.1.1', 53, $e, $m, 2);\necho $s ? \"net:ok\\n\" : \"net:no\\n\";\n"
           "echo @file_put_contents('/etc/kiln-x', 'x') !== false ? \"write:ok\\n\" : \"write:no\\n\";\n"
           "exec('sleep 1234 > /dev/null 2>&1 &');\n",
    "ruby": "require 'socket'\nrequire 'timeout'\n"
            "begin; Timeout.timeout(2) { TCPSocket.new('1.1.1.1', 53) }; puts 'net:ok'; rescue StandardError, Timeout::Error; puts 'net:no'; end\n"
            "begin; File.write('/etc/kiln-x', 'x'); puts 'write:ok'; rescue SystemCallError; puts 'write:no'; end\n"
            "Process.detach(spawn('sleep', '1234'))\n",
    "lua": "local ok = os.execute('exec 3<>/dev/tcp/1.1.1.1/53 2>/dev/null')\nprint(ok and 'net:ok' or 'net:no')\n"
           "local f = io.open('/etc/kiln-x', 'w')\nprint(f and 'write:ok' or 'write:no')\n"
           "os.execute('sleep 1234 &')\n",
    "perl": "use IO::Socket::INET;\nmy $s = IO::Socket::INET->new(PeerAddr => '1.1.1.1:53', Timeout => 2);\n"
            "print $s ? \"net:ok\\n\" : \"net:no\\n\";\n"
            "print open(my $f, '>', '/etc/kiln-x') ? \"write:ok\\n\" : \"write:no\\n\";\n"
            "system('sleep 1234 &');\n",
    "r": "con <- tryCatch(socketConnection('1.1.1.1', 53, timeout = 2), error = function(e) NULL, warning = function(w) NULL)\n"
         "cat(if (is.null(con)) 'net:no\\n' else 'net:ok\\n')\n"
         "w <- tryCatch({ writeLines('x', '/etc/kiln-x'); TRUE }, error = function(e) FALSE, warning = function(w) FALSE)\n"
         "cat(if (w) 'write:ok\\n' else 'write:no\\n')\n"
         "system('sleep 1234', wait = FALSE)\n",
    "bash": "if exec 3<>/dev/tcp/1.1.1.1/53; then echo net:ok; else echo net:no; fi 2>/dev/null\n"
            "if echo x > /etc/kiln-x; then echo write:ok; else echo write:no; fi 2>/dev/null\n"
            "sleep 1234 &\n",
}

# One MultiPL-E-shaped problem per language: add(x, y), its tests in the
# style of MultiPL-E's for the language, and completions: an honest one,
# a wrong one, and one that exits with success before the tests run.
MULTIPLE = {
    "py": ("def add(x: int, y: int) -> int:\n    \"\"\"Add two numbers\"\"\"\n",
           "\ndef check(candidate):\n    assert candidate(0, 1) == 1\n    assert candidate(2, 3) == 5\n\ndef test_check():\n    check(add)\n\ntest_check()\n",
           "    return x + y\n", "    return x - y\n", "    import sys; sys.exit(0)\n"),
    "js": ("//Add two numbers\nfunction add(x, y){\n",
           "const assert = require('node:assert');\n\n\nfunction test() {\n  let candidate = add;\n"
           "  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(2, 3),5);\n}\n\ntest();",
           "  return x + y;\n}\n", "  return x - y;\n}\n", "  return x;\n}\nprocess.exit(0);\n"),
    "ts": ("//Add two numbers\nfunction add(x: number, y: number): number {\n",
           "declare var require: any;\nconst assert = require('node:assert');\n\n\nfunction test() {\n  let candidate = add;\n"
           "  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(2, 3),5);\n}\n\ntest();",
           "  return x + y;\n}\n", "  return x - y;\n}\n", "  return x;\n}\ndeclare var process: any;\nprocess.exit(0);\n"),
    "java": ("import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\n"
             "import java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\nclass Problem {\n"
             "    // Add two numbers\n    public static long add(long x, long y) {\n",
             "    }\n    public static void main(String[] args) {\n    assert(add((0l), (1l)) == (1l));\n"
             "    assert(add((2l), (3l)) == (5l));\n    }\n\n}\n",
             "        return x + y;\n", "        return x - y;\n", "        System.exit(0); return 0;\n"),
    "go": ("package add_test\n\nimport (\n    \"testing\"\n    \"fmt\"\n)\n\n// Add two numbers\nfunc add(x int, y int) int {\n",
           "func TestAdd(t *testing.T) {\n  candidate := add\n\ttype test struct {\n\t\tactual   interface{}\n"
           "\t\texpected interface{}\n\t}\n   tests := []test{\n     { actual: candidate(0, 1), expected: 1 },\n"
           "     { actual: candidate(2, 3), expected: 5 },\n   }\n\n\tfor i, tc := range tests {\n"
           "\t\tt.Run(fmt.Sprintf(\"test num % d\", i), func(t *testing.T) {\n"
           "\t\t\tif fmt.Sprintf(\"%v\", tc.actual) != fmt.Sprintf(\"%v\", tc.expected) {\n"
           "\t\t\t\tt.Errorf(\"expected '%s', got '%s'\", tc.expected, tc.actual)\n\t\t\t}\n\t\t})\n\t}\n}\n",
           "    return x + y\n}\n", "    return x - y\n}\n",
           None),  # no exit without an import, which a completion cannot add
    "rs": ("/// Add two numbers\nfn add(x: isize, y: isize) -> isize {\n",
           "\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(2, 3), 5);\n}\n",
           "    x + y\n}\n", "    x - y\n}\n", "    std::process::exit(0)\n}\n"),
    "cs": ("using System;\nusing System.Numerics;\nusing System.Diagnostics;\nusing System.Collections.Generic;\n"
           "using System.Linq;\nusing System.Text;\nusing System.Security.Cryptography;\nclass Problem {\n"
           "    // Add two numbers\n    public static long Add(long x, long y) {\n",
           "    }\n    public static void Main(string[] args) {\n    Debug.Assert(Add((0L), (1L)) == (1L));\n"
           "    Debug.Assert(Add((2L), (3L)) == (5L));\n    }\n\n}\n",
           "        return x + y;\n", "        return x - y;\n", "        Environment.Exit(0); return 0;\n"),
    "php": ("<?php\n// Add two numbers\nfunction add($x, $y) {\n",
            "function candidate(...$args) {\n    return add(...$args);\n}\n\nfunction test(): void {\n"
            "    if (candidate(0, 1) !== 1) { throw new Exception(\"Test failed!\"); }\n"
            "    if (candidate(2, 3) !== 5) { throw new Exception(\"Test failed!\"); }\n}\n\ntest();",
            "    return $x + $y;\n}\n", "    return $x - $y;\n}\n", "    return $x;\n}\nexit(0);\n"),
    "rb": ("# Add two numbers\ndef add(x, y)\n",
           "require 'test/unit'\nclass TestHumanEval < Test::Unit::TestCase\n  def test_add\n"
           "    candidate = method(:add)\n    assert_equal(1, candidate.call(0, 1))\n"
           "    assert_equal(5, candidate.call(2, 3))\n  end\nend\n",
           "  x + y\nend\n", "  x - y\nend\n", "  x\nend\nexit!(0)\n"),
    "lua": ("-- Add two numbers\nlocal function add(x, y)\n",
            "lu = require('luaunit')\n\nfunction test_humaneval()\nlocal candidate = add\n"
            "    lu.assertEquals(candidate(0, 1), 1)\n    lu.assertEquals(candidate(2, 3), 5)\nend\n\n"
            "os.exit(lu.LuaUnit.run())",
            "  return x + y\nend\n", "  return x - y\nend\n", "  return x\nend\nos.exit(0)\n"),
    "pl": ("# Add two numbers\nsub add {\n    my($x, $y) = @_;\n",
           "use Test::Deep;\n\n\nsub testhumaneval {\n    my $candidate = \\&add;\n"
           "        if(eq_deeply($candidate->(0, 1),1)) {\n        print \"ok!\" }else{\n        exit 1;\n        }\n"
           "        if(eq_deeply($candidate->(2, 3),5)) {\n        print \"ok!\" }else{\n        exit 1;\n        }\n}\n\n"
           "testhumaneval();",
           "    return $x + $y;\n}\n", "    return $x - $y;\n}\n", "    return $x;\n}\nexit 0;\n"),
    "r": ("# Add two numbers\nadd <- function(x, y) {\n",
          "test_humaneval <- function() {\ncandidate <- add\n    if(!identical(candidate(0, 1), 1)){quit('no', 1)}\n"
          "    if(!identical(candidate(2, 3), 5)){quit('no', 1)}\n}\ntest_humaneval()",
          "  x + y\n}\n", "  x - y\n}\n", "  x\n}\nquit('no', 0)\n"),
    "cpp": ("#include<assert.h>\n#include<bits/stdc++.h>\n// Add two numbers\nlong add(long x, long y) {\n",
            "}\nint main() {\n    auto candidate = add;\n    assert(candidate((0), (1)) == (1));\n"
            "    assert(candidate((2), (3)) == (5));\n}\n",
            "    return x + y;\n", "    return x - y;\n", "    exit(0);\n"),
    "sh": ("#!/bin/bash\n# Add two numbers\nadd() {\n",
           "}\n\ncandidate() {\n    add \"$@\"\n}\n\nset -e\nrun_test() {\n"
           "    [[ $(candidate \"0\" \"1\") = \"1\" ]]\n    [[ $(candidate \"2\" \"3\") = \"5\" ]]\n}\n\nrun_test",
           "    echo $(( $1 + $2 ))\n", "    echo $(( $1 - $2 ))\n", "    echo $1\n}\nexit 0\n"),
}
# MultiPL-E spells some languages otherwise in its files
SPELLED = {"go": "go_test.go", "rs": "rs", "cs": "cs", "js": "js"}

# more ways out early, per MultiPL-E code: each must fail like the cheat
MORE_CHEATS = {
    "js": ["  return x;\n}\nprocess.reallyExit(0);\n"],
    "java": ["        Runtime.getRuntime().halt(0); return 0;\n"],
    "cpp": ["    _Exit(0);\n"],
    "pl": ["    return $x;\n}\nexec '/bin/true';\n"],
    "rb": ["  x\nend\nexec('/bin/true')\n"],
    # luaunit's --version prints and exits 0 from inside luaunit
    "lua": ["  return x + y\nend\nlocal lu = require('luaunit')\narg[1] = '--version'\n"],
}
