"""Chart for bench/lab_policies.py (runs in bench/.venv-plot: matplotlib is not a project dependency).

    bench/.venv-plot/bin/python bench/plot_lab.py bench/results/lab_policies.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MiB = 1 << 20


def main(path: str) -> None:
    data = json.loads(Path(path).read_text())
    fig, axes = plt.subplots(2, 1, figsize=(11, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colors: dict[str, str] = {}
    for run in data["runs"]:
        m = run["marks"]
        quiet = m["quiet"]
        first = run["policy"] not in colors
        color = colors.setdefault(run["policy"], f"C{len(colors)}")
        style = dict(color=color, linewidth=1.5 if first else 0.9, alpha=1.0 if first else 0.45,
                     linestyle="-" if first else "--", label=run["policy"] if first else None)
        rss = run["series"]["rss"]
        axes[0].plot([t - quiet for t, _ in rss], [b / MiB for _, b in rss], **style)
        guest = run["series"]["guest"]
        axes[1].plot([g["t"] - quiet for g in guest], [g["page_cache"] / MiB for g in guest], **style)
    m = data["runs"][0]["marks"]
    for ax, title in zip(axes, ("QEMU (vmmemWSL) RSS on the host, MiB", "guest page cache, MiB")):
        ax.set_ylabel(title, fontsize=9)
        ax.axvline(0, color="black", linestyle="--", linewidth=0.8)
        ax.axvspan(m["hot_start"] - m["quiet"], 0, color="orange", alpha=0.08)
        ax.axvspan(m["cold_start"] - m["quiet"], m["cold_end"] - m["quiet"], color="red", alpha=0.06)
        ax.axvline(30, color="green", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=9)
    g = data["guest"]
    axes[0].set_title(f"Host footprint per reclaim policy: QEMU lab guest ({g['kernel']}, {g['cpus']} vCPUs "
                      f"{g['accel'].upper()}, -m {g['memory']}, free page reporting)", fontsize=10)
    axes[-1].set_xlabel("seconds since the workload went quiet (dashed); red: cold read, orange: hot phase (first "
                        "run's); dotted: the 30 s target; dashed lines: repeat runs", fontsize=9)
    fig.tight_layout()
    out = Path(path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
