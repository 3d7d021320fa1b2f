// Per-head parts of edges into a cell type: one HEAD_CARRIES row per (circuit, edge source, head).
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// params: $rows: [{circuit, head (head id), source (gene symbol or feature id), target (cell type name), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:AttentionHead {id: r.head})
MATCH (t:CellType {name: r.target})
CREATE (s)-[:HEAD_CARRIES {circuit: r.circuit, source: r.source, target: r.target, weight: r.weight, frequency: r.frequency}]->(t)
RETURN count(*) AS n
