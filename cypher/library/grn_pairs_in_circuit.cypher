// TF -> target pairs of a GRN whose two genes both sit in a cell type's circuit (HAS_GENE members).
// params: $cell_type (text), $dataset (dataset id or null = any), $grn (GRN name or null = any)
// returns: circuit, tf, target, grn, weight, sign, resource
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH (c)-[:HAS_GENE]->(tf:Gene)-[r:REGULATES]->(t:Gene)
WHERE ($grn IS NULL OR r.grn = $grn) AND tf.symbol <> t.symbol
MATCH (c)-[:HAS_GENE]->(t)
RETURN c.id AS circuit, tf.symbol AS tf, t.symbol AS target, r.grn AS grn, r.weight AS weight, r.sign AS sign,
       r.resource AS resource
ORDER BY circuit, tf, target, grn
