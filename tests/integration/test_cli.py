"""The kiln client: `kiln submit` prints a job's stdout and stderr to its own
stdout and stderr and exits with the job's code; `kiln frames` prints frames
as JSON lines a script can read."""
import json
import os
import subprocess

from kilntest import BIN, KilnCase, main, skip_unless_jail_works

skip_unless_jail_works()

KILN = os.path.join(BIN, "kiln")


class Cli(KilnCase):
    def kiln(self, *args, stdin=None):
        return subprocess.run([KILN, *args], input=stdin, capture_output=True, timeout=60,
                              env=dict(os.environ, KILN_REDIS=self.redis.url))

    def test_submit_streams_and_exit_code(self):
        self.worker()
        r = self.kiln("submit", "--code", 'echo "hello $1"; echo oops >&2; read x; echo "got $x"; exit 3',
                      "--stdin", "input-line\n", "--", "world")
        self.assertEqual(r.stdout, b"hello world\ngot input-line\n")
        self.assertEqual(r.stderr, b"oops\n")
        self.assertEqual(r.returncode, 3)
        # its private reply stream is removed once the result is in
        self.assertEqual([k for k in self.r.keys("kiln.reply.*")], [])

    def test_submit_files_env_and_code_file(self):
        self.worker()
        src = os.path.join(self.tmp, "prog.sh")
        data = os.path.join(self.tmp, "data.txt")
        with open(src, "w") as f:
            f.write('cat in/data.txt; echo "$MODE"\n')
        with open(data, "w") as f:
            f.write("file content\n")
        r = self.kiln("submit", "--code-file", src, "--file", "in/data.txt=" + data,
                      "--env", "MODE=fast")
        self.assertEqual((r.returncode, r.stdout), (0, b"file content\nfast\n"), r.stderr)

    def test_submit_statuses_map_to_exit_codes(self):
        self.worker()
        r = self.kiln("submit", "--timeout-ms", "200", "--code", "sleep 100")
        self.assertEqual(r.returncode, 124)
        self.assertIn(b"timeout", r.stderr)
        r = self.kiln("submit", "--plugin", "nosuch", "--code", "x")
        self.assertEqual(r.returncode, 65)
        self.assertRegex(r.stderr, rb"rejected: unknown plugin 'nosuch' \(this worker has: bash, c, cpp, csharp, "
                                   rb"deno-eval, go, .*python, .*shell, typescript\)")
        r = self.kiln("submit", "--code", "kill -KILL $$")
        self.assertEqual(r.returncode, 128 + 9)

    def test_submit_without_a_worker_gives_up_when_told(self):
        r = self.kiln("submit", "--code", "true", "--wait-ms", "300")
        self.assertEqual(r.returncode, 69)
        self.assertIn(b"no result", r.stderr)

    def test_frames_prints_json_lines(self):
        self.worker()
        r = self.kiln("submit", "--id", "cli-json", "--reply-to", "cli.out",
                      "--code", "printf 'text\\n'; printf '\\377\\000' >&2")
        self.assertEqual(r.returncode, 0)
        r = self.kiln("frames", "--stream", "cli.out")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual([l["kind"] for l in lines], ["stdout", "stderr", "exit"])
        self.assertEqual(lines[0]["data"], "text\n")
        self.assertEqual(lines[1]["data"], {"base64": "/wA="})
        self.assertEqual(lines[2]["status"], "ok")
        self.assertTrue(all(l["id"] == "cli-json" and "entry" in l for l in lines))
        r = self.kiln("frames", "--stream", "cli.out", "--id", "other")
        self.assertEqual(r.stdout, b"")

    def test_help_names_every_command_and_a_mistyped_one_is_told_apart(self):
        r = self.kiln("--help")
        self.assertEqual(r.returncode, 0)
        for cmd in (b"submit", b"frames", b"eval", b"cancel", b"dev-broker"):
            self.assertRegex(r.stdout, rb"(?m)^  " + cmd + rb" +\S")
        for flag in (b"--plugin", b"--collect", b"--session", b"--wait-ms"):
            self.assertIn(flag, r.stdout)
        r = self.kiln("sumbit", "--code", "true")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"kiln: 'sumbit' is not a command; did you mean submit?", r.stderr)
        self.assertEqual(self.r.xlen("kiln.jobs") if self.r.exists("kiln.jobs") else 0, 0)
        r = self.kiln("collect")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"kiln: 'collect' is not a command\n", r.stderr)
        r = self.kiln("submit", "--plugn", "python", "--code", "1")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"did you mean --plugin?", r.stderr)


if __name__ == "__main__":
    main()
