// The whole diff of two circuits in one pass: edge counts, the top $limit edge rows by |delta|, and
// the feature rows. Sides are given as circuit ids (resolved by the caller); edges are keyed by
// (type, source, target), edges into the cell type with target 'target' (as in diff_edges). The end
// nodes carry no label in the patterns: each relationship type joins only the labels of the schema
// (GENE_TO_FEATURE: Gene -> Feature, ...), and skipping the label checks saves two reads per edge.
// params: $ids_a (side A's circuit ids), $ids_b (side B's circuit ids), $limit (edge rows)
// returns: only_a, only_b, both (edge counts), edges (list of {status, type, source, target, weight_a,
//          weight_b, delta}, largest |delta| first), features (list of {status, feature, layer, index,
//          influence_a, influence_b, delta}, largest |delta| first)
CALL () {
  MATCH (s)-[e:GENE_TO_FEATURE]->(t) WHERE e.circuit IN $ids_a + $ids_b
  RETURN 'GENE_TO_FEATURE' AS type, s.symbol AS source, t.id AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s)-[e:FEATURE_TO_FEATURE]->(t) WHERE e.circuit IN $ids_a + $ids_b
  RETURN 'FEATURE_TO_FEATURE' AS type, s.id AS source, t.id AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s)-[e:FEATURE_TO_CELL_TYPE]->() WHERE e.circuit IN $ids_a + $ids_b
  RETURN 'FEATURE_TO_CELL_TYPE' AS type, s.id AS source, 'target' AS target, e.circuit AS circuit, e.weight AS weight
  UNION ALL
  MATCH (s)-[e:GENE_TO_CELL_TYPE]->() WHERE e.circuit IN $ids_a + $ids_b
  RETURN 'GENE_TO_CELL_TYPE' AS type, s.symbol AS source, 'target' AS target, e.circuit AS circuit, e.weight AS weight
}
WITH type, source, target,
     sum(CASE WHEN circuit IN $ids_a THEN weight ELSE 0.0 END) AS wa,
     sum(CASE WHEN circuit IN $ids_b THEN weight ELSE 0.0 END) AS wb,
     sum(CASE WHEN circuit IN $ids_a THEN 1 ELSE 0 END) AS na,
     sum(CASE WHEN circuit IN $ids_b THEN 1 ELSE 0 END) AS nb
WITH CASE WHEN na > 0 AND nb > 0 THEN 'both' WHEN na > 0 THEN 'only_a' ELSE 'only_b' END AS status,
     type, source, target, CASE WHEN na > 0 THEN wa END AS weight_a, CASE WHEN nb > 0 THEN wb END AS weight_b,
     wb - wa AS delta
ORDER BY abs(delta) DESC, type, source, target
WITH collect({status: status, type: type, source: source, target: target, weight_a: weight_a,
              weight_b: weight_b, delta: delta}) AS edges
CALL () {
  MATCH (c:Circuit)-[m:HAS_FEATURE]->(f)
  WHERE c.id IN $ids_a + $ids_b
  WITH f,
       sum(CASE WHEN c.id IN $ids_a THEN m.influence ELSE 0.0 END) AS ia,
       sum(CASE WHEN c.id IN $ids_b THEN m.influence ELSE 0.0 END) AS ib,
       sum(CASE WHEN c.id IN $ids_a THEN 1 ELSE 0 END) AS na,
       sum(CASE WHEN c.id IN $ids_b THEN 1 ELSE 0 END) AS nb
  WITH CASE WHEN na > 0 AND nb > 0 THEN 'both' WHEN na > 0 THEN 'only_a' ELSE 'only_b' END AS status,
       f.id AS feature, f.layer AS layer, f.index AS index,
       CASE WHEN na > 0 THEN ia END AS influence_a, CASE WHEN nb > 0 THEN ib END AS influence_b, ib - ia AS delta
  ORDER BY abs(delta) DESC, feature
  RETURN collect({status: status, feature: feature, layer: layer, index: index, influence_a: influence_a,
                  influence_b: influence_b, delta: delta}) AS features
}
RETURN size([e IN edges WHERE e.status = 'only_a']) AS only_a, size([e IN edges WHERE e.status = 'only_b']) AS only_b,
       size([e IN edges WHERE e.status = 'both']) AS both, edges[0..$limit] AS edges, features
