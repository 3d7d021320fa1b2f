// All weighted edges of one circuit (gene/feature -> feature/cell type), strongest first.
// params: $circuit (circuit id)
// returns: type, source, target, weight, frequency
CALL () {
  MATCH (s:Gene)-[e:GENE_TO_FEATURE {circuit: $circuit}]->(t:Feature)
  RETURN 'GENE_TO_FEATURE' AS type, s.symbol AS source, t.id AS target, e.weight AS weight, e.frequency AS frequency
  UNION ALL
  MATCH (s:Feature)-[e:FEATURE_TO_FEATURE {circuit: $circuit}]->(t:Feature)
  RETURN 'FEATURE_TO_FEATURE' AS type, s.id AS source, t.id AS target, e.weight AS weight, e.frequency AS frequency
  UNION ALL
  MATCH (s:Feature)-[e:FEATURE_TO_CELL_TYPE {circuit: $circuit}]->(t:CellType)
  RETURN 'FEATURE_TO_CELL_TYPE' AS type, s.id AS source, t.name AS target, e.weight AS weight, e.frequency AS frequency
  UNION ALL
  MATCH (s:Gene)-[e:GENE_TO_CELL_TYPE {circuit: $circuit}]->(t:CellType)
  RETURN 'GENE_TO_CELL_TYPE' AS type, s.symbol AS source, t.name AS target, e.weight AS weight, e.frequency AS frequency
}
RETURN type, source, target, weight, frequency
ORDER BY abs(weight) DESC, type, source, target
