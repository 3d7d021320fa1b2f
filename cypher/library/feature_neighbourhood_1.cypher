// The circuit edges within 1 hop(s) of a feature (either direction), optionally inside one circuit
// and above a weight threshold. Files _1, _2, _3 are the allowed hop counts.
// params: $feature (feature id), $circuit (circuit id or null = all circuits), $min_weight (float)
// returns: type, circuit, source, source_label, target, target_label, weight
MATCH p = (f:Feature {id: $feature})-[:GENE_TO_FEATURE|FEATURE_TO_FEATURE|FEATURE_TO_CELL_TYPE|GENE_TO_CELL_TYPE*1..1]-()
WHERE all(r IN relationships(p) WHERE ($circuit IS NULL OR r.circuit = $circuit) AND abs(r.weight) >= $min_weight)
UNWIND relationships(p) AS r
WITH DISTINCT r
WITH r, startNode(r) AS s, endNode(r) AS t
RETURN type(r) AS type, r.circuit AS circuit, coalesce(s.id, s.symbol, s.name) AS source, labels(s)[0] AS source_label,
       coalesce(t.id, t.symbol, t.name) AS target, labels(t)[0] AS target_label, r.weight AS weight
ORDER BY type, circuit, source, target
