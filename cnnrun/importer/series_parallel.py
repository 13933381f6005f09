"""The DAG from input to output cut into containers: series-parallel decomposition.

Walking from a tensor, a node with one input is the next layer of the sequence. Where a tensor
feeds several nodes (a fork), the branches must meet again at the fork's immediate
post-dominator, the first node every path from the fork passes through, and that node must be
a merge: ``Add``/``Sum`` of two branches (a ``residual``: the longer branch its body, the other
its shortcut, empty for the identity) or ``Concat`` on channels (``concat``, or ``dense`` when
the first branch is the fork's own tensor and there is one other). Each branch is then cut the
same way inside its own nodes. A branch that leaks into another (a tensor used outside it)
makes the graph not series-parallel, and the merge is named in the refusal.
"""

from __future__ import annotations

from .ir import IR, Node


def is_merge(ir: IR, node: Node) -> bool:
    return node.op in ("Add", "Sum", "Concat") and len(ir.data_inputs(node)) >= 2


class Decomposer:
    def __init__(self, ir: IR):
        self.ir = ir
        self.consumers = ir.consumers()
        self.producer = ir.producer()
        self.order = {n.output: i for i, n in enumerate(ir.nodes)}

    def run(self) -> list[dict]:
        return self.sequence(self.ir.input, self.ir.output, set(self.order))

    def sequence(self, t: str, stop: str, region: set[str]) -> list[dict]:
        layers: list[dict] = []
        while t != stop:
            nxt = [n for n in self.consumers.get(t, []) if n.output in region]
            if len(nxt) == 1 and not is_merge(self.ir, nxt[0]):
                layers.extend(nxt[0].layers)
                t = nxt[0].output
                continue
            if not nxt:
                raise self.ir.refuse(self.producer.get(t, Node("Input", t, (), t)),
                                     "its output never reaches the graph's output")
            merge = self.merge_after(t, stop, region)
            layers.append(self.container(t, merge, region))
            t = merge.output
        return layers

    def reach(self, t: str, region: set[str], avoid: str | None = None) -> set[str]:
        """Outputs of the nodes reachable from tensor ``t`` inside ``region``."""
        seen, todo = set(), [t]
        while todo:
            for n in self.consumers.get(todo.pop(), []):
                if n.output in region and n.output != avoid and n.output not in seen:
                    seen.add(n.output)
                    todo.append(n.output)
        return seen

    def merge_after(self, t: str, stop: str, region: set[str]) -> Node:
        """The fork's immediate post-dominator: the first node (in topological order) that
        every path from ``t`` to ``stop`` passes through."""
        for out in sorted(self.reach(t, region), key=self.order.get):
            if stop not in self.reach(t, region, avoid=out):
                node = self.producer[out]
                if is_merge(self.ir, node):
                    return node
                break
        raise self.ir.refuse(self.consumers[t][0], f"the branches leaving '{t}' do not meet "
                                                   f"again at one Add or Concat",
                             "cnnrun's containers are series-parallel.")

    def container(self, t: str, merge: Node, region: set[str]) -> dict:
        inside = self.reach(t, region, avoid=merge.output)
        branches = [self.branch(t, u, inside) for u in self.ir.data_inputs(merge)]
        used = set().union(*branches)
        if len(used) != sum(map(len, branches)) or used != inside:
            raise self.ir.refuse(merge, "its branches share or leak tensors (the graph is not "
                                        "series-parallel here)",
                                 "cnnrun's containers are series-parallel.")
        for u, nodes in zip(self.ir.data_inputs(merge), branches):
            self.check_closed(nodes, u, merge)
        lists = [self.sequence(t, u, nodes) if nodes else [] for u, nodes in
                 zip(self.ir.data_inputs(merge), branches)]
        return self.join(merge, lists, [u == t for u in self.ir.data_inputs(merge)])

    def branch(self, t: str, u: str, inside: set[str]) -> set[str]:
        """The nodes on paths from ``t`` to ``u``: ancestors of ``u`` reachable from ``t``."""
        if u == t:
            return set()
        seen, todo = {u}, [u]
        while todo:
            for i in self.ir.data_inputs(self.producer[todo.pop()]):
                if i in inside and i not in seen:
                    seen.add(i)
                    todo.append(i)
        return seen

    def check_closed(self, nodes: set[str], u: str, merge: Node) -> None:
        for out in nodes:
            for user in self.consumers.get(out, []):
                if user.output not in nodes and not (out == u and user is merge):
                    raise self.ir.refuse(merge, f"'{out}' inside one of its branches is also "
                                                f"read by '{user.name}' outside it",
                                         "cnnrun's containers are series-parallel.")

    def join(self, merge: Node, lists: list[list[dict]], empty: list[bool]) -> dict:
        ir = self.ir
        if merge.op == "Concat":
            if merge.attr("axis", 1) % len(ir.shapes[merge.output]) != 1:
                raise ir.refuse(merge, f"it concatenates along axis {merge.attr('axis')}",
                                "cnnrun concatenates channels (axis 1).")
            if len(lists) == 2 and empty == [True, False]:
                return {"type": "dense", "body": lists[1], "_node": merge.name}
            return {"type": "concat", "branches": lists, "_node": merge.name}
        if len(lists) != 2:
            raise ir.refuse(merge, f"it adds {len(lists)} tensors",
                            "cnnrun's residual adds two.")
        if all(empty):
            raise ir.refuse(merge, "it adds a tensor to itself")
        body, shortcut = sorted(lists, key=len, reverse=True)
        return {"type": "residual", "body": body, "shortcut": shortcut, "after": [],
                "_node": merge.name}


def decompose(ir: IR) -> list[dict]:
    return Decomposer(ir).run()
