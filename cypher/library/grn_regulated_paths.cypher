// Circuit paths gene -> feature(s) -> cell type (every edge in the circuit, |weight| >= $min_weight,
// at most 4 edges) whose input gene is a GRN target of a TF that is itself in the circuit.
// params: $cell_type (text), $dataset (dataset id or null = any), $grn (GRN name or null = any),
//         $min_weight (float), $limit (int)
// returns: circuit, tf, gene, grn, sign, nodes (node keys along the path), weights, path_weight (product), length
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH p = (g:Gene)-[:GENE_TO_FEATURE|FEATURE_TO_FEATURE|FEATURE_TO_CELL_TYPE*2..4]->(:CellType {name: $cell_type})
WHERE all(e IN relationships(p) WHERE e.circuit = c.id AND abs(e.weight) >= $min_weight)
MATCH (c)-[:HAS_GENE]->(tf:Gene)-[r:REGULATES]->(g)
WHERE ($grn IS NULL OR r.grn = $grn) AND tf.symbol <> g.symbol AND (c)-[:HAS_GENE]->(g)
WITH c, tf, g, r, p, [e IN relationships(p) | e.weight] AS weights
RETURN c.id AS circuit, tf.symbol AS tf, g.symbol AS gene, r.grn AS grn, r.sign AS sign,
       [n IN nodes(p) | coalesce(n.id, n.symbol, n.name)] AS nodes, weights,
       reduce(w = 1.0, x IN weights | w * x) AS path_weight, length(p) AS length
ORDER BY abs(path_weight) DESC, circuit, tf, gene, length, nodes
LIMIT $limit
