// Weighted feature -> cell type (target logit) edges of a circuit.
// params: $rows: [{circuit, source (feature id), target (cell type name), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Feature {id: r.source})
MATCH (t:CellType {name: r.target})
MERGE (s)-[e:FEATURE_TO_CELL_TYPE {circuit: r.circuit}]->(t)
SET e.weight = r.weight, e.frequency = r.frequency
RETURN count(*) AS n
