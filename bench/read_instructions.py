"""Instructions per request of an anonymous read and of the fixed-bytes route, counted by
callgrind (valgrind), in the process that serves them through the WSGI interface.

CPU time on two cores shared with other work moves by half from one run to the next; the
number of instructions a request executes does not. Each figure is the difference between a
run of --many requests and a run of --few (both after the same warm-up), divided by the
difference in requests: start-up, imports and warm-up cancel out. The app, the database and
the requests are bench/read_profile.py's (its schema, loaded by `read_profile.py --postgres
URL --keep` first); PostgreSQL's own work is in its backend, not counted here.

Usage: python bench/read_instructions.py --postgres URL [--few 100] [--many 500] [--cases read,fixed]
Needs valgrind (Debian: `apt-get install valgrind`). The two runs of a case go in parallel.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def serve(url: str, case: str, count: int) -> None:
    """The measured process: the app, a warm-up, then `count` requests of `case`."""
    import read_profile as rp

    app = rp.make_app(url)
    paths = rp.read_paths(app) if case == "read" else [rp.FIXED]
    rp._run(app, paths, 300)
    rp._run(app, paths, count)
    app.extensions["fhirsrv"].engine.dispose()


def _instructions(out: Path) -> int:
    text = out.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"no instruction count in {out}")
    return int(found.group(1))


def per_request(url: str, case: str, few: int, many: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for count in (few, many):
            out = Path(tmp) / f"callgrind.{count}"
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                       __file__, "--serve", case, "--postgres", url, "--many", str(count)]  # fmt: skip
            runs.append((out, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for _, process in runs:
            if process.wait() != 0:
                raise SystemExit(f"the {case} run under valgrind failed")
        low, high = (_instructions(out) for out, _ in runs)
    return round((high - low) / (many - few))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--few", type=int, default=100)
    parser.add_argument("--many", type=int, default=500)
    parser.add_argument("--cases", default="read,fixed")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from read_profile import SCHEMA

    sep = "&" if "?" in args.postgres else "?"
    url = f"{args.postgres}{sep}options=-csearch_path%3D{SCHEMA}"
    if args.serve:
        serve(args.postgres, args.serve, args.many)  # given the schema's URL by the parent
        return
    results = {f"{case}_instructions": per_request(url, case, args.few, args.many) for case in args.cases.split(",")}
    if "read_instructions" in results and "fixed_instructions" in results:
        results["read_over_fixed"] = round(results["read_instructions"] / results["fixed_instructions"], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
