"""HumanEval-style programs for tests/bench/bench_eval.py, written for kiln.

Each task is a function with its docstring (the "prompt"), a solution that
passes its checks and one that does not (an off-by-one, a wrong operator, a
missed case: the mistakes generated code makes), and a check of asserts. A
program is prompt + solution + check, run as a script: exit 0 is a pass,
an AssertionError (exit 1) a fail.
"""

# (name, signature, docstring, good body, broken body, asserts on `f`)
TASKS = [
    ("add_digits", "n: int", "Sum of the decimal digits of n >= 0.",
     "return sum(int(c) for c in str(n))",
     "return sum(int(c) for c in str(n)[1:])",
     ["f(0) == 0", "f(7) == 7", "f(1234) == 10", "f(9999) == 36"]),
    ("is_palindrome", "s: str", "Whether s reads the same backwards, ignoring case.",
     "s = s.lower()\n    return s == s[::-1]",
     "return s == s[::-1]",
     ["f('') is True", "f('Abba') is True", "f('abc') is False", "f('Racecar') is True"]),
    ("fizzbuzz", "n: int", "The FizzBuzz word for n.",
     "return 'FizzBuzz' if n % 15 == 0 else 'Fizz' if n % 3 == 0 else 'Buzz' if n % 5 == 0 else str(n)",
     "return 'Fizz' if n % 3 == 0 else 'Buzz' if n % 5 == 0 else str(n)",
     ["f(1) == '1'", "f(3) == 'Fizz'", "f(10) == 'Buzz'", "f(30) == 'FizzBuzz'"]),
    ("count_vowels", "s: str", "How many of a, e, i, o, u (any case) s holds.",
     "return sum(c in 'aeiou' for c in s.lower())",
     "return sum(c in 'aeiou' for c in s)",
     ["f('') == 0", "f('hello') == 2", "f('AEIOU') == 5", "f('xyz') == 0"]),
    ("max_gap", "xs: list", "The largest difference between neighbours of sorted xs; 0 below two items.",
     "xs = sorted(xs)\n    return max((b - a for a, b in zip(xs, xs[1:])), default=0)",
     "return max((b - a for a, b in zip(xs, xs[1:])), default=0)",
     ["f([]) == 0", "f([5]) == 0", "f([1, 10, 3]) == 7", "f([3, 6, 9, 1]) == 3"]),
    ("fib", "n: int", "The n-th Fibonacci number, fib(0) = 0, fib(1) = 1.",
     "a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     "a, b = 1, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
     ["f(0) == 0", "f(1) == 1", "f(10) == 55", "f(30) == 832040"]),
    ("is_prime", "n: int", "Whether n is a prime number.",
     "if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True",
     "if n < 2:\n        return False\n    i = 2\n    while i * i < n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True",
     ["f(1) is False", "f(2) is True", "f(9) is False", "f(25) is False", "f(97) is True"]),
    ("reverse_words", "s: str", "The words of s in reverse order, single-spaced.",
     "return ' '.join(reversed(s.split()))",
     "return ' '.join(reversed(s.split(' ')))",
     ["f('a b c') == 'c b a'", "f('  hi  there ') == 'there hi'", "f('') == ''"]),
    ("running_sum", "xs: list", "The running totals of xs.",
     "out, t = [], 0\n    for x in xs:\n        t += x\n        out.append(t)\n    return out",
     "out, t = [], 0\n    for x in xs:\n        out.append(t)\n        t += x\n    return out",
     ["f([]) == []", "f([1, 2, 3]) == [1, 3, 6]", "f([5, -5, 5]) == [5, 0, 5]"]),
    ("second_largest", "xs: list", "The second largest distinct value of xs, or None.",
     "u = sorted(set(xs))\n    return u[-2] if len(u) > 1 else None",
     "u = sorted(xs)\n    return u[-2] if len(u) > 1 else None",
     ["f([1]) is None", "f([3, 1, 2]) == 2", "f([5, 5, 4]) == 4", "f([7, 7]) is None"]),
    ("gcd", "a: int, b: int", "The greatest common divisor of a and b >= 0.",
     "while b:\n        a, b = b, a % b\n    return a",
     "while b > 1:\n        a, b = b, a % b\n    return a",
     ["f(12, 18) == 6", "f(7, 0) == 7", "f(17, 5) == 1", "f(100, 75) == 25"]),
    ("lcm", "a: int, b: int", "The least common multiple of a, b > 0.",
     "import math\n    return a * b // math.gcd(a, b)",
     "return a * b",
     ["f(4, 6) == 12", "f(3, 5) == 15", "f(7, 7) == 7"]),
    ("flatten", "xss: list", "The items of a list of lists, in order.",
     "return [x for xs in xss for x in xs]",
     "return [xs[0] for xs in xss if xs]",
     ["f([]) == []", "f([[1, 2], [], [3]]) == [1, 2, 3]", "f([[1], [2, 3]]) == [1, 2, 3]"]),
    ("chunk", "xs: list, n: int", "xs cut into lists of n (the last may be shorter).",
     "return [xs[i:i + n] for i in range(0, len(xs), n)]",
     "return [xs[i:i + n] for i in range(0, len(xs) - n + 1, n)]",
     ["f([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]", "f([], 3) == []", "f([1, 2], 2) == [[1, 2]]"]),
    ("caesar", "s: str, k: int", "s with each lower-case letter shifted k places, wrapping.",
     "return ''.join(chr((ord(c) - 97 + k) % 26 + 97) if c.islower() else c for c in s)",
     "return ''.join(chr(ord(c) + k) if c.islower() else c for c in s)",
     ["f('abc', 1) == 'bcd'", "f('xyz', 3) == 'abc'", "f('Hi!', 1) == 'Hj!'"]),
    ("count_words", "s: str", "A dict of each word of s (lower-cased) to its count.",
     "d = {}\n    for w in s.lower().split():\n        d[w] = d.get(w, 0) + 1\n    return d",
     "d = {}\n    for w in s.split():\n        d[w] = d.get(w, 0) + 1\n    return d",
     ["f('a A b') == {'a': 2, 'b': 1}", "f('') == {}"]),
    ("binary", "n: int", "n >= 0 in binary, without a prefix.",
     "return bin(n)[2:]",
     "return bin(n)[3:]",
     ["f(0) == '0'", "f(5) == '101'", "f(255) == '11111111'"]),
    ("from_roman", "s: str", "The value of a Roman numeral.",
     "v = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n    t = 0\n    for a, b in zip(s, s[1:] + ' '):\n        t += -v[a] if b != ' ' and v[b] > v[a] else v[a]\n    return t",
     "v = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n    return sum(v[c] for c in s)",
     ["f('III') == 3", "f('IV') == 4", "f('MCMXCIV') == 1994", "f('LVIII') == 58"]),
    ("to_roman", "n: int", "n (1..3999) as a Roman numeral.",
     "out = ''\n    for v, r in ((1000, 'M'), (900, 'CM'), (500, 'D'), (400, 'CD'), (100, 'C'), (90, 'XC'), (50, 'L'), (40, 'XL'), (10, 'X'), (9, 'IX'), (5, 'V'), (4, 'IV'), (1, 'I')):\n        while n >= v:\n            out += r\n            n -= v\n    return out",
     "out = ''\n    for v, r in ((1000, 'M'), (500, 'D'), (100, 'C'), (50, 'L'), (10, 'X'), (5, 'V'), (1, 'I')):\n        while n >= v:\n            out += r\n            n -= v\n    return out",
     ["f(3) == 'III'", "f(4) == 'IV'", "f(1994) == 'MCMXCIV'"]),
    ("anagrams", "a: str, b: str", "Whether a and b are anagrams, ignoring spaces and case.",
     "n = lambda s: sorted(s.replace(' ', '').lower())\n    return n(a) == n(b)",
     "return sorted(a) == sorted(b)",
     ["f('Listen', 'Silent') is True", "f('a gentleman', 'elegant man') is True", "f('ab', 'abc') is False"]),
    ("balanced", "s: str", "Whether the brackets ()[]{} of s are balanced.",
     "st, pair = [], {')': '(', ']': '[', '}': '{'}\n    for c in s:\n        if c in '([{':\n            st.append(c)\n        elif c in pair:\n            if not st or st.pop() != pair[c]:\n                return False\n    return not st",
     "return s.count('(') == s.count(')') and s.count('[') == s.count(']') and s.count('{') == s.count('}')",
     ["f('([]{})') is True", "f('([)]') is False", "f('((') is False", "f('') is True"]),
    ("median", "xs: list", "The median of a non-empty list of numbers.",
     "s = sorted(xs)\n    n = len(s)\n    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2",
     "s = sorted(xs)\n    return s[len(s) // 2]",
     ["f([3, 1, 2]) == 2", "f([4, 1, 3, 2]) == 2.5", "f([5]) == 5"]),
    ("mode", "xs: list", "The most common item of xs; the smallest on a tie.",
     "from collections import Counter\n    c = Counter(xs)\n    m = max(c.values())\n    return min(x for x in c if c[x] == m)",
     "from collections import Counter\n    return Counter(xs).most_common(1)[0][0]",
     ["f([1, 2, 2, 3]) == 2", "f([3, 3, 1, 1]) == 1", "f([7]) == 7"]),
    ("dedupe", "xs: list", "xs without repeats, first occurrences kept in order.",
     "seen, out = set(), []\n    for x in xs:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out",
     "return sorted(set(xs))",
     ["f([3, 1, 3, 2, 1]) == [3, 1, 2]", "f([]) == []", "f([1, 1]) == [1]"]),
    ("rotate", "xs: list, k: int", "xs rotated right by k places.",
     "if not xs:\n        return []\n    k %= len(xs)\n    return xs[-k:] + xs[:-k] if k else list(xs)",
     "return xs[k:] + xs[:k]",
     ["f([1, 2, 3, 4], 1) == [4, 1, 2, 3]", "f([1, 2, 3], 3) == [1, 2, 3]", "f([], 2) == []"]),
    ("matrix_transpose", "m: list", "The transpose of a rectangular matrix.",
     "return [list(r) for r in zip(*m)]",
     "return [r[:] for r in m]",
     ["f([[1, 2], [3, 4]]) == [[1, 3], [2, 4]]", "f([[1, 2, 3]]) == [[1], [2], [3]]"]),
    ("digits_product", "n: int", "The product of the non-zero digits of n > 0.",
     "p = 1\n    for c in str(n):\n        if c != '0':\n            p *= int(c)\n    return p",
     "p = 1\n    for c in str(n):\n        p *= int(c)\n    return p",
     ["f(123) == 6", "f(105) == 5", "f(7) == 7"]),
    ("collatz_steps", "n: int", "Steps for n > 0 to reach 1 under the Collatz rule.",
     "s = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        s += 1\n    return s",
     "s = 0\n    while n > 2:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        s += 1\n    return s",
     ["f(1) == 0", "f(2) == 1", "f(6) == 8", "f(27) == 111"]),
    ("title_case", "s: str", "s with the first letter of every word upper-cased, the rest lower.",
     "return ' '.join(w[:1].upper() + w[1:].lower() for w in s.split(' '))",
     "return s.capitalize()",
     ["f('hello world') == 'Hello World'", "f('aBC dEF') == 'Abc Def'"]),
    ("common_prefix", "words: list", "The longest prefix all words share.",
     "if not words:\n        return ''\n    p = words[0]\n    for w in words[1:]:\n        while not w.startswith(p):\n            p = p[:-1]\n    return p",
     "return words[0][:1] if words else ''",
     ["f(['flower', 'flow', 'flight']) == 'fl'", "f(['a', 'b']) == ''", "f([]) == ''", "f(['same', 'same']) == 'same'"]),
    ("merge_sorted", "a: list, b: list", "One sorted list from two sorted lists.",
     "out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]",
     "out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n    return out",
     ["f([1, 3], [2, 4]) == [1, 2, 3, 4]", "f([], [1]) == [1]", "f([1, 2], []) == [1, 2]"]),
    ("binary_search", "xs: list, x: int", "The index of x in sorted xs, or -1.",
     "lo, hi = 0, len(xs) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n        if xs[mid] == x:\n            return mid\n        if xs[mid] < x:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1",
     "lo, hi = 0, len(xs) - 1\n    while lo < hi:\n        mid = (lo + hi) // 2\n        if xs[mid] == x:\n            return mid\n        if xs[mid] < x:\n            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1",
     ["f([1, 3, 5, 7], 7) == 3", "f([1, 3, 5], 4) == -1", "f([], 1) == -1", "f([2], 2) == 0"]),
    ("power_set_size", "xs: list", "How many subsets the distinct items of xs have.",
     "return 2 ** len(set(xs))",
     "return 2 ** len(xs)",
     ["f([]) == 1", "f([1, 2]) == 4", "f([1, 1, 2]) == 4"]),
    ("triangle_kind", "a: int, b: int, c: int", "'equilateral', 'isosceles', 'scalene' or 'none' (not a triangle).",
     "x, y, z = sorted((a, b, c))\n    if x + y <= z:\n        return 'none'\n    return 'equilateral' if x == z else 'isosceles' if x == y or y == z else 'scalene'",
     "if a == b == c:\n        return 'equilateral'\n    return 'isosceles' if a == b or b == c or a == c else 'scalene'",
     ["f(2, 2, 2) == 'equilateral'", "f(2, 2, 3) == 'isosceles'", "f(3, 4, 5) == 'scalene'", "f(1, 2, 3) == 'none'"]),
    ("leap_year", "y: int", "Whether y is a Gregorian leap year.",
     "return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)",
     "return y % 4 == 0",
     ["f(2000) is True", "f(1900) is False", "f(2024) is True", "f(2023) is False"]),
    ("run_length", "s: str", "Run-length encoding: 'aaab' -> 'a3b1'.",
     "out, i = '', 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out += s[i] + str(j - i)\n        i = j\n    return out",
     "return ''.join(c + str(s.count(c)) for c in dict.fromkeys(s))",
     ["f('aaab') == 'a3b1'", "f('') == ''", "f('abba') == 'a1b2a1'"]),
    ("pascal_row", "n: int", "Row n of Pascal's triangle (row 0 is [1]).",
     "row = [1]\n    for _ in range(n):\n        row = [a + b for a, b in zip([0] + row, row + [0])]\n    return row",
     "row = [1]\n    for _ in range(n - 1):\n        row = [a + b for a, b in zip([0] + row, row + [0])]\n    return row",
     ["f(0) == [1]", "f(1) == [1, 1]", "f(4) == [1, 4, 6, 4, 1]"]),
    ("sum_multiples", "n: int", "The sum of the multiples of 3 or 5 below n.",
     "return sum(i for i in range(n) if i % 3 == 0 or i % 5 == 0)",
     "return sum(i for i in range(n + 1) if i % 3 == 0 or i % 5 == 0)",
     ["f(10) == 23", "f(1) == 0", "f(16) == 60"]),
    ("valid_ipv4", "s: str", "Whether s is a dotted-quad IPv4 address without leading zeros.",
     "p = s.split('.')\n    return len(p) == 4 and all(x.isdigit() and str(int(x)) == x and int(x) < 256 for x in p)",
     "p = s.split('.')\n    return len(p) == 4 and all(x.isdigit() for x in p)",
     ["f('192.168.0.1') is True", "f('256.1.1.1') is False", "f('01.2.3.4') is False", "f('1.2.3') is False"]),
    ("camel_to_snake", "s: str", "camelCase to snake_case.",
     "return ''.join('_' + c.lower() if c.isupper() else c for c in s).lstrip('_')",
     "return s.lower()",
     ["f('camelCase') == 'camel_case'", "f('HTTPServer') == 'h_t_t_p_server'", "f('x') == 'x'"]),
    ("count_islands", "g: list", "The 4-connected groups of 1s in a grid of 0/1.",
     "g = [row[:] for row in g]\n    def sink(i, j):\n        if 0 <= i < len(g) and 0 <= j < len(g[0]) and g[i][j]:\n            g[i][j] = 0\n            for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)):\n                sink(i + a, j + b)\n    n = 0\n    for i in range(len(g)):\n        for j in range(len(g[0])):\n            if g[i][j]:\n                n += 1\n                sink(i, j)\n    return n",
     "return sum(sum(row) for row in g)",
     ["f([[1, 1, 0], [0, 0, 1], [1, 0, 1]]) == 3", "f([[0]]) == 0", "f([[1, 1], [1, 1]]) == 1"]),
    ("nth_prime", "n: int", "The n-th prime, nth_prime(1) = 2.",
     "c, k = 0, 1\n    while c < n:\n        k += 1\n        if all(k % d for d in range(2, int(k ** 0.5) + 1)):\n            c += 1\n    return k",
     "c, k = 0, 1\n    while c < n:\n        k += 1\n        if all(k % d for d in range(2, int(k ** 0.5))):\n            c += 1\n    return k",
     ["f(1) == 2", "f(5) == 11", "f(100) == 541"]),
    ("kth_smallest", "xs: list, k: int", "The k-th smallest item (k from 1).",
     "return sorted(xs)[k - 1]",
     "return sorted(xs)[k]",
     ["f([3, 1, 2], 1) == 1", "f([5, 4, 3, 2, 1], 3) == 3", "f([9], 1) == 9"]),
    ("vowel_strip", "s: str", "s without its vowels (a, e, i, o, u, any case).",
     "return ''.join(c for c in s if c.lower() not in 'aeiou')",
     "return ''.join(c for c in s if c not in 'aeiou')",
     ["f('Hello') == 'Hll'", "f('AEIOUx') == 'x'", "f('') == ''"]),
    ("pairs_sum", "xs: list, t: int", "How many index pairs i < j have xs[i] + xs[j] == t.",
     "return sum(1 for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[i] + xs[j] == t)",
     "return sum(1 for i in range(len(xs)) for j in range(len(xs)) if i != j and xs[i] + xs[j] == t)",
     ["f([1, 2, 3, 4], 5) == 2", "f([1, 1, 1], 2) == 3", "f([], 0) == 0"]),
    ("depth", "x: object", "How deeply lists nest in x: 0 for a non-list, 1 for [].",
     "return 1 + max((depth(y) for y in x), default=0) if isinstance(x, list) else 0",
     "return 1 + max((depth(y) for y in x), default=1) if isinstance(x, list) else 0",
     ["f(5) == 0", "f([]) == 1", "f([1, [2, [3]]]) == 3"]),
    ("hamming", "a: str, b: str", "Positions where equal-length a and b differ.",
     "return sum(x != y for x, y in zip(a, b))",
     "return len(set(a) ^ set(b))",
     ["f('karolin', 'kathrin') == 3", "f('abc', 'abc') == 0", "f('aaa', 'aab') == 1"]),
    ("is_sorted", "xs: list", "Whether xs is in non-decreasing order.",
     "return all(a <= b for a, b in zip(xs, xs[1:]))",
     "return all(a < b for a, b in zip(xs, xs[1:]))",
     ["f([]) is True", "f([1, 1, 2]) is True", "f([2, 1]) is False"]),
    ("word_lengths", "s: str", "The length of each word of s.",
     "return [len(w) for w in s.split()]",
     "return [len(w) for w in s.split(' ')]",
     ["f('a bb ccc') == [1, 2, 3]", "f('  x  ') == [1]", "f('') == []"]),
    ("digital_root", "n: int", "Digits of n >= 0 summed repeatedly down to one digit.",
     "while n >= 10:\n        n = sum(int(c) for c in str(n))\n    return n",
     "return n % 9",
     ["f(0) == 0", "f(38) == 2", "f(99) == 9", "f(12345) == 6"]),
    ("interleave", "a: list, b: list", "a[0], b[0], a[1], b[1], ..., then the rest of the longer.",
     "out = []\n    for i in range(max(len(a), len(b))):\n        if i < len(a):\n            out.append(a[i])\n        if i < len(b):\n            out.append(b[i])\n    return out",
     "return [x for p in zip(a, b) for x in p]",
     ["f([1, 3], [2, 4]) == [1, 2, 3, 4]", "f([1], [2, 3, 4]) == [1, 2, 3, 4]", "f([], []) == []"]),
    ("clamp", "x: float, lo: float, hi: float", "x limited to [lo, hi].",
     "return max(lo, min(x, hi))",
     "return min(lo, max(x, hi))",
     ["f(5, 0, 10) == 5", "f(-1, 0, 10) == 0", "f(11, 0, 10) == 10"]),
    ("perfect", "n: int", "Whether n > 0 equals the sum of its proper divisors.",
     "return n > 1 and sum(d for d in range(1, n) if n % d == 0) == n",
     "return sum(d for d in range(1, n) if n % d == 0) == n - 1",
     ["f(6) is True", "f(28) is True", "f(12) is False", "f(1) is False"]),
    ("armstrong", "n: int", "Whether n equals the sum of its digits each raised to the number of digits.",
     "s = str(n)\n    return n == sum(int(c) ** len(s) for c in s)",
     "s = str(n)\n    return n == sum(int(c) ** 3 for c in s)",
     ["f(153) is True", "f(9474) is True", "f(10) is False", "f(5) is True"]),
    ("parse_kv", "s: str", "'a=1;b=2' as a dict of str to int; empty parts skipped.",
     "return {k: int(v) for k, _, v in (p.partition('=') for p in s.split(';') if p)}",
     "return dict(p.split('=') for p in s.split(';') if p)",
     ["f('a=1;b=2') == {'a': 1, 'b': 2}", "f('') == {}", "f('x=10;') == {'x': 10}"]),
    ("squares_sorted", "xs: list", "The squares of sorted xs (negatives allowed), sorted.",
     "return sorted(x * x for x in xs)",
     "return [x * x for x in xs]",
     ["f([-3, -1, 2]) == [1, 4, 9]", "f([]) == []", "f([1, 2]) == [1, 4]"]),
    ("missing_number", "xs: list", "The one number of 0..len(xs) that xs lacks.",
     "n = len(xs)\n    return n * (n + 1) // 2 - sum(xs)",
     "n = len(xs)\n    return n * (n - 1) // 2 - sum(xs)",
     ["f([3, 0, 1]) == 2", "f([0]) == 1", "f([1]) == 0"]),
    ("transpose_words", "s: str", "Each word of s reversed, the order of words kept.",
     "return ' '.join(w[::-1] for w in s.split(' '))",
     "return s[::-1]",
     ["f('ab cd') == 'ba dc'", "f('abc') == 'cba'", "f('') == ''"]),
]


