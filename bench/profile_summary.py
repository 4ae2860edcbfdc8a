"""Where a py-spy profile's samples went: the share of samples in each function, inclusive (the
function or anything it called) and self (the function's own line was running).

    python -m bench.profile_summary PROFILE.txt [--top 40] [--only SUBSTRING]

PROFILE.txt is py-spy's raw (collapsed) output, as `bench.common.profiled` writes it; `--only`
keeps the stacks that pass through a function whose name holds SUBSTRING.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path


def shares(path: Path, only: str | None = None) -> tuple[int, collections.Counter, collections.Counter]:
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or (only and only not in stack):
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--only")
    args = parser.parse_args()
    total, inclusive, own = shares(args.profile, args.only)
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"-- {title}")
        for frame, n in counter.most_common(args.top):
            print(f"{n / max(total, 1):6.1%}  {frame[:160]}")


if __name__ == "__main__":
    main()
