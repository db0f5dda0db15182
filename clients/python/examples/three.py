"""The package README's three examples, as one program: a job, a graded
job, many jobs. KILN_REDIS names the Redis that kiln workers read
(default redis://127.0.0.1:6379). The tests run it, and mypy --strict
over it."""
import os
from typing import Dict, Iterator, List

from kiln_client import Client, Result


def main() -> None:
    with Client(os.environ.get("KILN_REDIS", "redis://127.0.0.1:6379")) as kiln:
        # one job, and what it printed
        r: Result = kiln.run("python", "print(6 * 7)", timeout=60)
        print(r.status, r.stdout_text.strip())                      # ok 42

        # a program graded against test cases, each in a fresh sandbox
        graded = kiln.run("python", "a, b = map(int, input().split())\nprint(a + b)", timeout=60,
                          tests=[{"stdin": "1 2\n", "expect": {"stdout": "3\n"}},
                                 {"stdin": "5 5\n", "expect": {"stdout": "11\n"}}])
        print(graded.verdict, [c["verdict"] for c in graded.cases])  # wrong_answer [...]

        # many jobs, at most 8 in flight, results as they end
        def jobs() -> Iterator[Dict[str, object]]:
            for i in range(20):
                yield {"plugin": "shell", "code": "echo $((%d * %d))" % (i, i)}
        squares: List[int] = sorted(int(x.stdout) for x in kiln.map(jobs(), concurrency=8, timeout=120))
        print(sum(squares))                                          # 2470


if __name__ == "__main__":
    main()
