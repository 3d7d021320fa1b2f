// Element ids of the shared nodes an export's relationship batches connect, looked up once by key so
// the relationship statements read their end nodes directly. An element id is only used within the
// export that looked it up, right after the nodes were MERGEd (concurrent exports into one graph are
// not supported; see cypher/README.md).
// params: $genes (symbols), $features (feature ids), $heads (attention head ids), $cell_types (names)
// returns: kind ('gene', 'feature', 'attention_head' or 'cell_type'), key, eid (one row per key found)
CALL () {
  UNWIND $genes AS k
  MATCH (n:Gene {symbol: k})
  RETURN 'gene' AS kind, k AS key, elementId(n) AS eid
  UNION ALL
  UNWIND $features AS k
  MATCH (n:Feature {id: k})
  RETURN 'feature' AS kind, k AS key, elementId(n) AS eid
  UNION ALL
  UNWIND $heads AS k
  MATCH (n:AttentionHead {id: k})
  RETURN 'attention_head' AS kind, k AS key, elementId(n) AS eid
  UNION ALL
  UNWIND $cell_types AS k
  MATCH (n:CellType {name: k})
  RETURN 'cell_type' AS kind, k AS key, elementId(n) AS eid
}
RETURN kind, key, eid
