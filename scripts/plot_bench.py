#!/usr/bin/python3
"""Plots of seqgen's benchmark results (the JSON of seqgen_bench --benchmark_out_format=json).

    /usr/bin/python3 scripts/plot_bench.py build/bench/results.json [--out DIR] [--docs DIR]

Writes into DIR (default: the directory of the JSON file), and also into the --docs directory
when one is given:
  seq_cost_time.png    SeqCost/<kind>/<T>: time per token of one layer's forward + backward
                       against the sequence length T, log-log; recurrent kinds against attention
  seq_cost_memory.png  SeqCost/<kind>/<T>: bytes of activations kept for backward against T
  decode_cost.png      DecodeCost/<kind>/<t>: time to produce the token at position t
A plot whose cases are not in the JSON (a filtered run) is skipped with a message.
Times come from the tokens_per_s counters (time per token = 1 / tokens_per_s), which Google
Benchmark computes from the main thread's CPU time (docs/benchmarks.md).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib import ticker  # noqa: E402

RECURRENT = ["rnn", "lstm", "gru"]
ATTENTION = ["attention", "gpt_block"]
STYLE = {
    "rnn": dict(color="tab:green", marker="o", linestyle="-"),
    "lstm": dict(color="tab:blue", marker="s", linestyle="-"),
    "gru": dict(color="tab:cyan", marker="^", linestyle="-"),
    "attention": dict(color="tab:red", marker="D", linestyle="--"),
    "gpt_block": dict(color="tab:orange", marker="v", linestyle="--"),
    "gpt": dict(color="tab:red", marker="D", linestyle="--"),
}
LABEL = {
    "rnn": "RNN layer",
    "lstm": "LSTM layer",
    "gru": "GRU layer",
    "attention": "causal self-attention",
    "gpt_block": "GPT block (attention + MLP)",
}


def load_cases(path, family):
    """{kind: {x: {counter: value}}} for the iteration runs named <family>/<kind>/<x>.

    Repetitions of one case (--benchmark_repetitions) are reduced to their median."""
    with open(path) as f:
        data = json.load(f)
    pattern = re.compile(r"^%s/([A-Za-z_]+)/(\d+)(?:/.*)?$" % re.escape(family))
    runs = {}
    for bench in data.get("benchmarks", []):
        if bench.get("run_type", "iteration") != "iteration" or bench.get("error_occurred"):
            continue
        m = pattern.match(bench["name"])
        if not m:
            continue
        runs.setdefault((m.group(1), int(m.group(2))), []).append(bench)
    cases = {}
    for (kind, x), benches in runs.items():
        counters = {}
        for key in ("tokens_per_s", "activation_bytes", "gflops"):
            values = [b[key] for b in benches if key in b]
            if values:
                counters[key] = statistics.median(values)
        cases.setdefault(kind, {})[x] = counters
    return cases, data.get("context", {})


def footer(fig, context):
    parts = []
    if context.get("date"):
        parts.append(context["date"])
    if context.get("host_name"):
        parts.append(context["host_name"])
    if context.get("num_cpus"):
        parts.append("%s CPUs" % context["num_cpus"])
    if context.get("seqgen_threads"):
        parts.append("%s seqgen threads" % context["seqgen_threads"])
    if parts:
        fig.text(0.99, 0.005, ", ".join(parts), ha="right", va="bottom", fontsize=7, color="gray")


def series(cases, kind, key, transform):
    xs = sorted(x for x, c in cases[kind].items() if key in c and c[key] > 0)
    return xs, [transform(cases[kind][x][key]) for x in xs]


def log2_axis(ax, xs):
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.minorticks_off()


def log_y_axis(ax):
    """Log y axis labelled at 1, 2, 5 × 10^k in plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: "%g" % v))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plot_seq(cases, context, out, counter, transform, ylabel, title):
    """One SeqCost counter against T for every kind, log-log."""
    kinds = [k for k in RECURRENT + ATTENTION if k in cases]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    all_x = set()
    for kind in kinds:
        xs, ys = series(cases, kind, counter, transform)
        if xs:
            ax.plot(xs, ys, label=LABEL[kind], **STYLE[kind])
            all_x.update(xs)
    log2_axis(ax, sorted(all_x))
    log_y_axis(ax)
    ax.set_xlabel("sequence length T (tokens)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=9, frameon=False)
    footer(fig, context)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_seq_time(cases, context, out):
    plot_seq(cases, context, out, "tokens_per_s", lambda r: 1e6 / r, "time per token (µs), forward + backward",
             "One layer over one sequence (B = 1, width 256, 4 heads)")


def plot_seq_memory(cases, context, out):
    plot_seq(cases, context, out, "activation_bytes", lambda b: b / 2**20, "activations kept for backward (MiB)",
             "Memory of one layer's cache after forward (B = 1, width 256, float)")


def plot_decode(cases, context, out):
    label = {"lstm": "LSTM S (recurrent state)", "gpt": "GPT S (KV cache)"}
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    all_x = set()
    for kind in [k for k in ("lstm", "gpt") if k in cases]:
        xs, ys = series(cases, kind, "tokens_per_s", lambda r: 1e6 / r)
        if xs:
            ax.plot(xs, ys, label=label[kind], **STYLE[kind])
            all_x.update(xs)
    log2_axis(ax, sorted(all_x))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("position t of the new token")
    ax.set_ylabel("time to produce one token (µs)")
    ax.set_title("Decoding cost per token, batch 1 (V=65, width 256)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    footer(fig, context)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="JSON written by seqgen_bench --benchmark_out")
    parser.add_argument("--out", help="directory for the PNGs (default: the JSON file's directory)")
    parser.add_argument("--docs", help="also copy the PNGs into this directory (e.g. docs/images)")
    args = parser.parse_args()

    out_dir = args.out or os.path.dirname(os.path.abspath(args.results))
    os.makedirs(out_dir, exist_ok=True)
    if args.docs:
        os.makedirs(args.docs, exist_ok=True)

    seq_cases, context = load_cases(args.results, "SeqCost")
    decode_cases, _ = load_cases(args.results, "DecodeCost")
    plots = [
        ("seq_cost_time.png", seq_cases, plot_seq_time, "SeqCost"),
        ("seq_cost_memory.png", seq_cases, plot_seq_memory, "SeqCost"),
        ("decode_cost.png", decode_cases, plot_decode, "DecodeCost"),
    ]
    written = 0
    for filename, cases, plot, family in plots:
        if not cases:
            print("plot_bench: no %s cases in %s, skipping %s" % (family, args.results, filename))
            continue
        path = os.path.join(out_dir, filename)
        plot(cases, context, path)
        print("plot_bench: wrote %s" % path)
        written += 1
        if args.docs and os.path.abspath(args.docs) != os.path.abspath(out_dir):
            shutil.copyfile(path, os.path.join(args.docs, filename))
            print("plot_bench: copied to %s" % os.path.join(args.docs, filename))
    if not written:
        print("plot_bench: nothing to plot (run SeqCost or DecodeCost cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
