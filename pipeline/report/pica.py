"""The PICA study's table (markdown and LaTeX) and figure (each environment's projection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.figures import plt, save, sns
from pipeline.report.tables import tex_escape
from pipeline.terminal import TEX_PM, pm

METHOD_NAMES = {"pica": "PICA (configured rule)", "pica_source_rule": "PICA (source's rule: "
                "signed, 1%)", "pca": "PCA (baseline)"}


def synthetic_summary(rows: list[dict]) -> list[dict]:
    """Per method: |cos| with the invariant direction (mean, std, min, draws < 0.99) and the
    mean std of the projection in each environment."""
    out = []
    for method in ("pica", "pica_source_rule", "pca"):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        cos = np.array([r["cosine"] for r in mine])
        stds = np.array([r["env_std"] for r in mine]).mean(0)
        out.append({"method": method, "reps": len(mine), "cos_mean": float(cos.mean()),
                    "cos_std": float(cos.std()), "cos_min": float(cos.min()),
                    "missed": int((cos < 0.99).sum()), "env_std": stds.tolist()})
    return out


def _data_label(image: dict, name: str) -> str:
    reduced = " (REDUCED)" if image.get("reduced") else ""
    return f"{name}{reduced}"


def _caption(result: dict) -> str:
    s = result["settings"]
    data = ", ".join(f"{_data_label(img, name)} from {img.get('source')}"
                     for name, img in result["images"].items())
    return (f"PICA (Yotamnor/UIRM PICA/PICA.py): tolerance {s['tolerance']:g}, threshold "
            f"{s['threshold']} (the tolerance chosen on other draws of the synthetic case; the "
            "source's is 0.01); synthetic: the source's case, "
            f"{s['synthetic_reps']} seeded draws "
            f"(seed {s['seed']}), |cos| with the invariant direction [1, 1, 2]/sqrt(6). Pixels: "
            f"{data or 'none'}; PICA and PCA fitted on the training environments without labels, "
            "a logistic-regression probe (L2 "
            f"{s['probe_l2']:g}) fitted on their labels. No model selection: every setting is "
            "fixed; no test data is used to fit or choose anything.")


def _env_order(result: dict) -> list[str]:
    """The environments, training ones first (results store them sorted by name)."""
    roles = {env: v["role"] for img in result["images"].values()
             for env, v in img["figure"]["envs"].items()}
    return sorted(roles, key=lambda env: (roles[env] != "train", env))


def image_frame(result: dict) -> pd.DataFrame:
    """One row per dataset and probe: accuracy (%) per environment, training ones first."""
    records = []
    for name, image in result["images"].items():
        for row in image["rows"]:
            records.append({"dataset": _data_label(image, name), "projection": row["projection"],
                            "dims": row["dims"], **{k: 100 * v for k, v in row["acc"].items()}})
    return pd.DataFrame(records, columns=["dataset", "projection", "dims", *_env_order(result)])


def pica_markdown(result: dict) -> str:
    lines = ["| synthetic | draws | mean \\|cos\\| | min | draws < 0.99 | projection std per env |",
             "|---|---|---|---|---|---|"]
    for s in synthetic_summary(result["synthetic"]):
        stds = " / ".join(f"{v:.2f}" for v in s["env_std"])
        lines.append(f"| {METHOD_NAMES[s['method']]} | {s['reps']} | "
                     f"{pm(s['cos_mean'], s['cos_std'], 4)} | {s['cos_min']:.4f} | "
                     f"{s['missed']} | {stds} |")
    frame = image_frame(result)
    if len(frame):
        envs = [c for c in frame.columns if c not in ("dataset", "projection", "dims")]
        lines += ["", "| data | probe on | dims | " + " | ".join(f"{e} %" for e in envs) + " |",
                  "|---|---|---|" + "---|" * len(envs)]
        for _, r in frame.iterrows():
            lines.append(f"| {r['dataset']} | {r['projection']} | {r['dims']} | "
                         + " | ".join(f"{r[e]:.1f}" for e in envs) + " |")
    return "\n".join(lines) + "\n\n" + _caption(result) + "\n"


def pica_latex(result: dict, label: str = "tab:pica") -> str:
    frame = image_frame(result)
    envs = [c for c in frame.columns if c not in ("dataset", "projection", "dims")]
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{l r r r}", "\\toprule",
             "Synthetic & draws & mean $|\\cos|$ & draws $<0.99$ \\\\", "\\midrule"]
    for s in synthetic_summary(result["synthetic"]):
        name = tex_escape(METHOD_NAMES[s["method"]])
        lines.append(f"{name} & {s['reps']} & "
                     f"{s['cos_mean']:.4f} {TEX_PM} {s['cos_std']:.4f} & {s['missed']} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if len(frame):
        lines += ["", "\\vspace{0.5em}",
                  "\\begin{tabular}{l l r " + "r " * len(envs) + "}", "\\toprule",
                  "Data & probe on & dims & "
                  + " & ".join(tex_escape(e) for e in envs) + " \\\\", "\\midrule"]
        for _, r in frame.iterrows():
            data = tex_escape(r["dataset"])
            lines.append(f"{data} & {r['projection']} & "
                         f"{r['dims']} & " + " & ".join(f"{r[e]:.1f}" for e in envs) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
    caption = tex_escape(_caption(result))
    lines += [f"\\caption{{{caption}}}", f"\\label{{{label}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def projection_figure(result: dict, path: Path | str) -> list[Path]:
    """Figure 11: each environment projected on PICA's first direction (top) and PCA's (bottom),
    the synthetic case's first draw and every dataset, as in UIRM's PICA figure."""
    panels = [("synthetic (UIRM's case, draw 0)", result["synthetic_figure"])]
    panels += [(_data_label(img, name), img["figure"]["envs"])
               for name, img in result["images"].items()]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.4 * len(panels), 5.0), squeeze=False)
    for col, (title, envs) in enumerate(panels):
        for row, kind in enumerate(("pica", "pca")):
            ax = axes[row][col]
            order = sorted(envs, key=lambda env: (envs[env]["role"] != "train", env))
            labels = {env: f"{env} (std {np.std(envs[env][kind]):.2f})" for env in order}
            frame = pd.DataFrame([{"environment": labels[env], "projection": value}
                                  for env in order for value in envs[env][kind]])
            sns.histplot(data=frame, x="projection", hue="environment", stat="density",
                         hue_order=[labels[e] for e in order], common_norm=False,
                         element="step", fill=False, bins=40, ax=ax)
            legend = ax.get_legend()
            if legend is not None:
                legend.set_title(None)
                for text in legend.get_texts():
                    text.set_fontsize(6)
            ax.set_title(f"{title}\n{'PICA' if kind == 'pica' else 'PCA'}: first direction",
                         fontsize=8)
            ax.set_xlabel("projection", fontsize=8)
    s = result["settings"]
    fig.suptitle("PICA: each environment's projection on the first principal invariant\n"
                 f"direction (top; tolerance {s['tolerance']:g}, {s['threshold']}) and PCA's "
                 "(bottom);\nfitted on the training environments without labels; no selection",
                 fontsize=9)
    return save(fig, path)
