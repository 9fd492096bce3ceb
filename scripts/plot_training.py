#!/usr/bin/python3
"""Draws the training and validation curves of `train --metrics` logs (JSON lines) to a PNG.

    /usr/bin/python3 scripts/plot_training.py build/demo/gpt.metrics.jsonl -o curve.png
    /usr/bin/python3 scripts/plot_training.py a.metrics.jsonl b.metrics.jsonl --labels "C=96" "C=128" -o compare.png

Four panels: loss (nats/token) and bits/char, each against tokens trained on and against training
time. Solid lines are the training loss (the mean over each --log-interval), dots the periodic
validation losses, and a star the whole-split evaluation a run ends with. Several logs share the
figure, one colour each. A resumed run's log holds a "resume" line: the lines before it with a
larger step were written after the checkpoint's last save and are dropped, as the run replayed
those steps. A line a crash tore in half is skipped. The training loss is shown in bits/char with
the characters per token of the validation evaluations (1 for a character tokenizer).
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import math
import os
import sys


def read_log(path):
    """The records of one log, with the superseded ones (after a resume point) removed."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                print(f"plot_training: {path}:{number}: skipping a line that is not JSON (torn by a crash?)",
                      file=sys.stderr)
                continue
            if record.get("type") == "resume":
                step = record["step"]
                records = [r for r in records if r.get("type") not in ("step", "eval") or r["step"] <= step]
            records.append(record)
    return records


def curves(records):
    steps = [r for r in records if r.get("type") == "step" and r.get("train_loss") is not None]
    evals = [r for r in records if r.get("type") == "eval" and r.get("val_loss") is not None]
    # Characters per token, from the evaluations: bits/char = nats/token / ln 2 / (chars/token).
    ratios = [r["val_loss"] / math.log(2) / r["val_bits_per_char"] for r in evals if r.get("val_bits_per_char")]
    cpt = ratios[-1] if ratios else None
    # A run ends with an evaluation of the whole split: the last line of a log, or the line before
    # the next run's "start" or "resume".
    final = {id(r) for i, r in enumerate(records) if r.get("type") == "eval" and (
        i + 1 == len(records) or records[i + 1].get("type") in ("start", "resume"))}
    return steps, evals, cpt, final


def main():
    parser = argparse.ArgumentParser(description="Plot train --metrics logs")
    parser.add_argument("logs", nargs="+", help="JSON-lines logs written by train --metrics")
    parser.add_argument("-o", "--out", default="training.png", help="PNG to write (default: training.png)")
    parser.add_argument("--labels", nargs="*", help="one label per log (default: the file name and model)")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.logs):
        parser.error(f"{len(args.labels)} labels for {len(args.logs)} logs")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex="col")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, path in enumerate(args.logs):
        records = read_log(path)
        steps, evals, cpt, final = curves(records)
        if not steps and not evals:
            print(f"plot_training: {path} holds no step or evaluation line", file=sys.stderr)
            continue
        start = next((r for r in records if r.get("type") == "start"), None)
        label = args.labels[k] if args.labels else os.path.basename(path).replace(".metrics.jsonl", "")
        if not args.labels and start:
            about = f"{start.get('params', 0) / 1e6:.2f} M params"
            label += f" ({about})" if label == start.get("model") else f" ({start.get('model')}, {about})"
        colour = colours[k % len(colours)]
        for col, x_of in ((0, lambda r: r["tokens"] / 1e6), (1, lambda r: r["elapsed"] / 60)):
            for row in (0, 1):
                ax = axes[row][col]
                factor = 1.0 if row == 0 else (1 / math.log(2) / cpt if cpt else None)
                if factor is None:
                    continue
                ax.plot([x_of(r) for r in steps], [r["train_loss"] * factor for r in steps], color=colour,
                        linewidth=1.2, alpha=0.8, label=f"{label}: train" if (row, col) == (0, 0) else None)
                periodic = [r for r in evals if id(r) not in final]
                ends = [r for r in evals if id(r) in final]
                key = "val_loss" if row == 0 else "val_bits_per_char"
                ax.plot([x_of(r) for r in periodic], [r[key] for r in periodic], "o", color=colour, markersize=3.5,
                        label=f"{label}: validation" if (row, col) == (0, 0) else None)
                ax.plot([x_of(r) for r in ends], [r[key] for r in ends], "*", color=colour, markersize=12,
                        markeredgecolor="black", markeredgewidth=0.5,
                        label=f"{label}: whole validation split" if (row, col) == (0, 0) else None)
                for r in ends[-1:]:
                    ax.annotate(f"{r[key]:.2f}", (x_of(r), r[key]), textcoords="offset points", xytext=(6, 6),
                                fontsize=8)
    axes[0][0].set_ylabel("loss (nats/token)")
    axes[1][0].set_ylabel("bits/char")
    axes[1][0].set_xlabel("tokens trained on (millions)")
    axes[1][1].set_xlabel("training time (minutes)")
    for row in axes:
        for ax in row:
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"plot_training: wrote {args.out}")


if __name__ == "__main__":
    main()
