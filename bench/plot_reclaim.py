"""Chart for bench/reclaim_policies.py (runs in bench/.venv-plot: matplotlib is not a project dependency).

    bench/.venv-plot/bin/python bench/plot_reclaim.py bench/results/reclaim_policies.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GiB = 1 << 30


def main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    panels = (("page_cache", "page cache, whole machine (GiB)"), ("cold_cached", "cold files resident (GiB)"),
              ("hot_cached", "hot working set resident (GiB)"))
    colors: dict[str, str] = {}
    for run in data["runs"]:
        if not run.get("available") or run["summary"].get("foreign_drops"):
            continue  # not a policy's run (someone else dropped caches during it): it is in the tables, flagged
        quiet = run["marks"]["quiet"]
        t = [r["t"] - quiet for r in run["series"]]
        first = run["policy"] not in colors
        color = colors.setdefault(run["policy"], f"C{len(colors)}")
        for ax, (key, _) in zip(axes, panels):
            ax.plot(t, [(r[key] or 0) / GiB for r in run["series"]], color=color, linewidth=1.4 if first else 0.8,
                    alpha=1.0 if first else 0.35, label=run["policy"] if first else None)
    first = next(r for r in data["runs"] if r.get("available"))
    m = first["marks"]
    for ax, (_, title) in zip(axes, panels):
        ax.set_ylabel(title, fontsize=9)
        ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
        ax.axvspan(m["hot_start"] - m["quiet"], 0, color="orange", alpha=0.08)
        ax.axvline(30, color="green", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=9)
    axes[0].set_title(f"Cache over time per reclaim policy ({data['machine']['kernel']}, "
                      f"{data['machine']['cpus']} CPUs, {data['machine']['mem_total_bytes'] / GiB:.0f} GiB; "
                      f"DAMON {'on' if data['machine'].get('damon') else 'off'})", fontsize=10)
    axes[-1].set_xlabel("seconds since the workload went quiet (dashed); shaded: hot phase (first run's); "
                        "dotted: the 30 s target; faint lines: repeat runs")
    fig.tight_layout()
    out = Path(path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
