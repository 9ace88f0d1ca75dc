"""The evaluation report a person can read: HTML (self-contained) and Markdown, with figures.

The tables follow the SAN paper: gender error before and after perturbation per judge (its
Table 2), true match rate at fixed false match rates per output (its Table 3); ROC curves per
judge (its Figures 6 and 7) and a grid of example faces (its Figure 5). One table model is
rendered twice, as Markdown and as HTML; the HTML embeds its images, the Markdown links the PNGs
beside it.
"""

from __future__ import annotations

import base64
import html
import io
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.evaluation.tradeoff import tradeoff_png, tradeoff_table  # noqa: E402
from trainer.policy import GENDER  # noqa: E402

HTML_FILE = "index.html"
MARKDOWN_FILE = "report.md"
TRADEOFF_FIGURE = "tradeoff.png"
OUTPUT_NAMES = {"original": "original", "same": "X'_SM", "neutral": "X'_NT", "sanitized": "sanitized X'"}
DECRYPTED = "decrypted: the model applied to sanitized X' again (obfuscation)"
MEANING = [
    "Gender error: share of faces whose gender the judge gets wrong (threshold P(male) = 0.5). "
    "Privacy wants it HIGH on the sanitized output X' (X'_OP for the paper's SAN) and low on the originals and X'_SM. "
    "AUC below 0.5 means the judge's ranking is inverted (the perturbation flips the gender it sees).",
    "TMR at FMR: share of genuine pairs (same person) accepted at the score threshold where the given "
    "share of impostor pairs (different people) is accepted. Probe = the output for one face, gallery = "
    "the ORIGINAL other faces of the split, as in the paper. Utility wants it close to the originals' TMR; a "
    "policy that suppresses identity (de-identification) wants it near 0 for sanitized probes, and also for "
    "sanitized probes against a sanitized gallery (linkability).",
    "SSIM (1 = identical) and PSNR (dB, higher = closer) compare each output with its original face.",
    "[a–b] is a 95% bootstrap confidence interval: the split's identities are drawn with replacement "
    "(a person's photos stay together, as they are not independent) and the figure recomputed; with a "
    "few hundred test faces it spans several points, so differences smaller than that are not evidence.",
    "Independent judges were never used to train the SAN; the auxiliary classifier row is the white-box "
    "network the SAN trained against, shown for reference only and not used by the gate.",
]


def _percent(value, interval=None) -> str:
    """"16.6% [12.1–21.3]": the figure and its 95% interval (identities resampled), if any."""
    if value is None:
        return "–"
    text = f"{100 * value:.1f}%"
    return text + (f" [{100 * interval[0]:.1f}–{100 * interval[1]:.1f}]" if interval else "")


def _gender_table(split_metrics: dict) -> tuple[list[str], list[list[str]]]:
    header = ["gender judge", *(f"{OUTPUT_NAMES[name]} error [95% CI] (AUC)" for name in OUTPUT_NAMES)]
    rows = []
    for group, suffix in (("gender", ""), ("white_box", " (white-box reference, not a judge)")):
        for judge, outputs in split_metrics[group].items():
            rows.append([judge + suffix, *(
                f"{_percent(outputs[name]['error_rate'], outputs[name].get('error_rate_ci'))} ("
                f"{'–' if outputs[name]['auc'] is None else format(outputs[name]['auc'], '.3f')})"
                for name in OUTPUT_NAMES)])
    return header, rows


def _attacker_table(split_metrics: dict) -> tuple[list[str], list[list[str]]]:
    """The adaptive attacker on the sanitized faces beside the identity-leakage bound."""
    header = ["attacker", "what it is", "gender error [95% CI]"]
    rows = []
    for judge, outputs in split_metrics.get("adaptive", {}).items():
        values = outputs["sanitized"]
        rows.append([judge, "owns the sanitizer; trained on its sanitized output of the train split, reads the "
                     "sanitized test faces",
                     _percent(values["error_rate"], values.get("error_rate_ci"))])
    for judge, outputs in split_metrics.get("identity_leakage", {}).items():
        values = outputs["original"]
        rows.append([judge, "bound: gender read from an independent matcher's identity embedding of the originals",
                     _percent(values["error_rate"], values.get("error_rate_ci"))])
    return header, rows


