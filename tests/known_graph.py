"""A small hand-built graph for the Cypher library tests; expected rows are computed by hand in the tests.

Three circuits (model/transcoder hashes ``m``*64 / ``t``*64, so feature ids are ``tttttttttttttttt:L:I``):

* A in D1: g1 -> f0.1 (0.9; heads 0.0: 0.6, 0.1: 0.3), g2 -> f0.2 (0.4; head 0.0: 0.4), f0.1 -> f1.3 (0.8),
  f0.2 -> f1.3 (-0.5), f1.3 -> A (0.7; head 1.0: 0.35), f0.1 -> A (0.2), g2 -> A (0.05, direct)
* B in D1: g1 -> f0.1 (0.5; head 0.0: 0.5), g3 -> f1.4 (0.6; head 0.1: 0.6), f0.1 -> f1.4 (0.3),
  f1.4 -> B (0.9), f0.1 -> B (0.2)
* A in D2: g1 -> f0.1 (0.7), f0.1 -> f1.3 (0.8), f1.3 -> A (0.5), g2 -> f1.3 (0.1)
"""

from __future__ import annotations

from circuitdb.attribution.circuit import Circuit, CircuitEdge, CircuitNode, HeadWeight, Provenance

MH = "m" * 64
TH = "t" * 64


def fid(layer: int, index: int) -> str:
    return f"{TH[:16]}:{layer}:{index}"


def hid(layer: int, head: int) -> str:
    return f"{MH[:16]}:{layer}:{head}"


def _prov(cell_type: str, dataset: str) -> Provenance:
    return Provenance(model="tiny", model_hash=MH, transcoders="tiny-tc", transcoder_hash=TH, dataset=dataset,
                      dataset_id=dataset, cell_type=cell_type, cells=["c1", "c2"], method="mean",
                      thresholds={"node": 0.8}, code_version="test", created="2026-01-01T00:00:00Z",
                      architecture="gpt_neox", n_layers=2, transcoder_kind="plt", d_features=8,
                      dataset_n_cells=10, dataset_source="test")


def _circuit(cell_type: str, dataset: str, genes: dict[str, float], feats: dict[tuple[int, int], float],
             edges: list[tuple[str, str, float, list[tuple[int, int, float]]]]) -> Circuit:
    nodes = [CircuitNode(f"gene:{g}", "gene", gene=g, influence=v, frequency=1.0) for g, v in genes.items()]
    nodes += [CircuitNode(f"feat:{l}:{i}", "feature", layer=l, index=i, influence=v, frequency=0.5, activation=1.0)
              for (l, i), v in feats.items()]
    nodes.append(CircuitNode(f"target:{cell_type}", "target", cell_type=cell_type))
    nodes.append(CircuitNode("err:0", "error", layer=0))
    es = [CircuitEdge(s, t, w, 1.0, [HeadWeight(l, h, hw, 1.0) for l, h, hw in heads]) for s, t, w, heads in edges]
    es.append(CircuitEdge("err:0", f"target:{cell_type}", 0.01))
    return Circuit(_prov(cell_type, dataset), nodes, es)


def known_circuits(a: str = "A", b: str = "B", g1: str = "g1", g2: str = "g2", g3: str = "g3") -> list[Circuit]:
    """The three circuits; cell type and gene names can be replaced (hostile-name tests)."""
    ta, tb = f"target:{a}", f"target:{b}"
    a1 = _circuit(a, "D1", {g1: 0.63, g2: 0.3}, {(0, 1): 0.76, (0, 2): 0.2, (1, 3): 0.7}, [
        (f"gene:{g1}", "feat:0:1", 0.9, [(0, 0, 0.6), (0, 1, 0.3)]),
        (f"gene:{g2}", "feat:0:2", 0.4, [(0, 0, 0.4)]),
        ("feat:0:1", "feat:1:3", 0.8, []),
        ("feat:0:2", "feat:1:3", -0.5, []),
        ("feat:1:3", ta, 0.7, [(1, 0, 0.35)]),
        ("feat:0:1", ta, 0.2, []),
        (f"gene:{g2}", ta, 0.05, []),
    ])
    b1 = _circuit(b, "D1", {g1: 0.15, g3: 0.54}, {(0, 1): 0.47, (1, 4): 0.9}, [
        (f"gene:{g1}", "feat:0:1", 0.5, [(0, 0, 0.5)]),
        (f"gene:{g3}", "feat:1:4", 0.6, [(0, 1, 0.6)]),
        ("feat:0:1", "feat:1:4", 0.3, []),
        ("feat:1:4", tb, 0.9, []),
        ("feat:0:1", tb, 0.2, []),
    ])
    a2 = _circuit(a, "D2", {g1: 0.28, g2: 0.05}, {(0, 1): 0.4, (1, 3): 0.5}, [
        (f"gene:{g1}", "feat:0:1", 0.7, []),
        ("feat:0:1", "feat:1:3", 0.8, []),
        ("feat:1:3", ta, 0.5, []),
        (f"gene:{g2}", "feat:1:3", 0.1, []),
    ])
    return [a1, b1, a2]


def circuit_id(cell_type: str, dataset: str) -> str:
    return f"{MH[:12]}|{TH[:12]}|{dataset}|{cell_type}|mean"
