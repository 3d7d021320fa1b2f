// Edge diff counts of two circuits (sides as in diff_edges): how many edges are only in A, only in B, in both.
// params: $cell_type_a, $dataset_a (or null = any), $cell_type_b, $dataset_b (or null = any)
// returns: status ('only_a', 'only_b', 'both'), n
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
WITH CASE WHEN na > 0 AND nb > 0 THEN 'both' WHEN na > 0 THEN 'only_a' ELSE 'only_b' END AS status
RETURN status, count(*) AS n
ORDER BY status
