// Every TF -> target edge of one GRN (or of all GRNs).
// params: $grn (GRN name or null = any)
// returns: tf, target, grn, weight, sign
MATCH (s:Gene)-[r:REGULATES]->(t:Gene)
WHERE $grn IS NULL OR r.grn = $grn
RETURN s.symbol AS tf, t.symbol AS target, r.grn AS grn, r.weight AS weight, r.sign AS sign
ORDER BY grn, tf, target
