"""``eliminate_dead_code``: drops the nodes whose outputs nothing reads (no graph output, no later node), that
write nothing in place and that take no random numbers (a dropout nothing reads still moves the generator, so that
every later draw, in the graph and after it, is eager's)."""
from .graph import copy_graph as _copy, reads as _reads

__all__ = ["eliminate_dead_code"]


def eliminate_dead_code(graph):
    """The graph without the nodes whose results are never read and that change nothing in place or draw nothing."""
    live = {v.name for v in graph.outputs}
    kept = []
    for node in reversed(graph.nodes):
        if node.aliases or node.draws or node.out_struct is None or any(v.name in live for v in node.outputs):
            kept.append(node)
            live.update(_reads(node.args) + _reads(node.kwargs))
    return _copy(graph, kept[::-1])
