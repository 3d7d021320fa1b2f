// Features by how many cell types' circuits contain them: 'shared' (every cell type),
// 'specific' (exactly one), 'partial' (in between).
// params: $dataset (dataset id or null = any), $category ('shared', 'specific', 'partial' or null = all)
// returns: feature, layer, index, category, n_cell_types, n_total, cell_types (sorted)
MATCH (c0:Circuit)
WHERE $dataset IS NULL OR c0.dataset = $dataset
WITH collect(DISTINCT c0.cell_type) AS all_types
MATCH (c:Circuit)-[:HAS_FEATURE]->(f:Feature)
WHERE $dataset IS NULL OR c.dataset = $dataset
WITH all_types, f, c.cell_type AS ct
ORDER BY ct
WITH all_types, f, collect(DISTINCT ct) AS cell_types
WITH f, cell_types, size(cell_types) AS n, size(all_types) AS n_total
WITH f, cell_types, n, n_total,
     CASE WHEN n = n_total THEN 'shared' WHEN n = 1 THEN 'specific' ELSE 'partial' END AS category
WHERE $category IS NULL OR category = $category
RETURN f.id AS feature, f.layer AS layer, f.index AS index, category, n AS n_cell_types, n_total, cell_types
ORDER BY n_cell_types DESC, feature
