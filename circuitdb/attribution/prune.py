"""Subgraph identification: which nodes and edges of an attribution graph matter.

Two deterministic methods, selected by ``method``:

``"influence"`` (circuit-tracer, Ameisen et al. 2025)
    Row-normalise ``|A|`` (``A[target, source]``, so each node's inputs sum to 1),
    propagate the target weights backwards through all powers
    ``w (A + A^2 + ...)`` to get each node's *indirect influence* on the targets,
    keep the smallest set of nodes holding ``node_threshold`` of the total
    influence, then score edges by ``normalised weight x (influence of its
    target + target weight)`` inside the kept nodes and keep ``edge_threshold``
    of that mass. Genes, other input tokens and targets are always kept;
    features and errors left without outgoing edges (and features without
    incoming edges) are dropped until nothing changes.

``"greedy"`` (Dunefsky et al. 2024, computational paths)
    A beam search backwards from each target: extend every path by the
    ``branches`` largest attributions into its last node, keep the
    ``max_paths`` best new paths per step, stop after ``max_length`` edges.
    As in Dunefsky et al., paths step only through features and end at genes or
    tokens (embeddings); error and bias terms are not path steps.
    A path's score is the attribution it carries to the target in the
    linearised model: ``w_t A[t, a] / act(a) * A[a, b] / act(b) * ...``
    (every intermediate node is an active feature, whose outgoing edges scale
    with its activation). Only targets and features are expanded; genes,
    tokens, errors and biases end a path. The union of all kept paths is the
    subgraph.

Ties never depend on hardware order: thresholds keep every node tied at the
cut-off, and the greedy search breaks ties by node index.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

import torch

from circuitdb.attribution.graph import AttributionGraph

PruneMethod = Literal["influence", "greedy"]
GreedySign = Literal["positive", "abs"]

#: Node kinds that are always kept by the influence method.
ALWAYS_KEPT_KINDS = ("gene", "token", "target")


class PruneResult(NamedTuple):
    """What pruning keeps.

    node_mask
        ``(n,)`` bool, nodes to keep.
    edge_mask
        ``(n, n)`` bool, ``edge_mask[target, source]``: edges to keep.
    cumulative_scores
        ``(n,)`` each node's cumulative share of total influence when nodes are
        sorted by influence (descending): the most influential node has the
        smallest value. Same for both methods.
    influence
        ``(n,)`` each node's indirect influence on the (weighted) targets,
        through the normalised adjacency. Zero for targets themselves.
    """

    node_mask: torch.Tensor
    edge_mask: torch.Tensor
    cumulative_scores: torch.Tensor
    influence: torch.Tensor


# -- pure maths -----------------------------------------------------------------
def normalize_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """``|matrix|`` with every row scaled to sum to 1 (all-zero rows stay zero).

    Parameters
    ----------
    matrix
        ``(n, n)`` adjacency, ``matrix[target, source]``.

    Returns
    -------
    torch.Tensor
        The row-normalised absolute matrix.
    """
    a = matrix.abs()
    a /= a.sum(dim=1, keepdim=True).clamp(min=1e-10)
    return a


def compute_influence(
    a: torch.Tensor,
    weights: torch.Tensor,
    *,
    max_iter: int = 10_000,
    method: Literal["iterate", "solve"] = "iterate",
) -> torch.Tensor:
    """Indirect influence ``w (A + A^2 + A^3 + ...)`` of every node on the weighted targets.

    Parameters
    ----------
    a
        ``(n, n)`` matrix, ``a[target, source]`` (usually :func:`normalize_matrix` output).
    weights
        ``(n,)`` weight of each node as an end point (non-zero on targets).
    max_iter
        Iterations before giving up (a DAG converges after its depth).
    method
        ``"iterate"`` sums the powers until they vanish (exact for a DAG);
        ``"solve"`` uses ``w ((I - A)^-1 - I)``, for graphs with cycles whose
        spectral radius is below one.

    Returns
    -------
    torch.Tensor
        ``(n,)`` influence of each node.

    Raises
    ------
    RuntimeError
        When iteration has not converged after ``max_iter`` steps.
    """
    if method == "solve":
        n = a.shape[0]
        eye = torch.eye(n, dtype=a.dtype, device=a.device)
        # x (I - A) = w  ->  (I - A)^T x^T = w^T
        total = torch.linalg.solve((eye - a).T, weights)
        return total - weights
    current = weights @ a
    influence = current.clone()
    for _ in range(max_iter):
        if not bool(current.any()):
            return influence
        current = current @ a
        influence += current
    raise RuntimeError(f"influence did not converge after {max_iter} iterations; is the graph acyclic? use method='solve'")


def compute_total_effect(adjacency: torch.Tensor, weights: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Signed total effect of every node on the weighted targets in the linear (frozen) model.

    ``effect[s] = sum_t w_t * (A[t, s] + sum_u A[u, s] * gain[u] * effect_u ...)``: removing
    node ``s`` (zeroing its output) changes the targets by ``-effect[s]`` to first order.
    A feature's outgoing edges scale with its activation, so ``gain = 1 / activation`` for
    features, 1 for targets and 0 for nodes without inputs. For the sources (genes,
    tokens, errors, biases) the effects add up to the weighted target value.

    Parameters
    ----------
    adjacency
        ``(n, n)``, ``adjacency[target, source]``.
    weights
        ``(n,)`` target weights.
    gains
        ``(n,)`` per-node gain as above.
    """
    dt = _work_dtype(adjacency)
    m = adjacency.to(dt) * gains.to(dt)[:, None]
    return compute_influence(m, weights.to(dt))


