// TF -> target edges of a GRN between existing Gene nodes (write the genes first). MERGEd on the
// unindexed mkey (a hash of the GRN name) so the planner expands between the two genes rather than
// seeking the grn index per row (see merge_key in circuitdb/graph/rows.py).
// params: $rows: [{grn, mkey, source (TF symbol), target (target symbol), weight, sign, resource}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (s:Gene {symbol: r.source})
MATCH (t:Gene {symbol: r.target})
MERGE (s)-[e:REGULATES {mkey: r.mkey}]->(t)
SET e.grn = r.grn, e.weight = r.weight, e.sign = r.sign, e.resource = r.resource
RETURN count(*) AS n
