// Edge diff of two circuits, side A = ($cell_type_a, $dataset_a) and side B = ($cell_type_b, $dataset_b):
// a cell-type diff uses one dataset on both sides, a dataset diff one cell type. Edges are keyed by
// (type, source, target); edges into the cell type have target 'target', so they compare across cell types.
// Weights are summed over the side's circuits (one per side unless several models/methods match).
// params: $cell_type_a, $dataset_a (or null = any), $cell_type_b, $dataset_b (or null = any), $limit (rows, largest |delta| first)
// returns: status ('only_a', 'only_b', 'both'), type, source, target, weight_a, weight_b (null when absent),
//          delta (weight_b - weight_a, absent = 0)
OPTIONAL MATCH (ca:Circuit {cell_type: $cell_type_a})
WHERE $dataset_a IS NULL OR ca.dataset = $dataset_a
WITH collect(ca.id) AS ids_a
OPTIONAL MATCH (cb:Circuit {cell_type: $cell_type_b})
WHERE $dataset_b IS NULL OR cb.dataset = $dataset_b
WITH ids_a, collect(cb.id) AS ids_b
CALL (ids_a, ids_b) {
  MATCH (s:Gene)-[e:GENE_TO_FEATURE]->(t:Feature) WHERE e.circuit IN ids_a + ids_b
  RETURN 'GENE_TO_FEATURE' AS type, s.symbol AS source, t.id AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s:Feature)-[e:FEATURE_TO_FEATURE]->(t:Feature) WHERE e.circuit IN ids_a + ids_b
  RETURN 'FEATURE_TO_FEATURE' AS type, s.id AS source, t.id AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s:Feature)-[e:FEATURE_TO_CELL_TYPE]->(:CellType) WHERE e.circuit IN ids_a + ids_b
  RETURN 'FEATURE_TO_CELL_TYPE' AS type, s.id AS source, 'target' AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s:Gene)-[e:GENE_TO_CELL_TYPE]->(:CellType) WHERE e.circuit IN ids_a + ids_b
  RETURN 'GENE_TO_CELL_TYPE' AS type, s.symbol AS source, 'target' AS target, e.circuit AS circuit, e.weight AS weight
}
WITH type, source, target,
     sum(CASE WHEN circuit IN ids_a THEN weight ELSE 0.0 END) AS wa,
     sum(CASE WHEN circuit IN ids_b THEN weight ELSE 0.0 END) AS wb,
     sum(CASE WHEN circuit IN ids_a THEN 1 ELSE 0 END) AS na,
     sum(CASE WHEN circuit IN ids_b THEN 1 ELSE 0 END) AS nb
RETURN CASE WHEN na > 0 AND nb > 0 THEN 'both' WHEN na > 0 THEN 'only_a' ELSE 'only_b' END AS status,
       type, source, target,
       CASE WHEN na > 0 THEN wa END AS weight_a, CASE WHEN nb > 0 THEN wb END AS weight_b, wb - wa AS delta
ORDER BY abs(delta) DESC, type, source, target
LIMIT $limit
