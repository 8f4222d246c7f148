"""Compares the per-test outcomes of the redis-py suite run straight at redis-server
and through strata (junit xml written by tests/compat/redis_py.sh)."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def outcomes(path):
    res = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            res[name] = "failed"
        elif "error" in kinds:
            res[name] = "error"
        elif "skipped" in kinds:
            res[name] = "skipped"
        else:
            res[name] = "passed"
    return res


def tally(res):
    t = {}
    for v in res.values():
        t[v] = t.get(v, 0) + 1
    return ", ".join(f"{k} {t.get(k, 0)}" for k in ("passed", "failed", "error", "skipped"))


def main():
    out = Path(sys.argv[1])
    for proto in (2, 3):
        d_path, s_path = out / f"direct-resp{proto}.xml", out / f"strata-resp{proto}.xml"
        if not (d_path.exists() and s_path.exists()):
            continue
        d, s = outcomes(d_path), outcomes(s_path)
        for extra, into in ((f"direct-resp{proto}.cred.xml", d), (f"strata-resp{proto}.cred.xml", s)):
            if (out / extra).exists():
                into.update(outcomes(out / extra))
        print(f"\n== RESP{proto}")
        print(f"direct: {tally(d)}")
        print(f"strata: {tally(s)}")
        only = len(set(d) ^ set(s))
        if only:
            print(f"({only} tests ran in only one of the two runs: not compared)")
        for name in sorted(set(d) & set(s)):
            a, b = d[name], s[name]
            if a != b:
                print(f"  DIFF {name}: direct {a}, strata {b}")


if __name__ == "__main__":
    main()
