"""Rich tables for the CLI's results (the numbers come from the library)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _shape(s) -> str:
    return "×".join(map(str, s))


def _count(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"


def summary_table(s: dict, console: Console, depth: int | None = None) -> None:
    t = Table(title=f"input {_shape(s['input_shape'])} → output {_shape(s['output_shape'])}")
    for col, just in (("layer", "left"), ("type", "left"), ("output", "right"),
                      ("params", "right"), ("MACs", "right"), ("RF size", "right"),
                      ("jump", "right"), ("start", "right")):
        t.add_column(col, justify=just)
    for r in s["layers"]:
        if depth is not None and r["depth"] > depth:
            continue
        indent = "  " * r["depth"]
        t.add_row(indent + r["name"], r["type"], _shape(r["output_shape"]), _count(r["params"]),
                  _count(r["macs"]), _shape(r["receptive_field"]), _shape(r["jump"]),
                  _start(r["start"]))
    console.print(t)
    totals = Table(show_header=False, box=None)
    totals.add_row("parameters", _count(s["total_params"]))
    totals.add_row("trainable", _count(s["trainable_params"]))
    totals.add_row("MACs per sample", _count(s["total_macs"]))
    totals.add_row("FLOPs per sample (2·MACs)", _count(s["total_flops"]))
    if "memory" in s:
        m = s["memory"]
        totals.add_row(f"memory per batch of {m['batch_size']} (estimate)", "")
        for key in ("parameters", "gradients", "optimizer", "activations", "peak"):
            label = "  activations kept for backward" if key == "activations" else f"  {key}"
            totals.add_row(label, _bytes(m[f"{key}_bytes"]))
    console.print(totals)


def eval_tables(m: dict, console: Console, title: str) -> None:
    head = Table(title=title, show_header=False)
    head.add_row("images", _count(m["count"]))
    head.add_row("loss", f"{m['loss']:.4f}")
    head.add_row("top-1 accuracy", f"{m['accuracy']:.2%}")
    head.add_row("top-5 accuracy", f"{m['top5']:.2%}")
    console.print(head)
    per = Table(title="per class")
    per.add_column("class")
    per.add_column("accuracy", justify="right")
    for cls, acc in m["per_class"].items():
        per.add_row(cls, f"{acc:.2%}")
    console.print(per)
    conf = Table(title="confusion (rows: true, columns: predicted)")
    names = list(m["per_class"])
    conf.add_column("")
    for n in names:
        conf.add_column(n[:8], justify="right")
    for n, row in zip(names, m["confusion"]):
        conf.add_row(n[:12], *[str(v) if v else "·" for v in row])
    console.print(conf)


def layers_table(rows: list[dict], console: Console) -> None:
    t = Table(title="layer types")
    t.add_column("type")
    t.add_column("fields (default)")
    t.add_column("what it computes")
    for r in rows:
        t.add_row(r["type"], ", ".join(r["fields"]), r["doc"])
    console.print(t)


def predictions_table(results: list[dict], console: Console) -> None:
    t = Table(title="predictions")
    t.add_column("image")
    t.add_column("top classes (probability)")
    for r in results:
        t.add_row(r["image"], ", ".join(f"{p['class']} ({p['probability']:.1%})" for p in r["top"]))
    console.print(t)


def _start(values) -> str:
    """One number when every axis agrees (the usual square case)."""
    return f"{values[0]:g}" if len(set(values)) == 1 else ",".join(f"{v:g}" for v in values)
