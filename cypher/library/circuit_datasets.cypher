// The datasets a cell type has circuits in, with where the data came from.
// params: $cell_type (text), $dataset (dataset id or null = any)
// returns: circuit, dataset, name, source, n_cells
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
OPTIONAL MATCH (c)-[:ON_DATASET]->(d:Dataset)
RETURN c.id AS circuit, c.dataset AS dataset, d.name AS name, d.source AS source, d.n_cells AS n_cells
ORDER BY circuit
