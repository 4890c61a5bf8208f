"""Request counts per route and latency histograms, exposed in Prometheus text format or as JSON."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str, int], int] = defaultdict(int)
        self._hist: dict[tuple[str, str], list[int]] = {}
        self._sum: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self._count[(method, route, status)] += 1
            h = self._hist.setdefault(key, [0] * (len(self.buckets) + 1))
            h[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum[key] += seconds

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            routes: dict[str, Any] = {}
            for (m, r, status), n in sorted(self._count.items()):
                entry = routes.setdefault(f"{m} {r}", {"count": 0, "by_status": {}})
                entry["count"] += n
                entry["by_status"][str(status)] = n
            for (m, r), h in self._hist.items():
                cum = _cumulative(h)
                buckets = {_le(b): c for b, c in zip(self.buckets, cum, strict=False)}
                routes[f"{m} {r}"]["latency_seconds"] = {
                    "sum": self._sum[(m, r)],
                    "buckets": {**buckets, "+Inf": cum[-1]},
                }
            return {"routes": routes}

    def prometheus(self) -> str:
        lines = [
            "# HELP playnext_requests_total HTTP requests by method, route template and status.",
            "# TYPE playnext_requests_total counter",
        ]
        with self._lock:
            for (m, r, status), n in sorted(self._count.items()):
                lines.append(f'playnext_requests_total{{method="{m}",route="{r}",status="{status}"}} {n}')
            lines += [
                "# HELP playnext_request_duration_seconds Request latency by method and route template.",
                "# TYPE playnext_request_duration_seconds histogram",
            ]
            for (m, r), h in sorted(self._hist.items()):
                cum = _cumulative(h)
                labels = f'method="{m}",route="{r}"'
                for b, c in zip(self.buckets, cum, strict=False):
                    lines.append(f'playnext_request_duration_seconds_bucket{{{labels},le="{_le(b)}"}} {c}')
                lines.append(f'playnext_request_duration_seconds_bucket{{{labels},le="+Inf"}} {cum[-1]}')
                lines.append(f"playnext_request_duration_seconds_sum{{{labels}}} {self._sum[(m, r)]:.6f}")
                lines.append(f"playnext_request_duration_seconds_count{{{labels}}} {cum[-1]}")
        return "\n".join(lines) + "\n"


def _cumulative(h: list[int]) -> list[int]:
    out, total = [], 0
    for c in h:
        total += c
        out.append(total)
    return out


def _le(b: float) -> str:
    return f"{b:g}"
