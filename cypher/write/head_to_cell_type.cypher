// Per-head parts of edges into a cell type: one HEAD_CARRIES row per (circuit, edge source, head).
// CREATEs (never MERGEs): the writer first deletes every relationship of a circuit that is not
// complete with this content (purge_circuit_edges), so a rerun never duplicates a row.
// Columnar rows (one list per column, row i across them: less to send and decode than a list
// of maps); the batch's circuit ids are sent once.
// params: $circuits (distinct circuit ids), $ci (per row: index into $circuits),
//   $head (head id), $source (gene symbol or feature id), $target (cell type name), $weight, $frequency (one list each)
// returns: n (rows written)
UNWIND range(0, size($ci) - 1) AS i
MATCH (s:AttentionHead {id: $head[i]})
MATCH (t:CellType {name: $target[i]})
CREATE (s)-[:HEAD_CARRIES {circuit: $circuits[$ci[i]], source: $source[i], target: $target[i], weight: $weight[i], frequency: $frequency[i]}]->(t)
RETURN count(*) AS n