def _policy_attribute_table(attribute: str, section: dict) -> tuple[list[str], list[list[str]]]:
    """One policy attribute other than gender: every judge's error per output, the adaptive
    attacker and the identity-leakage bound (suppressed attributes: high error is the goal;
    preserved ones: the sanitized error near the originals')."""
    header = [f"{attribute} judge", *(f"{OUTPUT_NAMES[name]} error [95% CI]" for name in OUTPUT_NAMES)]
    rows = []
    for group, suffix in (("judges", ""), ("adaptive", " (ADAPTIVE attacker)"), ("identity_leakage", " (bound)")):
        for judge, outputs in section.get(group, {}).items():
            rows.append([judge + suffix, *(
                _percent(outputs[name]["error_rate"], outputs[name].get("error_rate_ci")) if name in outputs else "–"
                for name in OUTPUT_NAMES)])
    return header, rows


ATTACKERS = [
    "Unseen judges (the tables above) never saw a sanitized face: the paper's setting. An ADAPTIVE attacker "
    "owns the sanitizer, runs it over faces whose gender it knows and trains a classifier on the outputs; "
    "it then reads the sanitized database with it. No sanitizer that keeps identity can hide more gender "
    "from it than identity itself reveals: the IDENTITY-LEAKAGE BOUND is the error of a gender classifier "
    "that sees only an independent matcher's identity embedding of the original faces. The sanitizer is as "
    "private as it can be against adaptive attackers when their error reaches that bound; an adaptive error "
    "far below it means the output carries gender cues beyond identity (e.g. a deterministic flip the "
    "attacker learns to invert).",
]


def _matching_table(split_metrics: dict, fmr_targets) -> tuple[list[str], list[list[str]]]:
    header = ["matcher judge", "measure", *OUTPUT_NAMES.values()]
    rows = []
    for judge, outputs in split_metrics["matching"].items():
        for fmr in fmr_targets:
            rows.append([judge, f"TMR at FMR {fmr:g} [95% CI]",
                         *(_percent(outputs[name]["tmr_at_fmr"][f"{fmr:g}"],
                                    outputs[name].get("tmr_at_fmr_ci", {}).get(f"{fmr:g}")) for name in OUTPUT_NAMES)])
        rows.append([judge, "mean genuine / impostor score",
                     *(f"{outputs[name]['genuine_mean']:.3f} / {outputs[name]['impostor_mean']:.3f}"
                       for name in OUTPUT_NAMES)])
        first = outputs["original"]
        rows.append([judge, "pairs (genuine / impostor)", f"{first['genuine_pairs']} / {first['impostor_pairs']}",
                     "", "", ""])
    return header, rows


def _linkability_table(split_metrics: dict, fmr_targets) -> tuple[list[str], list[list[str]]]:
    """Identity suppressed: every matcher's TMR of sanitized probes against the SANITIZED gallery."""
    return (["matcher judge", *(f"TMR at FMR {fmr:g} [95% CI], sanitized vs sanitized" for fmr in fmr_targets)],
            [[judge, *(_percent(values["tmr_at_fmr"][f"{fmr:g}"], values["tmr_at_fmr_ci"].get(f"{fmr:g}"))
                       for fmr in fmr_targets)] for judge, values in split_metrics["linkability"].items()])


def _quality_table(split_metrics: dict) -> tuple[list[str], list[list[str]]]:
    quality = dict(split_metrics["image_quality"])
    if "decryption" in split_metrics:  # obfuscation: the model's second pass over the sanitized face
        quality["decrypted"] = split_metrics["decryption"]
    return (["output", "mean SSIM vs original", "mean PSNR vs original"],
            [[OUTPUT_NAMES.get(name, DECRYPTED), f"{values['ssim']:.3f}", f"{values['psnr']:.1f} dB"]
             for name, values in quality.items()])


def _gate_table(result: dict) -> tuple[list[str], list[list[str]]]:
    return (["threshold", "applied to", "measured", "limit", "margin", "verdict"],
            [[check["threshold"], check["subject"], f"{check['value']:.3f}",
              f"{'>=' if check['at_least'] else '<='} {check['limit']:.3f}", f"{check['margin']:+.3f}",
              "holds" if check["passed"] else "FAILS"] for check in result["gate_checks"]])


