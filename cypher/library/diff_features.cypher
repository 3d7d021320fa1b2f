// Feature diff of two circuits, sides as in diff_edges: membership and influence on the cell type.
// params: $cell_type_a, $dataset_a (or null = any), $cell_type_b, $dataset_b (or null = any)
// returns: status ('only_a', 'only_b', 'both'), feature, layer, index, influence_a, influence_b (null when
//          absent), delta (influence_b - influence_a, absent = 0)
OPTIONAL MATCH (ca:Circuit {cell_type: $cell_type_a})
WHERE $dataset_a IS NULL OR ca.dataset = $dataset_a
WITH collect(ca.id) AS ids_a
OPTIONAL MATCH (cb:Circuit {cell_type: $cell_type_b})
WHERE $dataset_b IS NULL OR cb.dataset = $dataset_b
WITH ids_a, collect(cb.id) AS ids_b
MATCH (c:Circuit)-[m:HAS_FEATURE]->(f:Feature)
WHERE c.id IN ids_a + ids_b
WITH f,
     sum(CASE WHEN c.id IN ids_a THEN m.influence ELSE 0.0 END) AS ia,
     sum(CASE WHEN c.id IN ids_b THEN m.influence ELSE 0.0 END) AS ib,
     sum(CASE WHEN c.id IN ids_a THEN 1 ELSE 0 END) AS na,
     sum(CASE WHEN c.id IN ids_b THEN 1 ELSE 0 END) AS nb
RETURN CASE WHEN na > 0 AND nb > 0 THEN 'both' WHEN na > 0 THEN 'only_a' ELSE 'only_b' END AS status,
       f.id AS feature, f.layer AS layer, f.index AS index,
       CASE WHEN na > 0 THEN ia END AS influence_a, CASE WHEN nb > 0 THEN ib END AS influence_b, ib - ia AS delta
ORDER BY abs(delta) DESC, feature
