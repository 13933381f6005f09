"""The state tree: parameters and buffers as nested dicts that mirror the containers, and the
one walker over a layer tree.

A network's state is ``{"layer1": {"0": {"conv1": {"weight": …}}}}``; ``flatten`` gives the
dotted view (``layer1.0.conv1.weight``) that optimizers and checkpoints use, sharing the
same arrays. Every question of the form "for each leaf layer, …" (its parameters' owners,
the trainable shapes, the penalty, the profile's rows) goes through ``leaves``, so there is
one definition of how containers nest.
"""

from __future__ import annotations

import fnmatch


def flatten(nested: dict, prefix: str = "") -> dict:
    flat = {}
    for key, val in nested.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict):
            flat.update(flatten(val, name + "."))
        else:
            flat[name] = val
    return flat


def unflatten(flat: dict) -> dict:
    nested: dict = {}
    for name, val in flat.items():
        *path, leaf = name.split(".")
        node = nested
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = val
    return nested


def map_tree(nested: dict, fn) -> dict:
    """The same tree with ``fn`` applied to every array."""
    return {k: map_tree(v, fn) if isinstance(v, dict) else fn(v) for k, v in nested.items()}


def node_at(state: dict, path) -> dict:
    """The sub-tree at a dotted name or a tuple of keys ({} where there is none)."""
    for key in path.split(".") if isinstance(path, str) else path:
        state = state.get(key, {})
    return state


def leaves(layer, in_shape, prefix: str = "", through=None):
    """(dotted name, leaf layer, its input shape) of every leaf, depth-first.

    ``through``: container types to descend into; a leaf below any other container makes
    the walk stop with ``None`` in place of that container's leaves' names (see
    ``sequential_leaves``)."""
    children = getattr(layer, "child_inputs", None)
    if children is None:
        yield prefix.rstrip("."), layer, in_shape
        return
    if through is not None and layer.type not in through:
        yield None, layer, in_shape
        return
    for name, child, shape in children(in_shape):
        yield from leaves(child, shape, f"{prefix}{name}.", through)


def sequential_leaves(root, in_shape) -> list | None:
    """The leaves in order when the network is one chain (only ``sequential`` containers),
    else None: a branching block has no single chain."""
    found = list(leaves(root, in_shape, through=("sequential",)))
    return None if any(name is None for name, _, _ in found) else found


def trainable_shapes(layer, in_shape) -> dict:
    """Nested dict of the trainable parameters' shapes."""
    out = {}
    for name, leaf, shape in leaves(layer, in_shape):
        if leaf.has_trainable():
            for key, s in leaf.param_shapes(shape).items():
                out[f"{name}.{key}" if name else key] = s
    return unflatten(out)


def param_owner_types(layer, in_shape) -> dict[str, str]:
    """Dotted parameter name → the type of the leaf layer that owns it (for no-decay groups)."""
    return {f"{name}.{key}" if name else key: leaf.type
            for name, leaf, shape in leaves(layer, in_shape) for key in leaf.param_shapes(shape)}


def name_matches(name: str, pattern: str) -> bool:
    """A config's name pattern (``lr_mult``, ``no_decay``): a glob on the dotted name, which
    also takes everything below it (``layer1`` matches ``layer1.0.conv1.weight``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")
