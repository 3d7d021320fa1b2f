// Example graph (demo v1): weighted gene -> feature edges of one circuit, merged on (gene, feature, circuit).
// params: $rows (list of {source: gene symbol, target: feature id, circuit, weight})
// returns: nothing
UNWIND $rows AS row
MATCH (g:Gene {symbol: row.source})
MATCH (f:Feature {id: row.target})
MERGE (g)-[e:INPUT_TO {circuit: row.circuit}]->(f)
SET e.weight = row.weight
