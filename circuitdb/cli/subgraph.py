"""``circuitdb subgraph FEATURE_ID --hops 2 --out x.graphml|x.json``: a feature's neighbourhood as a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from circuitdb.cli.console import info


@click.command()
@click.argument("feature_id")
@click.option("--hops", default=2, show_default=True, type=click.IntRange(1, 3), help="Hops from the feature (1-3).")
@click.option("--circuit", default=None, help="Only this circuit's edges (default: all circuits).")
@click.option("--min-weight", default=0.0, show_default=True, type=click.FloatRange(0.0), help="Minimum |weight|.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output file: .graphml or .json (node-link).")
@click.pass_context
def subgraph(ctx: click.Context, feature_id: str, hops: int, circuit: str | None, min_weight: float, out: Path) -> None:
    """Write the circuit edges within --hops of FEATURE_ID to a GraphML or JSON file."""
    import networkx as nx

    from circuitdb.cli.db import settings_from_ctx
    from circuitdb.errors import InputError
    from circuitdb.graph.backend import open_backend
    from circuitdb.queries import neighbourhood_graph

    suffix = out.suffix.lower()
    if suffix not in (".graphml", ".json"):
        raise InputError(f"--out {out} must end in .graphml or .json; pick one of those")
    if not out.parent.exists():
        raise InputError(f"folder {out.parent} does not exist; create it or pick another --out")
    with open_backend(settings_from_ctx(ctx)) as graph:
        g = neighbourhood_graph(graph, feature_id, hops=hops, circuit=circuit, min_weight=min_weight)
    tmp = out.with_name(out.name + ".tmp")
    if suffix == ".graphml":
        g.graph = {k: v for k, v in g.graph.items()}
        nx.write_graphml(g, tmp)
    else:
        tmp.write_text(json.dumps(nx.node_link_data(g, edges="edges"), indent=1))
    os.replace(tmp, out)
    info(f"wrote {g.number_of_nodes()} nodes and {g.number_of_edges()} edges within {hops} hop(s) of "
         f"{feature_id} to {out}")