def _figure_png(draw) -> bytes:
    figure, axes = plt.subplots(figsize=(4.8, 4.2), dpi=100)
    draw(axes)
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def gender_roc_png(judge: str, outputs: dict, label: str) -> bytes:
    """The paper's Figure 6 for one judge: male classified as male vs female classified as male."""
    def draw(axes):
        axes.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
        for name, values in outputs.items():
            if values["roc"]:
                axes.plot(values["roc"]["fpr"], values["roc"]["tpr"],
                          label=f"{OUTPUT_NAMES[name]} (AUC {values['auc']:.2f})")
        axes.set(xlabel="female classified as male", ylabel="male classified as male", xlim=(0, 1), ylim=(0, 1.01),
                 title=f"gender: {judge}\n{label}")
        axes.title.set_fontsize(9)
    return _figure_png(draw)


def matching_roc_png(judge: str, outputs: dict, label: str) -> bytes:
    """The paper's Figure 7 for one matcher: TMR against FMR (log scale), probe output vs original gallery."""
    def draw(axes):
        for name, values in outputs.items():
            points = [(fpr, tpr) for fpr, tpr in zip(values["roc"]["fpr"], values["roc"]["tpr"]) if fpr > 0]
            if points:
                axes.plot(*zip(*points), label=OUTPUT_NAMES[name])
        axes.set_xscale("log")
        axes.set(xlabel="false match rate", ylabel="true match rate", ylim=(0, 1.01), title=f"matching: {judge}\n{label}")
        axes.title.set_fontsize(9)
    return _figure_png(draw)


