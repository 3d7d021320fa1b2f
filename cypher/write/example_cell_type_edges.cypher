// Example graph (demo v1): weighted feature -> cell type edges of one circuit, merged on (feature, cell type, circuit).
// params: $rows (list of {source: feature id, target: cell type name, circuit, weight})
// returns: nothing
UNWIND $rows AS row
MATCH (f:Feature {id: row.source})
MATCH (c:CellType {name: row.target})
MERGE (f)-[e:PREDICTS {circuit: row.circuit}]->(c)
SET e.weight = row.weight
