"""What every graph pass of ``tritorch.compile`` needs: a graph with new nodes, and who reads which value."""
from ...jit.ir import Graph, Value, flatten

__all__ = ["copy_graph", "reads", "uses"]


def copy_graph(graph, nodes):
    """``graph`` with ``nodes`` in place of its own (the same inputs, outputs, parameters and values)."""
    g = Graph()
    g.inputs, g.in_struct, g.outputs, g.out_struct = graph.inputs, graph.in_struct, graph.outputs, graph.out_struct
    g.params, g.values, g.device = graph.params, graph.values, graph.device
    g.nodes = nodes
    return g


def reads(x):
    """The names of the Values in ``x`` (a node's args or kwargs, nested)."""
    return [v.name for v in flatten(x, lambda a: isinstance(a, Value))[0] if isinstance(v, Value)]


def uses(graph):
    """Value name -> how many times the nodes read it."""
    counts = {}
    for node in graph.nodes:
        for name in reads(node.args) + reads(node.kwargs):
            counts[name] = counts.get(name, 0) + 1
    return counts
