"""Rich tables for the CLI's results (the numbers come from the library)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
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


def aligned(headers, rows, right) -> list[str]:
    """Fixed-width text columns. A rich Table measures every cell (about 0.5 s for
    DenseNet-121's 600 rows); this takes milliseconds and reads the same."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), "  ".join("─" * w for w in widths)] + [line(r) for r in rows]


def summary_table(s: dict, console: Console, depth: int | None = None) -> None:
    headers = ["layer", "type", "output", "params", "MACs", "RF size", "jump", "start"]
    target = s.get("rf_target")
    if target:  # Wu's convention, labelled apart from the forward receptive field
        headers.append(f"input extent for one {target} unit")
    rows = []
    for r in s["layers"]:
        if depth is not None and r["depth"] > depth:
            continue
        row = ["  " * r["depth"] + r["name"], r["type"], _shape(r["output_shape"]),
               _count(r["params"]), _count(r["macs"]), _shape(r["receptive_field"]),
               _shape(r["jump"]), _start(r["start"])]
        if target:
            row.append(_shape(r["extent_to_target"]) if "extent_to_target" in r else "")
        rows.append(row)
    lines = aligned(headers, rows, right=set(range(2, len(headers))))
    console.print(f"[bold]input {_shape(s['input_shape'])} → output {_shape(s['output_shape'])}"
                  f"[/bold]")
    console.print(lines[0], style="bold", highlight=False, soft_wrap=True)
    console.print("\n".join(lines[1:]), highlight=False, soft_wrap=True)
    totals = [("parameters", _count(s["total_params"])),
              ("trainable", _count(s["trainable_params"])),
              ("MACs per sample", _count(s["total_macs"])),
              ("FLOPs per sample (2·MACs)", _count(s["total_flops"]))]
    if "memory" in s:
        m = s["memory"]
        totals.append((f"memory per batch of {m['batch_size']} (estimate)", ""))
        for key in ("parameters", "gradients", "optimizer", "activations", "peak"):
            label = "  activations kept for backward" if key == "activations" else f"  {key}"
            totals.append((label, _bytes(m[f"{key}_bytes"])))
    width = max(len(k) for k, _ in totals)
    console.print("\n" + "\n".join(f"{k.ljust(width)}  {v}" for k, v in totals), highlight=False)


def eval_tables(m: dict, console: Console, title: str) -> None:
    # The title holds a path: printed on its own line it may run past the terminal's edge,
    # but it is never broken mid-word as a table title would be (a path stays copyable).
    console.print(title, soft_wrap=True, highlight=False, markup=False)
    head = Table(show_header=False)
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
    raw = bool(results) and "output" in results[0]["top"][0]  # an array's raw outputs
    t.add_column("top classes (output)" if raw else "top classes (probability)")
    for r in results:
        t.add_row(r["image"], ", ".join(f"{p['class']} ({p['output']:.4g})" if raw else
                                        f"{p['class']} ({p['probability']:.1%})" for p in r["top"]))
    console.print(t)


def _start(values) -> str:
    """One number when every axis agrees (the usual square case)."""
    return f"{values[0]:g}" if len(set(values)) == 1 else ",".join(f"{v:g}" for v in values)


def gradcheck_table(rows, console: Console) -> None:
    t = Table(title="gradient check (float64, central differences)")
    for col, just in (("layer", "left"), ("parameter", "left"), ("checked", "right"),
                      ("non-zero", "right"), ("max relative error", "right"), ("", "left")):
        t.add_column(col, justify=just)
    for r in rows:
        verdict = "[red]FAIL[/red]" if not r.passed else \
            "[yellow]zero gradient: nothing verified[/yellow]" if r.nonzero == 0 else \
            "[green]pass[/green]"
        t.add_row(r.layer, r.parameter, str(r.checked), str(r.nonzero),
                  f"{r.max_rel_error:.2e}", verdict)
    console.print(t)


def hessian_table(r: dict, console: Console) -> None:
    t = Table(title=f"{r['matrix'].replace('_', '-')} of the loss on {r['batch_size']} images "
                    f"({r['parameters']:,} parameters)", show_header=False)
    for i, ev in enumerate(r["top_eigenvalues"], 1):
        t.add_row(f"eigenvalue {i}", f"{ev:.6g}")
    t.add_row("trace (Hutchinson)", f"{r['trace']:.6g} ± {r['trace_stderr']:.2g}")
    t.add_row("Lanczos steps / trace probes", f"{r['lanczos_steps']} / {r['trace_samples']}")
    console.print(t)


def bench_tables(r: dict, console: Console) -> None:
    k = r.get("processes", 1)
    cut = (f", cut over {k} processes (layers: one process's {r['layer_batch']} samples)"
           if k > 1 else "")
    t = Table(title=f"{r['config']}: batch {r['batch_size']}, {r['steps']} steps, {r['dtype']}, "
                    f"{r['backend']}{cut}")
    for col in ("layer", "type", "forward ms", "backward ms", "share"):
        t.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for row in r["layers"]:
        t.add_row(row["name"], row["type"], f"{row['forward_ms']:.3f}", f"{row['backward_ms']:.3f}",
                  f"{row['share']:.1%}")
    console.print(t)
    totals = Table(show_header=False, box=None)
    totals.add_row("training", f"{r['train_step_ms']:.2f} ms/step, {r['train_images_per_s']:,.0f} "
                               f"images/s, {r['train_gflops']:.1f} GFLOP/s")
    totals.add_row("inference", f"{r['infer_ms']:.2f} ms/batch, {r['infer_images_per_s']:,.0f} "
                                f"images/s, {r['infer_gflops']:.1f} GFLOP/s")
    totals.add_row("peak resident memory", f"{r['peak_rss_mb']:.0f} MiB")
    if r["blas"]:  # the NumPy engine's (bench.py)
        from ..ops.blas import describe
        totals.add_row("BLAS", describe(r["blas"]))
    console.print(totals)
    if r["blas"] and r["blas"]["note"]:
        console.print(f"[yellow]note:[/] {escape(r['blas']['note'])}")
    if r.get("profile"):
        profile_table(r["profile"], console)


def profile_table(rows: list[dict], console: Console, top: int = 15) -> None:
    """The leaf profile of a training step (profile.LeafProfile): the costliest kinds of
    leaf, the others folded into one row, and the time outside the leaves."""
    t = Table(title="per training step, leaf layers alike summed", show_edge=False)
    for col in ("type", "weight", "input", "n", "fwd ms", "bwd ms", "ms", "share"):
        t.add_column(col, justify="left" if col in ("type", "weight", "input") else "right",
                     no_wrap=True)
    leaves, outside = rows[:-1], rows[-1]
    folded = leaves[top:]
    for row in leaves[:top]:
        t.add_row(row["type"], _shape(row["weight"] or ()), _shape(row["input"]),
                  f"{row['calls']:g}",
                  f"{row['forward_ms']:.2f}", f"{row['backward_ms']:.2f}",
                  f"{row['total_ms']:.2f}", f"{row['share']:.1%}")
    if folded:
        t.add_row(f"{len(folded)} more", "", "", "", f"{sum(r['forward_ms'] for r in folded):.2f}",
                  f"{sum(r['backward_ms'] for r in folded):.2f}",
                  f"{sum(r['total_ms'] for r in folded):.2f}",
                  f"{sum(r['share'] for r in folded):.1%}")
    t.add_row("outside leaves", "", "", "", "", "", f"{outside['total_ms']:.2f}",
              f"{outside['share']:.1%}")
    console.print(t)


def runs_table(rows: list[dict], console: Console, root) -> None:
    if not rows:
        console.print(f"no runs under {root} (train one with 'cnnrun train CONFIG')")
        return
    table = Table(title=f"runs under {root}")
    for col in ("name", "date", "epochs", "best", "checkpoint"):
        table.add_column(col, justify="right" if col in ("epochs", "best") else "left",
                         no_wrap=col != "checkpoint", overflow="fold")
    for r in rows:
        best = "—" if r["best"] is None else f"{r['best']:.2%}"
        if r["best"] is not None:  # the score of the epoch the best checkpoint holds
            notes = (["test"] if r["best_metric"] != "val_accuracy" else []) + \
                ([f"epoch {r['best_epoch']}"] if r.get("best_epoch") else []) + \
                ([f"by {r['chosen_by']}"] if r.get("chosen_by") else [])
            best += f" ({', '.join(notes)})" if notes else ""
        table.add_row(r["name"], r["date"], str(r["epochs"]), best, r["checkpoint"] or "—")
    console.print(table)


def neighbours_table(rows: list[dict], console: Console, layer: str) -> None:
    table = Table(title=f"nearest training images in the space of {layer}")
    table.add_column("query", justify="right")
    table.add_column("label")
    table.add_column("neighbours: training image #index label (distance)")
    for r in rows:
        near = ", ".join(f"#{n['train_index']} {n['label']} ({n['distance']:.2f})"
                         for n in r["nearest"])
        table.add_row(str(r["query"]), r["label"], near)
    console.print(table)


def summary_text(model, train_cfg, width: int = 150) -> str:
    """The summary table as plain text (TensorBoard's view of the model)."""
    import io
    from ..tools.summary import summarize
    text = io.StringIO()
    summary_table(summarize(model, train_cfg), Console(file=text, width=width))
    return text.getvalue()


def progress_bar(quiet: bool):
    """A context giving a step(phase, i, n) callback that drives a rich bar (or None)."""
    import sys
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        if quiet or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import Progress
        with Progress(transient=True) as bar:
            tasks = {}

            def step(phase, i, n):
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=n)
                bar.update(tasks[phase], completed=i)
            yield step
    return ctx()
