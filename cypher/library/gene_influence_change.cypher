// Genes whose influence on a cell type changes most between two datasets (absent = 0).
// params: $cell_type (text), $dataset_a, $dataset_b (dataset ids), $limit (int)
// returns: gene, influence_a, influence_b (null when absent), delta (influence_b - influence_a, absent = 0)
OPTIONAL MATCH (ca:Circuit {cell_type: $cell_type, dataset: $dataset_a})
WITH collect(ca.id) AS ids_a
OPTIONAL MATCH (cb:Circuit {cell_type: $cell_type, dataset: $dataset_b})
WITH ids_a, collect(cb.id) AS ids_b
MATCH (c:Circuit)-[m:HAS_GENE]->(g:Gene)
WHERE c.id IN ids_a + ids_b
WITH g,
     sum(CASE WHEN c.id IN ids_a THEN m.influence ELSE 0.0 END) AS ia,
     sum(CASE WHEN c.id IN ids_b THEN m.influence ELSE 0.0 END) AS ib,
     sum(CASE WHEN c.id IN ids_a THEN 1 ELSE 0 END) AS na,
     sum(CASE WHEN c.id IN ids_b THEN 1 ELSE 0 END) AS nb
RETURN g.symbol AS gene, CASE WHEN na > 0 THEN ia END AS influence_a, CASE WHEN nb > 0 THEN ib END AS influence_b,
       ib - ia AS delta
ORDER BY abs(delta) DESC, gene
LIMIT $limit
