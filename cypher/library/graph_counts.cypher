// Count nodes of each schema label and relationships of each schema type (export summary, tests);
// one count per label/type so Neo4j answers from its count store. Zero counts are left out.
// params: none
// returns: kind ('node' or 'relationship'), name, n
CALL () {
  MATCH (n:AttentionHead) RETURN 'node' AS kind, 'AttentionHead' AS name, count(n) AS n
  UNION ALL
  MATCH (n:CellType) RETURN 'node' AS kind, 'CellType' AS name, count(n) AS n
  UNION ALL
  MATCH (n:Circuit) RETURN 'node' AS kind, 'Circuit' AS name, count(n) AS n
  UNION ALL
  MATCH (n:Dataset) RETURN 'node' AS kind, 'Dataset' AS name, count(n) AS n
  UNION ALL
  MATCH (n:Feature) RETURN 'node' AS kind, 'Feature' AS name, count(n) AS n
  UNION ALL
  MATCH (n:Gene) RETURN 'node' AS kind, 'Gene' AS name, count(n) AS n
  UNION ALL
  MATCH (n:GeneSet) RETURN 'node' AS kind, 'GeneSet' AS name, count(n) AS n
  UNION ALL
  MATCH (n:GRN) RETURN 'node' AS kind, 'GRN' AS name, count(n) AS n
  UNION ALL
  MATCH (n:Model) RETURN 'node' AS kind, 'Model' AS name, count(n) AS n
  UNION ALL
  MATCH (n:TranscoderSet) RETURN 'node' AS kind, 'TranscoderSet' AS name, count(n) AS n
  UNION ALL
  MATCH ()-[r:FEATURE_TO_CELL_TYPE]->() RETURN 'relationship' AS kind, 'FEATURE_TO_CELL_TYPE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:FEATURE_TO_FEATURE]->() RETURN 'relationship' AS kind, 'FEATURE_TO_FEATURE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:ENRICHED_FOR]->() RETURN 'relationship' AS kind, 'ENRICHED_FOR' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:FOR_CELL_TYPE]->() RETURN 'relationship' AS kind, 'FOR_CELL_TYPE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:GENE_TO_CELL_TYPE]->() RETURN 'relationship' AS kind, 'GENE_TO_CELL_TYPE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:GENE_TO_FEATURE]->() RETURN 'relationship' AS kind, 'GENE_TO_FEATURE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:HAS_FEATURE]->() RETURN 'relationship' AS kind, 'HAS_FEATURE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:HAS_GENE]->() RETURN 'relationship' AS kind, 'HAS_GENE' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:HEAD_CARRIES]->() RETURN 'relationship' AS kind, 'HEAD_CARRIES' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:OF_MODEL]->() RETURN 'relationship' AS kind, 'OF_MODEL' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:ON_DATASET]->() RETURN 'relationship' AS kind, 'ON_DATASET' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:REGULATES]->() RETURN 'relationship' AS kind, 'REGULATES' AS name, count(r) AS n
  UNION ALL
  MATCH ()-[r:USES_TRANSCODERS]->() RETURN 'relationship' AS kind, 'USES_TRANSCODERS' AS name, count(r) AS n
}
WITH kind, name, n
WHERE n > 0
RETURN kind, name, n
ORDER BY kind, name
