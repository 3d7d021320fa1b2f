// Weighted gene -> feature edges of a circuit.
// params: $rows: [{circuit, mkey (merge key), source (gene symbol), target (feature id), weight, frequency}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Gene {symbol: r.source})
MATCH (t:Feature {id: r.target})
MERGE (s)-[e:GENE_TO_FEATURE {mkey: r.mkey}]->(t)
SET e.circuit = r.circuit, e.weight = r.weight, e.frequency = r.frequency
RETURN count(*) AS n
