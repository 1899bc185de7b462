"""Latency against load, one line per server, as an SVG, from the JSONL results of
``tests/benchmarks/peers.sh curve``:

    .venv/bin/python tests/benchmarks/plot.py RESULTS.jsonl > docs/latency.svg
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict

WIDTH, HEIGHT, MARGIN = 720, 420, 60
COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def load(path: str) -> dict[str, list[tuple[float, float]]]:
    runs: dict[tuple[str, float], list[tuple[float, float]]] = defaultdict(list)
    with open(path) as results:
        rows = [json.loads(line) for line in results]
    for row in rows:
        result = row.get("result", row)
        if "p99_ms" not in result or row.get("error"):
            continue
        rate = result.get("rate_target") or 0
        runs[(row["server"], rate)].append((result["deliv_per_s"], result["p99_ms"]))
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (server, _rate), points in runs.items():
        series[server].append(
            (statistics.median(p[0] for p in points), statistics.median(p[1] for p in points))
        )
    return {server: sorted(points) for server, points in series.items()}


def svg(series: dict[str, list[tuple[float, float]]]) -> str:
    # Latency spans milliseconds to seconds once a server saturates: a logarithmic y axis.
    max_x = max(x for points in series.values() for x, _ in points) * 1.05
    low = math.floor(math.log10(min(y for points in series.values() for _, y in points)))
    high = math.ceil(math.log10(max(y for points in series.values() for _, y in points)))

    def sx(x: float) -> float:
        return MARGIN + x / max_x * (WIDTH - 2 * MARGIN)

    def sy(y: float) -> float:
        return HEIGHT - MARGIN - (math.log10(y) - low) / (high - low) * (HEIGHT - 2 * MARGIN)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">p99 delivery '
        "latency against load (fanout to 1000 clients, one server core, log scale)</text>",
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 15}" text-anchor="middle">'
        "deliveries per second</text>",
        f'<text x="15" y="{HEIGHT / 2}" transform="rotate(-90 15 {HEIGHT / 2})" '
        'text-anchor="middle">p99 latency (ms)</text>',
    ]
    for i in range(6):
        x = max_x * i / 5
        out.append(
            f'<text x="{sx(x)}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">'
            f"{x / 1000:.0f}k</text>"
        )
    for exponent in range(low, high + 1):
        y = 10.0**exponent
        out.append(f'<text x="{MARGIN - 6}" y="{sy(y) + 4}" text-anchor="end">{y:g}</text>')
        out.append(
            f'<line x1="{MARGIN}" y1="{sy(y)}" x2="{WIDTH - MARGIN}" y2="{sy(y)}" stroke="#ddd"/>'
        )
    for index, (server, points) in enumerate(sorted(series.items())):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.extend(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in points
        )
        out.append(
            f'<text x="{MARGIN + 10}" y="{MARGIN + 16 * index}" fill="{colour}">{server}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    print(svg(load(sys.argv[1])))
