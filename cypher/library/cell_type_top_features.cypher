// A cell type's circuit: its features ranked by |influence| on the cell type, with the direct
// feature -> cell type edge weight where the circuit has one.
// params: $cell_type (text), $dataset (dataset id or null = any), $limit (int)
// returns: circuit, dataset, feature, layer, index, influence, frequency, activation, direct_weight (or null),
//          density, top_genes (dataset-wide annotations, or null)
MATCH (c:Circuit {cell_type: $cell_type})
WHERE $dataset IS NULL OR c.dataset = $dataset
MATCH (c)-[m:HAS_FEATURE]->(f:Feature)
OPTIONAL MATCH (f)-[e:FEATURE_TO_CELL_TYPE {circuit: c.id}]->(:CellType)
RETURN c.id AS circuit, c.dataset AS dataset, f.id AS feature, f.layer AS layer, f.index AS index,
       m.influence AS influence, m.frequency AS frequency, m.activation AS activation, e.weight AS direct_weight,
       f.density AS density, f.top_genes AS top_genes
ORDER BY abs(influence) DESC, circuit, feature
LIMIT $limit
