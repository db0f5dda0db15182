#!/usr/bin/python3
"""The Debian packages an image's named packages need, as installed here.

    package-closure.py PACKAGE...

Prints, one per line, the named packages and every installed package they
depend on (Depends and Pre-Depends, the first installed alternative, a
virtual package by its first installed provider), keeping only what an
image needs the files of: python modules (python3-*), their data
(python-*) and fonts (fonts-*). Shared libraries are not listed: the image
build copies every library its binaries load. Left out: build-time tools
(-dev packages, pythran and its parts) and Tk (no display in a sandbox).
"""
import re
import subprocess
import sys

KEEP = re.compile(r'^(python3-|python-|fonts-)')
DROP = re.compile(r'(-dev$|^python3-all|^python3\.\d+|^python3-(tk|pil\.imagetk|pythran|gast|beniget)$)')


def installed():
    fmt = '${Package}\t${db:Status-Abbrev}\t${Depends}, ${Pre-Depends}\t${Provides}\n'
    out = subprocess.run(['dpkg-query', '-W', '-f=' + fmt], capture_output=True, text=True, check=True).stdout
    deps, providers = {}, {}
    for line in out.splitlines():
        name, status, dep, prov = line.split('\t')
        if not status.startswith('ii'):
            continue
        deps[name] = dep
        for p in prov.split(','):
            p = p.strip().split(' ')[0]
            if p:
                providers.setdefault(p, name)
    return deps, providers


def main():
    deps, providers = installed()
    missing = [p for p in sys.argv[1:] if p not in deps]
    if missing:
        sys.exit('package-closure: not installed: ' + ' '.join(missing) + ' (ops/install-deps.sh)')
    todo, seen = list(sys.argv[1:]), set()
    while todo:
        p = todo.pop()
        if p in seen or DROP.search(p):
            continue
        seen.add(p)
        for group in deps[p].split(','):
            for alt in group.split('|'):
                name = alt.strip().split(' ')[0].split(':')[0]
                name = name if name in deps else providers.get(name)
                if name is not None:
                    todo.append(name)
                    break
    print('\n'.join(sorted(p for p in seen if KEEP.match(p) or p in sys.argv[1:])))


main()
