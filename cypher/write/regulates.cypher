// TF -> target edges of a GRN between existing Gene nodes (write the genes first).
// params: $rows: [{grn, source (TF symbol), target (target symbol), weight, sign, resource}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Gene {symbol: r.source})
MATCH (t:Gene {symbol: r.target})
MERGE (s)-[e:REGULATES {grn: r.grn}]->(t)
SET e.weight = r.weight, e.sign = r.sign, e.resource = r.resource
RETURN count(*) AS n
