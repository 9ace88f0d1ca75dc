"""Side by side: two evaluated sanitizers (e.g. the residual default and `--architecture paper`),
same judges, same split, read from their evaluators' metrics.json; prints a Markdown table.

    python benchmarks/compare_sanitizers.py RUN_A/.../metrics.json RUN_B/.../metrics.json --names residual paper

Each figure carries its 95% bootstrap interval (identities resampled) as the evaluator stored it.
The targets column is the product's ([quality] targets; the laptop gate is each less 0.02).
"""

from __future__ import annotations

import argparse
import json


def _percent(values: dict, key: str, interval_key: str, fmr: str | None = None) -> str:
    value = values[key] if fmr is None else values[key][fmr]
    interval = values.get(interval_key)
    if fmr is not None and interval is not None:
        interval = interval.get(fmr)
    text = f"{100 * value:.1f}%"
    return text + (f" [{100 * interval[0]:.1f}–{100 * interval[1]:.1f}]" if interval else "")


def rows(metrics: dict) -> dict:
    split = metrics["splits"][metrics["gate_split"]]
    fmr = f"{metrics['gate']['tmr_fmr']:g}"
    table = {}
    for judge, outputs in split["gender"].items():
        table[f"{judge}: gender error, originals"] = _percent(outputs["original"], "error_rate", "error_rate_ci")
        table[f"{judge}: gender error, sanitized"] = _percent(outputs["sanitized"], "error_rate", "error_rate_ci")
    for judge, outputs in split.get("adaptive", {}).items():
        table[f"ADAPTIVE {judge}: gender error, sanitized"] = _percent(
            outputs["sanitized"], "error_rate", "error_rate_ci")
    for judge, outputs in split.get("identity_leakage", {}).items():
        table[f"identity-leakage bound {judge}: gender error, originals"] = _percent(
            outputs["original"], "error_rate", "error_rate_ci")
    for judge, outputs in split["matching"].items():
        for name in ("original", "sanitized"):
            table[f"{judge}: TMR at FMR {fmr}, {name} probes"] = _percent(
                outputs[name], "tmr_at_fmr", "tmr_at_fmr_ci", fmr)
    table["SSIM of sanitized vs original"] = f"{split['image_quality']['sanitized']['ssim']:.3f}"
    table["blessed by the laptop gate"] = "yes" if metrics["blessed"] else "no"
    return table


def target(key: str) -> str:
    """The [quality] target a row is held to (the laptop gate is each less 0.02)."""
    if key.startswith("ADAPTIVE"):
        return ">= identity-leakage bound - 2 points"
    if key.endswith("gender error, sanitized"):
        return ">= 40% (every unseen judge)"
    if key.endswith("sanitized probes"):
        return "<= 10 points below the original probes"
    if key.startswith("SSIM"):
        return ">= 0.80"
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+", help="metrics.json files of SanitizerEvaluator runs")
    parser.add_argument("--names", nargs="+", help="a column name per file (default: the file paths)")
    args = parser.parse_args(argv)
    names = args.names or args.metrics
    if len(names) != len(args.metrics):
        parser.error("give one --names entry per metrics file")
    tables = []
    for path in args.metrics:
        with open(path) as handle:
            metrics = json.load(handle)
        tables.append(rows(metrics))
        split = metrics["splits"][metrics["gate_split"]]
        print(f"{path}: {metrics['gate_split']} split, {split['num_examples']} faces of {split['num_identities']} "
              f"identities, data: {metrics['data']}")
    keys = list(dict.fromkeys(key for table in tables for key in table))
    print()
    print("| figure | " + " | ".join(names) + " | target |")
    print("|---|" + "---|" * (len(names) + 1))
    for key in keys:
        print(f"| {key} | " + " | ".join(table.get(key, "–") for table in tables) + f" | {target(key)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
