// Weighted feature -> cell type (target logit) edges of a circuit.
// params: $rows: [{circuit, mkey (merge key), source (feature id), target (cell type name), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Feature {id: r.source})
MATCH (t:CellType {name: r.target})
MERGE (s)-[e:FEATURE_TO_CELL_TYPE {mkey: r.mkey}]->(t)
SET e.circuit = r.circuit, e.weight = r.weight, e.frequency = r.frequency
RETURN count(*) AS n