def node_gains(graph: AttributionGraph) -> torch.Tensor:
    """``1 / activation`` for features (0 if it is 0), 1 for targets, 0 otherwise."""
    g = torch.zeros(len(graph.nodes), dtype=torch.float64)
    for i, nd in enumerate(graph.nodes):
        if nd.kind == "target":
            g[i] = 1.0
        elif nd.kind == "feature" and nd.activation:
            g[i] = 1.0 / float(nd.activation)
    return g


def find_threshold(scores: torch.Tensor, fraction: float) -> float:
    """The score cut-off that keeps ``fraction`` of the total score mass (largest first).

    Every score ``>=`` the returned value is kept, so ties at the cut-off are
    all kept. Returns ``inf`` when all scores are zero (nothing to keep).
    """
    flat = scores.flatten()
    total = float(flat.sum())
    if total <= 0:
        return float("inf")
    sorted_scores = torch.sort(flat, descending=True, stable=True).values
    cumulative = torch.cumsum(sorted_scores, dim=0) / total
    idx = int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype)).item())
    n_nonzero = int((sorted_scores > 0).sum())
    idx = min(idx, max(n_nonzero - 1, 0))
    return float(sorted_scores[idx])


def cumulative_shares(influence: torch.Tensor) -> torch.Tensor:
    """Each node's cumulative share of total influence in descending order (stable)."""
    order = torch.sort(influence, descending=True, stable=True).indices
    total = influence.sum()
    cum = torch.cumsum(influence[order], dim=0) / (total if float(total) > 0 else 1.0)
    out = torch.zeros_like(influence)
    out[order] = cum
    return out


