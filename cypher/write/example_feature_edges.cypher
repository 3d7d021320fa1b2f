// Example graph (demo v1): weighted feature -> feature edges of one circuit, merged on (source, target, circuit).
// params: $rows (list of {source: feature id, target: feature id, circuit, weight})
// returns: nothing
UNWIND $rows AS row
MATCH (a:Feature {id: row.source})
MATCH (b:Feature {id: row.target})
MERGE (a)-[e:DRIVES {circuit: row.circuit}]->(b)
SET e.weight = row.weight
