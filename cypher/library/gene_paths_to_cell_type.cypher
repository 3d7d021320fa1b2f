// Gene -> cell type paths inside a cell type's circuit whose every edge has |weight| >= $min_weight
// (direct gene -> cell type edges, and gene -> feature (-> feature)* -> cell type, at most 4 edges).
// params: $cell_type (text), $dataset (dataset id or null = any), $min_weight (float), $limit (int)
// returns: circuit, gene, nodes (node keys along the path), weights (edge weights), path_weight (product), length
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH p = (g:Gene)-[:GENE_TO_FEATURE|FEATURE_TO_FEATURE|FEATURE_TO_CELL_TYPE|GENE_TO_CELL_TYPE*1..4]->(:CellType {name: $cell_type})
WHERE all(r IN relationships(p) WHERE r.circuit = c.id AND abs(r.weight) >= $min_weight)
WITH c, g, p, [r IN relationships(p) | r.weight] AS weights
RETURN c.id AS circuit, g.symbol AS gene, [n IN nodes(p) | coalesce(n.id, n.symbol, n.name)] AS nodes,
       weights, reduce(w = 1.0, x IN weights | w * x) AS path_weight, length(p) AS length
ORDER BY abs(path_weight) DESC, circuit, gene, length, nodes
LIMIT $limit
