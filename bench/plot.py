"""The charts of the reclaim benches (runs in bench/.venv-plot: matplotlib is not a project dependency).

    bench/.venv-plot/bin/python bench/plot.py bench/results/reclaim_policies.json   # this machine's kernel
    bench/.venv-plot/bin/python bench/plot.py bench/results/lab_policies.json       # the QEMU lab

One figure: a panel per series, one colour per policy (repeat runs fainter),
time in seconds since the workload went quiet, the hot phase shaded and the
30 s target dotted. Which panels depends on the bench: the lab's results
carry a "guest" record (the host's QEMU RSS, then the guest's page cache);
this machine's carry the page cache and the cold and hot files' residency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GiB, MiB = 1 << 30, 1 << 20


def lab_panels(data: dict):
    """(title, series of a run -> [(t, value)]) per panel, the runs to draw, and the figure's title."""
    def rss(run):
        return [(t, b / MiB) for t, b in run["series"]["rss"]]

    def cache(run):
        return [(g["t"], g["page_cache"] / MiB) for g in run["series"]["guest"]]
    g = data["guest"]
    title = (f"Host footprint per reclaim policy: QEMU lab guest ({g['kernel']}, {g['cpus']} vCPUs "
             f"{g['accel'].upper()}, -m {g['memory']}, free page reporting)")
    return [("QEMU (vmmemWSL) RSS on the host, MiB", rss), ("guest page cache, MiB", cache)], data["runs"], title


def machine_panels(data: dict):
    def column(key):
        return lambda run: [(r["t"], (r[key] or 0) / GiB) for r in run["series"]]
    # a run someone else's cache drop spoiled is in the tables, flagged, not in the chart
    runs = [r for r in data["runs"] if r.get("available") and not r["summary"].get("foreign_drops")]
    m = data["machine"]
    title = (f"Cache over time per reclaim policy ({m['kernel']}, {m['cpus']} CPUs, "
             f"{m['mem_total_bytes'] / GiB:.0f} GiB; DAMON {'on' if m.get('damon') else 'off'})")
    return [("page cache, whole machine (GiB)", column("page_cache")),
            ("cold files resident (GiB)", column("cold_cached")),
            ("hot working set resident (GiB)", column("hot_cached"))], runs, title


def main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    panels, runs, title = (lab_panels if "guest" in data else machine_panels)(data)
    if not runs:
        print(f"{path}: no chart: every run was spoiled by someone else's cache drop (see the tables)",
              file=sys.stderr)
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 4.25 * len(panels) if len(panels) == 2 else 10),
                             sharex=True)
    colors: dict[str, str] = {}
    for run in runs:
        quiet = run["marks"]["quiet"]
        first = run["policy"] not in colors
        color = colors.setdefault(run["policy"], f"C{len(colors)}")
        style = dict(color=color, linewidth=1.5 if first else 0.9, alpha=1.0 if first else 0.45,
                     linestyle="-" if first else "--", label=run["policy"] if first else None)
        for ax, (_, series) in zip(axes, panels):
            points = series(run)
            ax.plot([t - quiet for t, _ in points], [v for _, v in points], **style)
    m = runs[0]["marks"]
    for ax, (label, _) in zip(axes, panels):
        ax.set_ylabel(label, fontsize=9)
        ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
        ax.axvspan(m["hot_start"] - m["quiet"], 0, color="orange", alpha=0.08)
        if "cold_end" in m:
            ax.axvspan(m["cold_start"] - m["quiet"], m["cold_end"] - m["quiet"], color="red", alpha=0.06)
        ax.axvline(30, color="green", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=9)
    axes[0].set_title(title, fontsize=10)
    axes[-1].set_xlabel("seconds since the workload went quiet (dashed); red: cold read, orange: hot phase (first "
                        "run's); dotted: the 30 s target; dashed lines: repeat runs", fontsize=9)
    fig.tight_layout()
    out = Path(path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
