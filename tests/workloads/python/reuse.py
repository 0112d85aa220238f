"""Frees a code object and makes another, hoping for the same address, for
the resolver's cache test.

Commands on stdin, one per line; each answer is one line on stdout, id() of
the code object now kept (its address, in CPython). The one kept before is
freed first, so the allocator's free list may hand its block back.
  define NAME LINE  a function NAME whose `def` is on line LINE of reused.py
  rename NAME       the same function as before, renamed with
                    code.replace(co_name=...): everything else shared
"""

import sys

kept = None
template = None

for line in sys.stdin:
    words = line.split()
    name = sys.intern(words[1])
    if words[0] == "define":
        source = "\n" * (int(words[2]) - 1) + "def %s(a, b):\n    return a + b\n" % name
        kept = template = None
        kept = template = compile(source, "reused.py", "exec").co_consts[0]
    else:
        fields = {"co_name": name}
        if sys.version_info >= (3, 11):
            fields["co_qualname"] = name
        kept = None
        kept = template.replace(**fields)
    sys.stdout.write("%d\n" % id(kept))
    sys.stdout.flush()