def target_weights_of(graph: AttributionGraph, target_weights: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
    """``(n,)`` end-point weights: given per target node, else ``metadata['target_weights']``, else uniform."""
    targets = graph.indices("target")
    if len(targets) == 0:
        raise ValueError("the graph has no target node; attribution graphs need at least one")
    w = torch.zeros(len(graph.nodes), dtype=graph.adjacency.dtype)
    if target_weights is None:
        target_weights = graph.metadata.get("target_weights")
    if target_weights is None:
        w[targets] = 1.0 / len(targets)
    else:
        tw = torch.as_tensor(target_weights, dtype=w.dtype).flatten()
        if len(tw) != len(targets):
            raise ValueError(f"need one weight per target node ({len(targets)}), got {len(tw)}")
        w[targets] = tw
    return w


def _work_dtype(adjacency: torch.Tensor) -> torch.dtype:
    """float64 for graphs up to 6,000 nodes (288 MB per copy), the graph's own dtype above."""
    return torch.float64 if adjacency.shape[0] <= 6000 else adjacency.dtype


# -- influence pruning -------------------------------------------------------------
def prune_influence(
    adjacency: torch.Tensor,
    weights: torch.Tensor,
    always_keep: torch.Tensor,
    needs_input: torch.Tensor,
    *,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
) -> PruneResult:
    """Influence-based pruning on plain tensors (see the module docstring).

    Parameters
    ----------
    adjacency
        ``(n, n)`` direct effects, ``adjacency[target, source]``.
    weights
        ``(n,)`` target weights (non-zero exactly on target nodes).
    always_keep
        ``(n,)`` bool: nodes kept regardless of influence (genes, tokens, targets).
    needs_input
        ``(n,)`` bool: nodes dropped when no kept edge enters them (features).
    node_threshold, edge_threshold
        Fractions of total node / edge influence to keep, in ``[0, 1]``.

    Returns
    -------
    PruneResult
    """
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    dt = _work_dtype(adjacency)
    a = adjacency.to(dt)
    w = weights.to(dt)
    influence = compute_influence(normalize_matrix(a), w)
    node_mask = influence >= find_threshold(influence, node_threshold)
    node_mask |= always_keep

    # edges only among kept nodes: work on that submatrix (the rest would score zero)
    idx = torch.nonzero(node_mask).flatten()
    norm_sub = normalize_matrix(a[idx][:, idx])
    w_sub = w[idx]
    scores = norm_sub * (compute_influence(norm_sub, w_sub) + w_sub)[:, None]
    positive = scores[scores > 0]
    sub_edges = (scores >= find_threshold(positive, edge_threshold)) & (scores > 0)
    del scores, positive, norm_sub

    sub_nodes = torch.ones(len(idx), dtype=torch.bool)
    prunable = ~always_keep[idx]
    need = needs_input[idx] & prunable
    while True:
        old = sub_nodes.clone()
        sub_edges[~sub_nodes] = False
        sub_edges[:, ~sub_nodes] = False
        sub_nodes[prunable] &= sub_edges[:, prunable].any(0)
        sub_nodes[need] &= sub_edges[need].any(1)
        if torch.equal(old, sub_nodes):
            break
    node_mask = torch.zeros_like(node_mask)
    node_mask[idx] = sub_nodes
    edge_mask = torch.zeros(a.shape, dtype=torch.bool)
    edge_mask[idx[:, None], idx[None, :]] = sub_edges
    return PruneResult(node_mask, edge_mask, cumulative_shares(influence), influence)


# -- greedy path search ----------------------------------------------------------------
def greedy_paths(
    adjacency: torch.Tensor,
    weights: torch.Tensor,
    expandable: torch.Tensor,
    activations: torch.Tensor,
    *,
    branches: int = 5,
    max_paths: int = 50,
    max_length: int = 8,
    sign: GreedySign = "positive",
    candidates: torch.Tensor | None = None,
) -> list[tuple[tuple[int, ...], float]]:
    """Top computational paths, Dunefsky-style beam search from the targets backwards.

    Parameters
    ----------
    adjacency
        ``(n, n)`` direct effects, ``adjacency[target, source]``.
    weights
        ``(n,)`` target weights; paths start at nodes with non-zero weight.
    expandable
        ``(n,)`` bool: nodes whose inputs may extend a path (targets, features).
    activations
        ``(n,)`` activation of each expandable non-target node: the carried
        attribution is divided by it when passing through the node.
    branches
        Extensions considered per path and step (top-k attributions into its last node).
    max_paths
        Paths kept per step (the beam).
    max_length
        Most edges in a path.
    sign
        ``"positive"`` ranks by signed attribution (paths that push the target
        up, as Dunefsky et al.); ``"abs"`` by magnitude.
    candidates
        ``(n,)`` bool: nodes that may join a path (default all). Dunefsky et al.
        branch only into features and embeddings; error and bias terms are not path steps.

    Returns
    -------
    list of (path, score)
        Every path kept at any step, node indices from the target backwards,
        in the order found (step, then rank).
    """
    if branches < 1 or max_paths < 1 or max_length < 1:
        raise ValueError("branches, max_paths and max_length must be >= 1")
    a = adjacency.to(torch.float64)
    act = activations.to(torch.float64)
    w = weights.to(torch.float64)
    n = a.shape[0]
    index = torch.arange(n)

    def key(v: torch.Tensor) -> torch.Tensor:
        return v if sign == "positive" else v.abs()

    frontier = [((int(t),), float(w[t])) for t in torch.nonzero(w).flatten().tolist()]
    kept: list[tuple[tuple[int, ...], float]] = []
    for _ in range(max_length):
        cands: list[tuple[float, tuple[int, ...], float]] = []
        for path, score in frontier:
            last = path[-1]
            if not bool(expandable[last]):
                continue
            gain = 1.0 if len(path) == 1 else 1.0 / float(act[last]) if float(act[last]) != 0 else 0.0
            contrib = score * gain * a[last]
            nz = contrib != 0
            if candidates is not None:
                nz &= candidates
            if not bool(nz.any()):
                continue
            src, val = index[nz], contrib[nz]
            # stable sort on -key keeps lower node index first among ties
            order = torch.sort(-key(val), stable=True).indices[:branches]
            for j in order.tolist():
                if sign == "positive" and float(val[j]) <= 0:
                    continue
                s = int(src[j])
                cands.append((float(key(val[j : j + 1])[0]), path + (s,), float(val[j])))
        if not cands:
            break
        cands.sort(key=lambda c: (-c[0], c[1]))
        frontier = [(p, v) for _, p, v in cands[:max_paths]]
        kept.extend(frontier)
    return kept


def paths_to_masks(paths: Sequence[tuple[tuple[int, ...], float]], n: int, always_keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of paths as ``(node_mask, edge_mask[target, source])``; ``always_keep`` nodes are added."""
    node_mask = always_keep.clone()
    edge_mask = torch.zeros(n, n, dtype=torch.bool)
    for path, _ in paths:
        for t, s in zip(path[:-1], path[1:]):
            edge_mask[t, s] = True
            node_mask[t] = True
            node_mask[s] = True
    return node_mask, edge_mask


# -- the graph-level entry point --------------------------------------------------------
def prune(
    graph: AttributionGraph,
    method: PruneMethod = "influence",
    *,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    branches: int = 5,
    max_paths: int = 50,
    max_length: int = 8,
    sign: GreedySign = "positive",
    target_weights: torch.Tensor | Sequence[float] | None = None,
) -> PruneResult:
    """Prune one attribution graph to the part that carries its target.

    Parameters
    ----------
    graph
        The attribution graph.
    method
        ``"influence"`` (circuit-tracer thresholds) or ``"greedy"`` (Dunefsky top paths).
    node_threshold, edge_threshold
        Influence method: fractions of node / edge influence kept (defaults 0.8, 0.98).
    branches, max_paths, max_length, sign
        Greedy method: see :func:`greedy_paths`.
    target_weights
        Weight per target node (default ``metadata['target_weights']`` or uniform).

    Returns
    -------
    PruneResult
        Masks plus influence and cumulative scores (influence-based for both methods).
        Influence keeps genes, tokens and targets always; greedy keeps targets and
        the nodes on its paths.

    Examples
    --------
    >>> res = prune(graph, "influence", node_threshold=0.8)  # doctest: +SKIP
    >>> kept = [graph.nodes[i] for i in res.node_mask.nonzero().flatten().tolist()]  # doctest: +SKIP
    """
    kinds = [nd.kind for nd in graph.nodes]
    n = len(kinds)
    w = target_weights_of(graph, target_weights)
    is_kind = {k: torch.tensor([x == k for x in kinds], dtype=torch.bool) for k in ("feature", "gene", "token", "target")}
    always = is_kind["gene"] | is_kind["token"] | is_kind["target"]
    if method == "influence":
        return prune_influence(graph.adjacency, w, always, is_kind["feature"],
                               node_threshold=node_threshold, edge_threshold=edge_threshold)
    if method != "greedy":
        raise ValueError(f"method must be 'influence' or 'greedy', not {method!r}")
    dt = _work_dtype(graph.adjacency)
    influence = compute_influence(normalize_matrix(graph.adjacency.to(dt)), w.to(dt))
    acts = torch.tensor([nd.activation for nd in graph.nodes], dtype=torch.float64)
    if graph.values is not None:
        # fall back to the stored value where a feature's activation was not recorded
        acts = torch.where(acts == 0, graph.values.to(torch.float64), acts)
    paths = greedy_paths(graph.adjacency, w, is_kind["feature"] | is_kind["target"], acts,
                         branches=branches, max_paths=max_paths, max_length=max_length, sign=sign,
                         candidates=is_kind["feature"] | is_kind["gene"] | is_kind["token"])
    node_mask, edge_mask = paths_to_masks(paths, n, is_kind["target"])
    return PruneResult(node_mask, edge_mask, cumulative_shares(influence), influence)
