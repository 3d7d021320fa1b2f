"""A circuit: the plain data that attribution hands to the graph stage.

One circuit per (model, transcoder set, dataset, cell type). Positions are
collapsed: features are keyed by (layer, index), genes by symbol. The file
format is circuit-tracer/Neuronpedia graph JSON (``metadata``, ``nodes``,
``links``) with circuitdb's fields added, so their viewer can open it and
:func:`Circuit.load` can read it back.

Node ids (deterministic, also used as graph ids after prefixing with the circuit):

* gene ``gene:{SYMBOL}``
* feature ``feat:{layer}:{index}``
* error ``err:{layer}``
* embedding (a non-gene prompt token) ``emb:{token}``
* bias ``bias:{layer}``
* target ``target:{cell_type}``
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

NodeKind = Literal["gene", "feature", "error", "embedding", "bias", "target"]


def gene_id(symbol: str) -> str:
    return f"gene:{symbol}"


def feature_id(layer: int, index: int) -> str:
    return f"feat:{layer}:{index}"


def target_id(cell_type: str) -> str:
    return f"target:{cell_type}"


def error_id(layer: int) -> str:
    return f"err:{layer}"


def embedding_id(token: str) -> str:
    return f"emb:{token}"


def bias_id(layer: int) -> str:
    return f"bias:{layer}"


@dataclass
class CircuitNode:
    """A node of an aggregated circuit.

    influence: mean (over cells) influence on the target; frequency: fraction of
    cells in which the node was active/kept; activation: mean activation when active;
    effect: mean (over cells, absent = 0) signed total effect on the target logit in the
    frozen linear model (zeroing the node lowers the target by about this much).
    """

    id: str
    kind: NodeKind
    layer: int | None = None
    index: int | None = None
    gene: str | None = None
    cell_type: str | None = None
    influence: float = 0.0
    frequency: float = 0.0
    activation: float = 0.0
    label: str | None = None
    effect: float = 0.0


@dataclass
class HeadWeight:
    """The part of an edge carried by one attention head (mean over cells)."""

    layer: int
    head: int
    weight: float
    frequency: float = 0.0


@dataclass
class CircuitEdge:
    """A weighted edge (direct effect, mean over cells with absent = 0)."""

    source: str
    target: str
    weight: float
    frequency: float = 0.0
    heads: list[HeadWeight] = field(default_factory=list)


@dataclass
class Provenance:
    """Where a circuit came from: enough to rebuild it."""

    model: str
    model_hash: str
    transcoders: str
    transcoder_hash: str
    dataset: str
    dataset_id: str
    cell_type: str
    cells: list[str]
    method: str
    thresholds: dict[str, float]
    code_version: str
    created: str
    architecture: str = ""
    n_layers: int = 0
    transcoder_kind: str = ""
    d_features: int = 0
    dataset_n_cells: int = 0
    dataset_source: str = ""


#: field names of the flat dataclasses, in declaration order (what ``asdict`` would emit)
_NODE_FIELDS = tuple(f.name for f in fields(CircuitNode))
_HEAD_FIELDS = tuple(f.name for f in fields(HeadWeight))


@dataclass
class Circuit:
    provenance: Provenance
    nodes: list[CircuitNode]
    edges: list[CircuitEdge]

    @property
    def id(self) -> str:
        p = self.provenance
        # hashes may carry an algorithm prefix ("sha256:..."): keep 12 hex digits either way
        mh, th = p.model_hash.split(":")[-1], p.transcoder_hash.split(":")[-1]
        return f"{mh[:12]}|{th[:12]}|{p.dataset_id}|{p.cell_type}|{p.method}"

    # -- Neuronpedia-style graph JSON -----------------------------------------
    def to_json(self) -> dict[str, Any]:
        p = self.provenance
        nodes = []
        for n in self.nodes:
            d = {name: getattr(n, name) for name in _NODE_FIELDS}  # flat fields: asdict's deep copy is the slow part
            d.update(
                node_id=n.id,
                jsNodeId=n.id,
                feature=n.index,
                ctx_idx=0,
                feature_type={"gene": "embedding", "feature": "cross layer transcoder", "error": "mlp reconstruction error",
                              "embedding": "embedding", "bias": "bias", "target": "logit"}[n.kind],
                clerp=n.label or n.gene or n.cell_type or n.id,
                is_target_logit=n.kind == "target",
            )
            nodes.append(d)
        links = [
            {"source": e.source, "target": e.target, "weight": e.weight, "frequency": e.frequency,
             "heads": [{name: getattr(h, name) for name in _HEAD_FIELDS} for h in e.heads]}
            for e in self.edges
        ]
        return {
            "metadata": {
                "slug": self.id,
                "scan": p.model,
                "prompt": f"circuit of {p.cell_type} over {len(p.cells)} cells",
                "prompt_tokens": [],
                "transcoder_list": [],
                "node_threshold": p.thresholds.get("node_threshold"),
                "circuitdb": asdict(p),
                "circuit_id": self.id,
            },
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": nodes,
            "links": links,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Circuit":
        prov = Provenance(**data["metadata"]["circuitdb"])
        node_fields = set(CircuitNode.__dataclass_fields__)
        nodes = [CircuitNode(**{k: v for k, v in n.items() if k in node_fields}) for n in data["nodes"]]
        edges = [
            CircuitEdge(l["source"], l["target"], float(l["weight"]), float(l.get("frequency", 0.0)),
                        [HeadWeight(**h) for h in l.get("heads", [])])
            for l in data["links"]
        ]
        return cls(prov, nodes, edges)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Circuit":
        return cls.from_json(json.loads(Path(path).read_text()))
