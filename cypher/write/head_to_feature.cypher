// Per-head parts of edges into a feature: one HEAD_CARRIES row per (circuit, edge source, head).
// params: $rows: [{circuit, mkey (merge key), head (head id), source (gene symbol or feature id), target (feature id), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (h:AttentionHead {id: r.head})
MATCH (t:Feature {id: r.target})
MERGE (h)-[e:HEAD_CARRIES {mkey: r.mkey}]->(t)
SET e.circuit = r.circuit, e.source = r.source, e.target = r.target, e.weight = r.weight, e.frequency = r.frequency
RETURN count(*) AS n