def _markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(
        f"<td class='{'fail' if cell == 'FAILS' else ''}'>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tradeoff_section(tradeoff: dict, gate: dict) -> tuple:
    """The report section of the measured trade-off (components/evaluation/tradeoff.py) and its figure."""
    paragraphs = [
        "Whether the sanitizer can hide more gender from unseen judges by changing the faces more: the residual "
        "sanitizer (gender policy, laptop settings) retrained at each setting below and judged by one run's "
        "independent judges. NOT this run's model: measured by "
        f"`{tradeoff['measured_by']}` on {tradeoff['date']} at commit {tradeoff['commit']} ({tradeoff['machine']}); "
        f"data: {tradeoff['data']}.",
        "A point passes when every unseen gender judge's error, every matcher judge's TMR drop, SSIM and the "
        "adaptive attacker's gap to the identity-leakage bound pass this run's gate. Where no point passes, the "
        "targets cannot be met together with these settings; the figure shows how much privacy each point "
        "buys for how much utility.",
        *tradeoff.get("notes", []),
    ]
    caption = ("Privacy against utility over the residual sanitizer's settings (measured trade-off, not this run; "
               f"{tradeoff['data']})")
    figure = tradeoff_png(tradeoff, gate)
    return (("Privacy against utility: the measured trade-off", paragraphs,
             [("Each setting judged by the same judges", *tradeoff_table(tradeoff, gate))]), (caption, figure))


def write_report(result: dict, report_dir: str, tradeoff: dict | None = None) -> dict:
    """Writes index.html, report.md and the figure PNGs into report_dir; returns their paths.
    `tradeoff`: the measured privacy/utility trade-off to show beside the run's figures, if any."""
    label = result["data"]
    figures = {}  # file name -> (caption, png bytes)
    gate_split = result["splits"][result["gate_split"]]
    for group in ("gender", "white_box"):
        for judge, outputs in gate_split[group].items():
            figures[f"roc_gender_{judge}.png"] = (f"Gender ROC of {judge} on the {result['gate_split']} split",
                                                  gender_roc_png(judge, outputs, label))
    for judge, outputs in gate_split["matching"].items():
        figures[f"roc_matching_{judge}.png"] = (f"Matching ROC of {judge} on the {result['gate_split']} split",
                                                matching_roc_png(judge, outputs, label))
    with tf.io.gfile.GFile(result["example_grid"], "rb") as handle:
        grid_png = handle.read()
    grid_name = os.path.basename(result["example_grid"])
    decrypted_row = ("; last row: decrypted, the model applied again to sanitized X' (obfuscation)"
                     if "decryption" in gate_split else "")
    grid_caption = ("Example faces of the test split (columns: up to 4 female then 4 male faces; rows: original, "
                    f"X'_SM, X'_NT, sanitized X'{decrypted_row}), like the paper's Figure 5")

    verdict = "BLESSED (will be pushed)" if result["blessed"] else "NOT BLESSED (will not be pushed)"
    sections = [("Verdict", [f"**{verdict}** by the release gate on the {result['gate_split']} split.",
                             *(f"Failed: {failure}" for failure in result["failed_thresholds"])], [])]
    policy = result.get("privacy_policy") or {}
    sections.append(("Data and judges", [f"Data: {label}.", f"Model: {result['model']}.",
                                         f"Privacy policy: {policy.get('name', 'gender')} (suppress "
                                         f"{', '.join(policy.get('suppress', ['Male']))}; preserve "
                                         f"{', '.join(policy.get('preserve', ['identity']))}).",
                                         *(f"Judge {name} ({info['kind']}): {info['description']}."
                                           for name, info in result["judges"].items())], []))
    for split, metrics in result["splits"].items():
        sections.append((f"Split {split}: {metrics['num_examples']} faces, {metrics['num_identities']} identities, "
                         f"{metrics['num_male']} male", [], [
                             ("Gender error rate per judge, before (original) and after perturbation (paper Table 2)",
                              *_gender_table(metrics)),
                             ("Face matching, probe vs original gallery (paper Table 3)",
                              *_matching_table(metrics, result["fmr_targets"])),
                             ("Image quality against the original", *_quality_table(metrics)),
                             *([("Linkability (identity suppressed): can two sanitized photos of one person "
                                 "still be linked to each other?", *_linkability_table(metrics, result["fmr_targets"]))]
                               if metrics.get("linkability") else []),
                             *([("Adaptive attacker and identity-leakage bound", *_attacker_table(metrics))]
                               if metrics.get("adaptive") or metrics.get("identity_leakage") else []),
                             *((f"{attribute} ({section['role']} by the privacy policy; "
                                f"{100 * section['positive_share']:.1f}% of the faces have it)",
                                *_policy_attribute_table(attribute, section))
                               for attribute, section in metrics.get("attributes", {}).items()
                               if attribute != GENDER)]))
    sections.append(("Release gate", [*([result["kept"]] if result.get("kept") else []),
                                      f"Thresholds: {result['gate']}."], [("Checks", *_gate_table(result))]))
    if tradeoff is not None:
        section, figures[TRADEOFF_FIGURE] = tradeoff_section(tradeoff, result["gate"])
        sections.append(section)
    sections.append(("What the numbers mean", MEANING + ATTACKERS, []))

    for name, (_, png) in figures.items():
        with tf.io.gfile.GFile(os.path.join(report_dir, name), "wb") as handle:
            handle.write(png)
    title = "facesan evaluation report"
    markdown = [f"# {title}", "", f"> {label}", ""]
    body = [f"<h1>{title}</h1>", f"<p class='data'>{html.escape(label)}</p>"]
    for heading, paragraphs, tables in sections:
        markdown += [f"## {heading}", ""] + [f"{p}  " for p in paragraphs] + [""]
        body += [f"<h2>{html.escape(heading)}</h2>"] + [
            f"<p>{html.escape(p).replace('**', '')}</p>" for p in paragraphs]
        for caption, header, rows in tables:
            markdown += [f"**{caption}**", "", _markdown_table(header, rows), ""]
            body += [f"<h3>{html.escape(caption)}</h3>", _html_table(header, rows)]
    markdown += ["## Figures", ""]
    body += ["<h2>Figures</h2>"]
    for name, (caption, png) in [(grid_name, (grid_caption, grid_png)), *figures.items()]:
        if name != TRADEOFF_FIGURE:  # the trade-off names its own data
            caption = f"{caption}. {label}"
        markdown += [f"![{caption}]({name})", "", f"*{caption}.*", ""]
        encoded = base64.b64encode(png).decode("ascii")
        body.append(f"<figure><img src='data:image/png;base64,{encoded}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}.</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
             "font-size:90%}th{background:#eee}.fail{color:#b00;font-weight:bold}.data{background:#fff3cd;"
             "padding:.5em;border:1px solid #e0c060}figure{display:inline-block;margin:1em}"
             "img{image-rendering:pixelated;max-width:100%}")
    document = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
                f"</head><body>{''.join(body)}</body></html>")
    paths = {"html": os.path.join(report_dir, HTML_FILE), "markdown": os.path.join(report_dir, MARKDOWN_FILE)}
    with tf.io.gfile.GFile(paths["html"], "w") as handle:
        handle.write(document)
    with tf.io.gfile.GFile(paths["markdown"], "w") as handle:
        handle.write("\n".join(markdown))
    return {**paths, "figures": [os.path.join(report_dir, name) for name in figures]}
