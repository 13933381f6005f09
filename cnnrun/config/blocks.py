"""Reusable, parameterised blocks: a config's ``blocks:`` templates, expanded before validation.

    blocks:
      bottleneck:
        params: {width: 64, stride: 1, downsample: false}   # defaults
        layer: {type: residual, body: [...], shortcut: [{if: $downsample, ...}]}
    model:
      layers:
        - {use: bottleneck, name: layer1, repeat: 3, width: 64, first: {downsample: true}}

A use with ``repeat: N`` becomes a ``sequential`` named ``name`` whose children
are the N copies, named by ``names`` ("{i}" by default: 0, 1, …; "{n}" counts
from 1), so parameters read ``layer1.0.conv1.weight``. ``first`` overrides
parameters of the first copy only (the stride and projection of a ResNet
stage). Inside a template, a value ``$p`` is parameter p, ``${expr}`` is
arithmetic on parameters (+ − * / // % and parentheses; no other code runs),
and a list item with ``if: $p`` is kept only when p is true.
"""

from __future__ import annotations

import ast
import copy
import operator
import re

from ..errors import UserError

_FULL = re.compile(r"^\$(\w+)$|^\$\{(.+)\}$")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


MOST_VALUE = 10 ** 15  # beyond any size or count a layer can have
MOST_REPEAT = 10_000  # copies of one block (ResNet-1001 has 111 per stage)
NAME_PATTERN = re.compile(r"[^{}]*(?:\{[in]\}[^{}]*)*")  # only {i} and {n}, no attributes


def _bounded(v):
    if isinstance(v, (int, float)) and abs(v) > MOST_VALUE:
        raise UserError(f"a block expression gives {v:.3g}, beyond any size a layer can have.")
    return v


def arithmetic(expr: str, params: dict, where: str):
    """The value of a small arithmetic expression over the parameters (an AST whitelist)."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in params:
                raise UserError(f"{where}: unknown block parameter {node.id!r} in ${{{expr}}}; "
                                f"parameters: {', '.join(params)}.")
            v = params[node.id]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                # a list or a string times 2·10⁹ would fill the memory: numbers only
                raise UserError(f"{where}: ${{{expr}}}: parameter {node.id!r} is {v!r}, not a "
                                f"number; arithmetic takes numbers only.")
            return v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _bounded(_OPS[type(node.op)](value(node.left), value(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _bounded(_OPS[type(node.op)](value(node.operand)))
        raise UserError(f"{where}: ${{{expr}}} may use numbers, parameters, + − * / // % and "
                        f"parentheses only.")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise UserError(f"{where}: ${{{expr}}} is not an arithmetic expression.") from e
    result = value(tree.body)
    return int(result) if isinstance(result, float) and result.is_integer() else result


def substitute(node, params: dict, where: str):
    if isinstance(node, str):
        m = _FULL.match(node)
        if not m:
            return node
        if m.group(1):
            if m.group(1) not in params:
                raise UserError(f"{where}: unknown block parameter ${m.group(1)}; parameters: "
                                f"{', '.join(params)}.")
            return copy.deepcopy(params[m.group(1)])
        return arithmetic(m.group(2), params, where)
    if isinstance(node, list):
        out = []
        for item in node:
            if isinstance(item, dict) and "if" in item:
                if not substitute(item["if"], params, where):
                    continue
                item = {k: v for k, v in item.items() if k != "if"}
            out.append(substitute(item, params, where))
        return out
    if isinstance(node, dict):
        return {k: substitute(v, params, where) for k, v in node.items()}
    return node


USE_KEYS = {"use", "name", "repeat", "first", "names"}


def expand(data: dict) -> dict:
    """The config with every ``use`` replaced by its expanded layers, ``blocks`` removed."""
    blocks = data.pop("blocks", None) or {}
    if not isinstance(blocks, dict):
        raise UserError("blocks: must map block names to {params, layer} templates.")
    return _walk(data, blocks, "")


def _walk(node, blocks, where):
    if isinstance(node, list):
        return [_walk(_expand_use(item, blocks, f"{where}[{i}]") if _is_use(item) else item,
                      blocks, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {k: _walk(v, blocks, f"{where}.{k}" if where else k) for k, v in node.items()}
    return node


def _is_use(item) -> bool:
    return isinstance(item, dict) and "use" in item


def _expand_use(item: dict, blocks: dict, where: str):
    name = item["use"]
    if name not in blocks:
        raise UserError(f"{where}: unknown block {name!r}; defined blocks: "
                        f"{', '.join(blocks) or 'none (add a top-level blocks: section)'}.")
    template = blocks[name]
    if not isinstance(template, dict) or "layer" not in template:
        raise UserError(f"blocks.{name}: a template needs 'layer' (and optional 'params').")
    defaults = dict(template.get("params") or {})
    given = {k: v for k, v in item.items() if k not in USE_KEYS}
    unknown = set(given) - set(defaults)
    if unknown:
        raise UserError(f"{where}: block {name!r} has no parameter "
                        f"{', '.join(sorted(unknown))}; its parameters: {', '.join(defaults)}.")
    repeat = item.get("repeat")
    if repeat is None:
        layer = substitute(template["layer"], {**defaults, **given}, f"blocks.{name}")
        return {**layer, **({"name": item["name"]} if "name" in item else {})}
    pattern = item.get("names", "{i}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MOST_REPEAT:
        raise UserError(f"{where}.repeat: {repeat!r}; give a whole number from 1 to "
                        f"{MOST_REPEAT:,}.")
    if not isinstance(pattern, str) or not NAME_PATTERN.fullmatch(pattern):
        raise UserError(f"{where}.names: {pattern!r}; a name pattern may use {{i}} (from 0) "
                        f"and {{n}} (from 1) only, e.g. 'denselayer{{n}}'.")
    copies = []
    for i in range(repeat):
        params = {**defaults, **given, **(item.get("first") or {} if i == 0 else {}), "index": i}
        layer = substitute(template["layer"], params, f"blocks.{name}")
        copies.append({**layer, "name": pattern.format(i=i, n=i + 1)})
    return {"type": "sequential", **({"name": item["name"]} if "name" in item else {}),
            "layers": copies}
