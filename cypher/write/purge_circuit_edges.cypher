// Delete up to $limit weighted relationships of one circuit (run until it returns 0), through the
// relationship index on `circuit` of each weighted type. The writer runs it before (re)writing any
// circuit that is stored but not complete with the same content, since edges are CREATEd.
// params: $circuit (circuit id), $limit (batch size)
// returns: n (relationships deleted)
CALL () {
  MATCH ()-[e:GENE_TO_FEATURE]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:FEATURE_TO_FEATURE]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:FEATURE_TO_CELL_TYPE]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:GENE_TO_CELL_TYPE]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:HEAD_CARRIES]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:HAS_FEATURE]->() WHERE e.circuit = $circuit RETURN e
  UNION ALL
  MATCH ()-[e:HAS_GENE]->() WHERE e.circuit = $circuit RETURN e
}
WITH e LIMIT $limit
DELETE e
RETURN count(*) AS n
