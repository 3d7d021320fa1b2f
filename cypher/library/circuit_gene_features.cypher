// Gene -> feature edges of a cell type's circuit (the input of the GRN-agreement score).
// params: $cell_type (text), $dataset (dataset id or null = any)
// returns: circuit, dataset, gene, feature, weight
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH (g:Gene)-[e:GENE_TO_FEATURE {circuit: c.id}]->(f:Feature)
RETURN c.id AS circuit, c.dataset AS dataset, g.symbol AS gene, f.id AS feature, e.weight AS weight
ORDER BY circuit, gene, feature