def programs():
    """[(name, source, expected_pass)]: every task's good and broken one."""
    out = []
    for name, sig, doc, good, bad, checks in TASKS:
        check = "def check(f):\n" + "".join("    assert %s\n" % c for c in checks)
        for body, ok in ((good, True), (bad, False)):
            src = 'def %s(%s):\n    """%s"""\n    %s\n\n%s\ncheck(%s)\n' % (name, sig, doc, body, check, name)
            out.append(("%s/%s" % (name, "good" if ok else "broken"), src, ok))
    return out


# What real samples of code-generation benchmarks open with: about one
# prompt in eight imports from typing; solutions import a module of the
# standard library now and then.
SOLUTION_IMPORTS = ["import math", "import re", "from collections import Counter, defaultdict",
                    "import itertools", "import heapq", "import string", "import hashlib",
                    "import random", "from functools import lru_cache", "import bisect"]


def programs_real():
    """[(name, source, expected_pass)] in the shape of real benchmark
    samples, from the same tasks: a prompt that sometimes imports typing,
    a docstring with an example, a solution that sometimes imports a
    module and calls a helper, METADATA, a check(candidate) of many asserts
    (each case asserted twice, as real checks repeat shapes), and now and
    then a debugging print."""
    out = []
    for i, (name, sig, doc, good, bad, checks) in enumerate(TASKS):
        head = "from typing import List, Optional, Tuple\n\n\n" if i % 8 == 0 else ""
        if i % 4 == 1:
            head += SOLUTION_IMPORTS[(i // 4) % len(SOLUTION_IMPORTS)] + "\n\n\n"
        example = checks[-1].replace("f(", "%s(" % name, 1)
        check = ("METADATA = {\n    'author': 'kiln',\n    'dataset': 'test'\n}\n\n\n"
                 "def check(candidate):\n" +
                 "".join("    assert %s\n" % c.replace("f(", "candidate(") for c in checks + checks) +
                 "    assert True, 'This prints if this assert fails 1 (good for debugging!)'\n")
        for body, ok in ((good, True), (bad, False)):
            helper = ""
            if i % 3 == 0:
                helper = "def _%s_impl(%s):\n    %s\n\n\n" % (name, sig, body)
                body = "return _%s_impl(%s)" % (name, ", ".join(a.split(":")[0].strip() for a in sig.split(",")))
            src = ('%s%sdef %s(%s):\n    """%s\n    >>> %s\n    """\n    %s\n\n\n%s\n\n' %
                   (head, helper, name, sig, doc, example, body, check))
            if i % 5 == 2:
                src += "print(%s.__name__, 'checked')\n" % name
            src += "check(%s)\n" % name
            out.append(("%s/%s" % (name, "good" if ok else "broken"), src, ok))
    return out


def self_check(progs):
    bad = 0
    for name, src, ok in progs:
        try:
            exec(compile(src, name, "exec"), {"__name__": "__main__"})
            passed = True
        except AssertionError:
            passed = False
        if passed != ok:
            bad += 1
            print("wrong verdict:", name)
    print("%d programs, %d wrong" % (len(progs), bad))
    return bad


if __name__ == "__main__":
    # a self-check: every good solution passes, every broken one fails
    raise SystemExit(1 if self_check(programs()) + self_check(programs_real()) else 0)
