"""`make bench`: run every benchmark and print Ferry's figures beside their baselines.

FERRY_BENCH_SCALE (default 1.0) shrinks or grows the work;
FERRY_BENCH_ONLY=store,relay,api,deploy picks.
"""

from __future__ import annotations

import asyncio
import os
import platform

from bench import api, deploy, relay, store
from bench.report import Figure, print_table

SUITES = {"store": store.run, "relay": relay.run, "api": api.run, "deploy": deploy.run}


async def main() -> None:
    scale = float(os.environ.get("FERRY_BENCH_SCALE", "1.0"))
    only = [s for s in os.environ.get("FERRY_BENCH_ONLY", "").split(",") if s]
    figures: list[Figure] = []
    for name, suite in SUITES.items():
        if not only or name in only:
            figures += await suite(scale)
    print(f"\nFerry benchmarks on {platform.node()} ({os.cpu_count()} cores), scale {scale}\n")
    print_table(figures)


if __name__ == "__main__":
    asyncio.run(main())
